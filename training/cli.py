"""`sharpen train`: run a stage plan under torchrun and print the per-stage loss table.

Outside torchrun (no LOCAL_RANK in the environment) this launches
`python -m torch.distributed.run --standalone --nproc_per_node N -m training.pretrain ...`
as a subprocess, its output in OUTPUT/train.log (rank 0's progress is echoed; `sharpen -v`
echoes everything); inside torchrun it runs the stage runner directly.

An output that holds checkpoints is refused unless `--resume` is given: a fresh run
would overwrite them.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from training.launch import TrainingFailed, run_torchrun

log = logging.getLogger(__name__)

DEMO_PLAN = Path(__file__).parent / "recipes" / "demo.yaml"  # the plan `sharpen demo` runs
__all__ = ["DEMO_PLAN", "TrainingFailed", "format_summary", "register", "run_training"]


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="pre-train a Llama-style model through a YAML stage plan (FSDP2, torchrun)",
        description=__doc__,
    )
    p.add_argument("--plan", required=True, type=Path, help="stage plan YAML (training/recipes/)")
    p.add_argument("--data", required=True, type=Path, help="mixture output dir (sharpen mix)")
    p.add_argument("--output", required=True, type=Path, help="run dir: metrics, checkpoints")
    p.add_argument("--nproc", type=int, default=2, help="ranks (processes) to launch; default 2")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint")
    p.add_argument("--stop-after", metavar="STAGE:STEP", help="checkpoint after this step and exit")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    """TrainingFailed propagates: `sharpen` prints its one line (with `-v`, the traceback)."""
    summary = run_training(
        args.plan,
        args.data,
        args.output,
        nproc=args.nproc,
        resume=args.resume,
        stop_after=args.stop_after,
    )
    if summary:
        print(format_summary(summary))
    else:
        print(f"stopped; resume with: sharpen train ... --output {args.output} --resume")
    return 0


def run_training(
    plan: str | os.PathLike[str],
    data: str | os.PathLike[str],
    output: str | os.PathLike[str],
    nproc: int = 2,
    *,
    resume: bool = False,
    stop_after: str | None = None,
    timeout_s: float | None = None,
    verbose: bool | None = None,
) -> dict[str, Any]:
    """Validate plan, shards and output here, train under torchrun, return summary.json's content.

    Returns {} when `stop_after` ended the run early. Raises TrainingFailed (one line: the
    failing rank's error) when a rank fails. `verbose` echoes every line of the ranks'
    output, not only rank 0's log; None: when this process logs at DEBUG (`sharpen -v`).
    """
    from training.checkpoint import check_run_dir
    from training.plan import load_plan, resolve_stage_lengths
    from training.pretrain import open_stage_shards, parse_stop_after
    from training.trainer import check_stop_after, planned_tokens

    plan_path, data_root, out = Path(plan), Path(data), Path(output)
    if nproc < 1:
        raise ValueError(f"--nproc must be >= 1, got {nproc}")
    parsed = load_plan(plan_path)  # fail fast, before spawning ranks
    shards = open_stage_shards(parsed, data_root, verify=False)
    budgets = planned_tokens(shards)
    resolved = resolve_stage_lengths(parsed, nproc, budgets)
    check_stop_after(resolved, parse_stop_after(stop_after, parsed))
    for s in resolved.stages:
        per_step = s.stream_tokens_per_step(nproc)
        budget = s.token_budget(budgets)
        length = f"of a {budget:,}-token budget" if budget else "set in steps"
        log.info("stage %s: %d steps x %d tokens (%s)", s.name, s.steps, per_step, length)
    check_run_dir(out, resume=resume)  # before anything in `out` is touched
    out.mkdir(parents=True, exist_ok=True)
    # the run directory is self-describing: `sharpen export RUN` finds the model's shape
    # and the tokenizer here without flags
    shutil.copyfile(plan_path, out / "plan.yaml")
    if (data_root / "tokenizer" / "tokenizer.json").is_file():  # with its HF config files
        from mixtures.tokenizer import install_tokenizer

        install_tokenizer(data_root / "tokenizer" / "tokenizer.json", out / "tokenizer.json")
    summary_path = out / "summary.json"
    summary_path.unlink(missing_ok=True)
    rest = ["--plan", str(plan_path), "--data", str(data_root), "--output", str(out)]
    rest += ["--resume"] if resume else []
    rest += ["--stop-after", stop_after] if stop_after else []
    if "LOCAL_RANK" in os.environ:  # already a torchrun rank: run in this process
        from training.pretrain import main

        main(rest)
    else:
        if verbose is None:
            verbose = logging.getLogger().isEnabledFor(logging.DEBUG)
        run_torchrun(
            nproc,
            "training.pretrain",
            rest,
            out / "train.log",
            verbose=verbose,
            timeout_s=timeout_s,
        )
    if not summary_path.is_file():
        return {}
    return json.loads(summary_path.read_text(encoding="utf-8"))


def format_summary(summary: dict[str, dict[str, Any]]) -> str:
    lines = [f"{'stage':<16}{'steps':>7}{'tokens':>12}{'first loss':>12}{'last loss':>12}"]
    for name, s in summary.items():
        lines.append(
            f"{name:<16}{s['steps']:>7}{s['tokens']:>12}{s['first_loss']:>12.4f}{s['last_loss']:>12.4f}"
        )
    return "\n".join(lines)
