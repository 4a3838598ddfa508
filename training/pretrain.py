"""Per-rank entry point: `python -m training.pretrain --plan P --data MIX --output OUT`.

torchrun starts one of these per rank (`training/launch.py`). It parses the flags,
joins the process group and hands the plan to the stage loop in `training/trainer.py`;
every stage type (pre-training, anneal, later SFT) runs through that one loop.
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import signal
import sys
from pathlib import Path

import torch
from torch.distributed.elastic.multiprocessing.errors import record

from training.checkpoint import check_run_dir
from training.parallel import init_distributed, shutdown
from training.plan import TrainPlan, load_plan
from training.trainer import open_stage_shards, stage_peak_lrs, stage_rope_thetas, train

log = logging.getLogger(__name__)

# The loop's helpers stay importable from here, where `training.cli` and tests look.
__all__ = [
    "main",
    "open_stage_shards",
    "parse_args",
    "parse_stop_after",
    "stage_peak_lrs",
    "stage_rope_thetas",
    "train",
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m training.pretrain", description=__doc__)
    p.add_argument("--plan", required=True, type=Path, help="stage plan YAML")
    p.add_argument("--data", required=True, type=Path, help="mixture output directory")
    p.add_argument("--output", required=True, type=Path, help="run directory")
    p.add_argument("--resume", action="store_true", help="continue from checkpoints/latest.json")
    p.add_argument(
        "--stop-after",
        metavar="STAGE:STEP",
        help="save a checkpoint after this step and exit (simulates a preemption)",
    )
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads per rank")
    return p.parse_args(argv)


def parse_stop_after(value: str | None, plan: TrainPlan) -> tuple[str, int] | None:
    """STAGE:STEP; the step's range is checked here when the stage is given in steps and
    by the trainer once token budgets are resolved to steps (they need the world size)."""
    if value is None:
        return None
    name, _, step = value.rpartition(":")
    stages = {s.name: s.steps for s in plan.stages}
    if name not in stages or not step.isdigit() or int(step) < 1:
        raise ValueError(f"--stop-after {value!r}: expected STAGE:STEP, a stage of {list(stages)}")
    if stages[name] is not None and int(step) > stages[name]:
        raise ValueError(f"--stop-after {value!r}: stage {name} has {stages[name]} steps")
    return name, int(step)


@record  # a failing rank writes its exception where the launcher finds the root cause
def main(argv: list[str] | None = None) -> int:
    _die_with_launcher()
    _mark_rank("started")  # a rank with this mark but no error file nor "ended" was killed
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s rank{os.environ.get('RANK', '0')} %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    plan = load_plan(args.plan)
    stop_after = parse_stop_after(args.stop_after, plan)
    check_run_dir(args.output, resume=args.resume)  # also when torchrun is started by hand
    torch.set_num_threads(args.threads)
    device_type = None if plan.device == "auto" else plan.device
    env = init_distributed(device_type, plan.context_parallel)
    try:
        train(plan, args.data, args.output, env, resume=args.resume, stop_after=stop_after)
    finally:
        shutdown()
    _mark_rank("ended")
    return 0


def _die_with_launcher() -> None:
    """Make the kernel SIGKILL this rank when its torchrun agent dies.

    torchrun starts each rank in a session of its own, so a SIGKILL to the job's process
    group (a preemption, `kill -9` of the launcher) reaches the agent only: the ranks
    would train on as orphans, racing the resumed run for the same checkpoints and
    metrics. Linux's PR_SET_PDEATHSIG ties each rank's life to the agent's. Only under
    torchrun (TORCHELASTIC_RUN_ID), never in a process that called `main` itself.
    """
    if not sys.platform.startswith("linux") or "TORCHELASTIC_RUN_ID" not in os.environ:
        return
    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        log.warning("prctl(PR_SET_PDEATHSIG) failed (errno %d)", ctypes.get_errno())
    elif os.getppid() != parent:  # the agent died before the call: nobody would signal us
        os._exit(1)


_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _mark_rank(state: str) -> None:
    """Touch `<SHARPEN_RANK_MARKS>/<rank>.<state>` (set by training/launch.py): lets the
    launcher name a rank that died without a word (SIGKILL, the OOM killer) even when
    torchrun itself fails before printing its failure report."""
    marks = os.environ.get("SHARPEN_RANK_MARKS")
    if marks:
        Path(marks, f"{os.environ.get('RANK', '0')}.{state}").touch()


if __name__ == "__main__":
    raise SystemExit(main())
