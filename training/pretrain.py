"""Stage runner: `python -m training.pretrain --plan P --data MIX --output OUT` under torchrun.

The whole loop is here and reads top to bottom: build the model once, shard it with
FSDP2, then for each stage open its shards, walk the WSD schedule step by step, write a
metrics line per step and a DCP checkpoint at the end. A stage starts from the previous
stage's weights and AdamW state (see `StageSpec.reset_optimizer`).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.distributed.elastic.multiprocessing.errors import record

from training.checkpoint import check_run_dir, latest_checkpoint, load_checkpoint, save_checkpoint
from training.checkpoint import stage_checkpoint_dir as ckpt_dir
from training.data.loader import PackedLoader
from training.metrics import MetricsWriter, read_metrics, summarize
from training.model import ModelConfig, Transformer, cross_entropy_loss
from training.optim import build_adamw, set_lr, set_weight_decay, wsd_lr
from training.parallel import DistEnv, init_distributed, shard_model, shutdown
from training.plan import StageSpec, TrainPlan, load_plan

log = logging.getLogger(__name__)


def stage_peak_lrs(plan: TrainPlan) -> list[float]:
    """Each stage's peak LR; `lr: null` continues at the previous stage's final LR."""
    peaks: list[float] = []
    for i, s in enumerate(plan.stages):
        if s.lr is not None:
            peaks.append(s.lr)
        else:
            prev = plan.stages[i - 1]
            peaks.append(_lr(prev, prev.steps, peaks[-1]))
    return peaks


def stage_rope_thetas(plan: TrainPlan) -> list[float]:
    """A stage's `rope_theta` holds for it and every later stage until overridden."""
    theta, out = plan.model.rope_theta, []
    for s in plan.stages:
        theta = s.rope_theta or theta
        out.append(theta)
    return out


def _lr(stage: StageSpec, step: int, peak: float) -> float:
    return wsd_lr(
        step,
        total_steps=stage.steps,
        peak_lr=peak,
        min_lr=stage.min_lr,
        warmup_steps=stage.warmup_steps,
        decay_fraction=stage.decay_fraction,
        shape=stage.decay_shape,
    )


def open_stage_shards(plan: TrainPlan, data_root: Path, *, verify: bool) -> dict[str, Any]:
    """Open every stage's shards up front: a missing or mismatched stage fails before step 1."""
    from mixtures.shards import StageShards

    opened = {s.data: StageShards.open(data_root / s.data, verify=verify) for s in plan.stages}
    vocab = {name: int(sh.manifest["tokenizer"]["vocab_size"]) for name, sh in opened.items()}
    if len(set(vocab.values())) != 1:
        raise ValueError(f"{data_root}: stages use different tokenizer vocab sizes {vocab}")
    return opened


