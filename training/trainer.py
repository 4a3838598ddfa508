"""The stage loop that every stage type runs through; what differs is the objective.

Three levels, as in torchtitan's trainer: `train` (here) builds the model once, walks
the plan's stages, resumes, sets the WSD learning rate, writes a metrics line per step
and saves DCP checkpoints; `train_step` (`training/train_step.py`) accumulates the
micro-batches, clips and steps the optimizer; the stage's objective
(`training/objectives/`) turns a batch into a summed loss and its valid-target count.

A stage starts from the previous stage's weights and AdamW state, from fresh moments
(`reset_optimizer`), or from another run's checkpoint (`init_from`).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from training.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from training.checkpoint import stage_checkpoint_dir as ckpt_dir
from training.data.loader import PackedLoader
from training.data.packing import PackedBatch
from training.metrics import MetricsWriter, read_metrics, summarize
from training.model import ModelConfig, Transformer
from training.objectives import build_objective
from training.optim import build_adamw, set_lr, set_weight_decay, wsd_lr
from training.parallel import DistEnv, apply_activation_checkpointing, shard_model
from training.plan import StageSpec, TrainPlan
from training.train_step import NonFiniteGuard, train_step

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


def build_model(plan: TrainPlan, vocab_size: int, env: DistEnv) -> Transformer:
    """The same init on every rank (seeded before sharding), then AC per block, then FSDP2."""
    cfg = ModelConfig(**plan.model.model_dump(), vocab_size=vocab_size)
    torch.manual_seed(plan.seed)
    with torch.device(env.device):
        model = Transformer(cfg)
    if plan.activation_checkpointing:
        apply_activation_checkpointing(model)
    shard_model(model, env.mesh, getattr(torch, plan.dtype))
    return model


@dataclass
class RunState:
    """Where a run stands between steps; checkpoints store it as trainer_state.json."""

    stage_index: int = 0
    stage_step: int = 0  # steps done in that stage
    global_step: int = 0
    skipped_steps: int = 0  # non-finite steps skipped so far, over the whole run
    loader: dict[str, Any] | None = None  # the stage loader's position (mid-stage only)


def resume_state(
    plan: TrainPlan, ckpt_root: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer
) -> RunState | None:
    """Load the latest checkpoint into model and optimizer; None when there is none."""
    path = latest_checkpoint(ckpt_root)
    if path is None:
        log.info("--resume: no checkpoint under %s, starting fresh", ckpt_root)
        return None
    saved = load_checkpoint(path, model, optimizer)
    idx, step = int(saved["stage_index"]), int(saved["stage_step"])
    if plan.stages[idx].name != saved["stage"]:
        raise ValueError(f"{path}: checkpoint of stage {saved['stage']!r} does not fit the plan")
    log.info("resuming from %s (stage %s, step %d)", path, saved["stage"], step)
    state = RunState(idx, step, int(saved["global_step"]), int(saved.get("skipped_steps", 0)))
    if step >= plan.stages[idx].steps:  # that stage is done: start the next one
        return RunState(idx + 1, 0, state.global_step, state.skipped_steps)
    state.loader = saved["loader"]
    return state


def enter_stage(
    plan: TrainPlan,
    i: int,
    model: torch.nn.Module,
    optimizer: torch.optim.AdamW,
    peak_lr: float,
) -> torch.optim.AdamW:
    """A stage's first step starts from the previous stage, fresh moments or `init_from`."""
    stage = plan.stages[i]
    if stage.reset_optimizer and i > 0:
        optimizer = build_adamw(model, lr=peak_lr, weight_decay=stage.weight_decay)
    if stage.init_from is not None:
        load_checkpoint(stage.init_from, model, None if stage.reset_optimizer else optimizer)
        log.info("stage %s starts from %s", stage.name, stage.init_from)
    return optimizer


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
    model = build_model(plan, vocab_size, env)
    peaks, thetas = stage_peak_lrs(plan), stage_rope_thetas(plan)
    optimizer = build_adamw(model, lr=peaks[0], weight_decay=plan.stages[0].weight_decay)

    resumed = resume_state(plan, ckpt_root, model, optimizer) if resume else None
    state = resumed or RunState()
    metrics = MetricsWriter(
        output / "metrics.jsonl",
        enabled=env.is_main,
        keep_through_step=None if resumed is None else resumed.global_step,
    )
    guard = NonFiniteGuard(plan.max_nan_skips, state.skipped_steps)

    try:
        for i in range(state.stage_index, len(plan.stages)):
            stage = plan.stages[i]
            if state.stage_step == 0:
                optimizer = enter_stage(plan, i, model, optimizer, peaks[i])
            set_weight_decay(optimizer, stage.weight_decay)
            model.rope_theta = thetas[i]
            objective = build_objective(stage.objective)
            objective.check_batch_type(PackedBatch)
            loader = PackedLoader(
                shards[stage.data],
                seq_len=stage.seq_len,
                batch_size=stage.batch_size,
                rank=env.rank,
                world_size=env.world_size,
                grad_accum=stage.grad_accum,
                seed=plan.seed + i,
                vocab_size=vocab_size,
                name=stage.name,
            )
            if state.loader is not None:
                loader.load_state_dict(state.loader)
            log.info("stage %s: steps %d..%d", stage.name, state.stage_step + 1, stage.steps)
            tokens_per_step = env.world_size * stage.grad_accum * stage.batch_size * stage.seq_len

            for step in range(state.stage_step + 1, stage.steps + 1):
                t0 = time.perf_counter()
                lr = _lr(stage, step, peaks[i])
                set_lr(optimizer, lr)
                micro_batches = [b.to(env.device) for b in loader.next_batches()]
                result = train_step(
                    model, optimizer, objective, micro_batches, grad_clip=stage.grad_clip
                )
                state.global_step += 1
                metrics.log(
                    {
                        "step": state.global_step,
                        "stage": stage.name,
                        "stage_step": step,
                        "loss": result.loss,
                        "lr": lr,
                        "tokens_per_s": tokens_per_step / (time.perf_counter() - t0),
                        "grad_norm": result.grad_norm,
                        "tokens": tokens_per_step,
                        "valid_tokens": result.valid_tokens,
                        "skipped": result.skipped,
                        "skipped_steps": guard.skipped + result.skipped,
                    }
                )
                guard.update(result, stage=stage.name, step=step)

                state.stage_index, state.stage_step = i, step
                state.skipped_steps = guard.skipped
                stop = stop_after == (stage.name, step)
                save_to = None
                if step == stage.steps and stage.checkpoint:
                    save_to = ckpt_dir(ckpt_root, stage.name)
                elif stop or (stage.checkpoint_every and step % stage.checkpoint_every == 0):
                    save_to = ckpt_dir(ckpt_root, stage.name, step)
                if save_to is not None:
                    saved = trainer_state(state, stage.name, loader, env.world_size)
                    save_checkpoint(save_to, model, optimizer, saved, is_main=env.is_main)
                if stop:
                    log.info("stopping after %s step %d (--stop-after)", stage.name, step)
                    return None
            state.stage_step, state.loader = 0, None
    finally:
        metrics.close()

    summary = summarize(read_metrics(output / "metrics.jsonl")) if env.is_main else {}
    if env.is_main:
        (output / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    dist.barrier()
    return summary


def trainer_state(
    state: RunState, stage: str, loader: PackedLoader, world_size: int
) -> dict[str, Any]:
    """trainer_state.json: the run's position, the loader's, and the world that saved it."""
    return {
        "stage": stage,
        "stage_index": state.stage_index,
        "stage_step": state.stage_step,
        "global_step": state.global_step,
        "skipped_steps": state.skipped_steps,
        "loader": loader.state_dict(),
        "world_size": world_size,
    }