def train(
    plan: TrainPlan,
    data_root: Path,
    output: Path,
    env: DistEnv,
    *,
    resume: bool = False,
    stop_after: tuple[str, int] | None = None,
) -> dict[str, Any] | None:
    """Run (or resume) the plan; returns the summary, or None when stopped by `stop_after`."""
    ckpt_root = output / "checkpoints"
    if env.is_main:
        ckpt_root.mkdir(parents=True, exist_ok=True)
    # Rank 0 checks every shard's sha256; the others trust it after the barrier.
    shards = open_stage_shards(plan, data_root, verify=env.is_main)
    dist.barrier()
    vocab_size = int(next(iter(shards.values())).manifest["tokenizer"]["vocab_size"])
    cfg = ModelConfig(**plan.model.model_dump(), vocab_size=vocab_size)
    dtype = getattr(torch, plan.dtype)

    torch.manual_seed(plan.seed)  # same init on every rank, before sharding
    with torch.device(env.device):
        model = Transformer(cfg)
    shard_model(model, env.mesh, dtype)
    peaks, thetas = stage_peak_lrs(plan), stage_rope_thetas(plan)
    optimizer = build_adamw(model, lr=peaks[0], weight_decay=plan.stages[0].weight_decay)

    start_stage, start_step, loader_state, resumed_step = 0, 0, None, None
    path = latest_checkpoint(ckpt_root) if resume else None
    if path is not None:
        state = load_checkpoint(path, model, optimizer)
        idx, step = int(state["stage_index"]), int(state["stage_step"])
        if plan.stages[idx].name != state["stage"]:
            raise ValueError(
                f"{path}: checkpoint of stage {state['stage']!r} does not fit the plan"
            )
        done = step >= plan.stages[idx].steps
        start_stage, start_step = (idx + 1, 0) if done else (idx, step)
        loader_state = None if done else state["loader"]
        resumed_step = int(state["global_step"])
        log.info("resuming from %s (stage %s, step %d)", path, state["stage"], step)
    elif resume:
        log.info("--resume: no checkpoint under %s, starting fresh", ckpt_root)
    metrics = MetricsWriter(
        output / "metrics.jsonl", enabled=env.is_main, keep_through_step=resumed_step
    )
    global_step = sum(s.steps for s in plan.stages[:start_stage]) + start_step

    try:
        for i in range(start_stage, len(plan.stages)):
            stage = plan.stages[i]
            if stage.reset_optimizer and start_step == 0 and i > 0:
                optimizer = build_adamw(model, lr=peaks[i], weight_decay=stage.weight_decay)
            set_weight_decay(optimizer, stage.weight_decay)
            model.rope_theta = thetas[i]
            loader = PackedLoader(
                shards[stage.data],
                seq_len=stage.seq_len,
                batch_size=stage.batch_size,
                rank=env.rank,
                world_size=env.world_size,
                seed=plan.seed + i,
                vocab_size=vocab_size,
                name=stage.name,
            )
            if loader_state is not None:
                loader.load_state_dict(loader_state)
            log.info("stage %s: steps %d..%d", stage.name, start_step + 1, stage.steps)
            tokens_per_step = env.world_size * stage.batch_size * stage.seq_len

            for step in range(start_step + 1, stage.steps + 1):
                t0 = time.perf_counter()
                lr = _lr(stage, step, peaks[i])
                set_lr(optimizer, lr)
                batch = loader.next_batch().to(env.device)
                logits = model(batch.inputs, batch.position_ids, batch.segment_ids)
                loss = cross_entropy_loss(logits, batch.targets)
                loss.backward()
                max_norm = stage.grad_clip if stage.grad_clip is not None else math.inf
                grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                loss_mean = loss.detach().clone()
                dist.all_reduce(loss_mean)  # SUM: gloo has no AVG
                loss_mean /= env.world_size
                global_step += 1
                dt = time.perf_counter() - t0
                metrics.log(
                    {
                        "step": global_step,
                        "stage": stage.name,
                        "stage_step": step,
                        "loss": loss_mean.item(),
                        "lr": lr,
                        "tokens_per_s": tokens_per_step / dt,
                        "grad_norm": _full(grad_norm),
                        "tokens": tokens_per_step,
                    }
                )

                stop = stop_after == (stage.name, step)
                save_to = None
                if step == stage.steps and stage.checkpoint:
                    save_to = ckpt_dir(ckpt_root, stage.name)
                elif stop or (stage.checkpoint_every and step % stage.checkpoint_every == 0):
                    save_to = ckpt_dir(ckpt_root, stage.name, step)
                if save_to is not None:
                    trainer_state = {
                        "stage": stage.name,
                        "stage_index": i,
                        "stage_step": step,
                        "global_step": global_step,
                        "loader": loader.state_dict(),
                        "world_size": env.world_size,
                    }
                    save_checkpoint(save_to, model, optimizer, trainer_state, is_main=env.is_main)
                if stop:
                    log.info("stopping after %s step %d (--stop-after)", stage.name, step)
                    return None
            start_step, loader_state = 0, None
    finally:
        metrics.close()

    summary = summarize(read_metrics(output / "metrics.jsonl")) if env.is_main else {}
    if env.is_main:
        (output / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    dist.barrier()
    return summary


def _full(t: torch.Tensor) -> float:
    """A DTensor's value (FSDP2 grad norms are DTensors) or a plain tensor's."""
    full = t.full_tensor() if hasattr(t, "full_tensor") else t
    return float(full.item())


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
    if value is None:
        return None
    name, _, step = value.rpartition(":")
    stages = {s.name: s.steps for s in plan.stages}
    if name not in stages or not step.isdigit() or not 1 <= int(step) <= stages[name]:
        raise ValueError(f"--stop-after {value!r}: expected STAGE:STEP within the plan {stages}")
    return name, int(step)


@record  # a failing rank writes its exception where the launcher finds the root cause
def main(argv: list[str] | None = None) -> int:
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
    env = init_distributed(device_type)
    try:
        train(plan, args.data, args.output, env, resume=args.resume, stop_after=stop_after)
    finally:
        shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
