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
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from training.build import build_model, open_stage_shards, planned_tokens
from training.checkpoint import load_checkpoint, save_checkpoint
from training.checkpoint import stage_checkpoint_dir as ckpt_dir
from training.eval.stage_probe import passkey_probe, stage_tokenizer_path
from training.metrics import read_metrics, summarize
from training.model.rope_schedule import stage_rope_settings
from training.objectives import build_objective
from training.observability import Progress, RunMetrics
from training.optim import build_adamw, set_lr, set_weight_decay
from training.parallel import DistEnv
from training.plan import TrainPlan, resolve_stage_lengths
from training.run_state import (
    RunState,
    check_stop_after,
    data_fingerprints,
    resume_state,
    trainer_state,
)
from training.stage_schedule import stage_lr, stage_peak_lrs, stage_rope_thetas
from training.stage_sources import build_loader, prepare_objective
from training.step_metrics import StepMetrics
from training.train_step import NonFiniteGuard, train_step

# the run's setup helpers stay importable from here, where callers of the loop look
__all__ = [
    "build_model",
    "check_stop_after",
    "open_stage_shards",
    "planned_tokens",
    "stage_peak_lrs",
    "stage_rope_thetas",
    "train",
]

log = logging.getLogger(__name__)


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
    # Cheap checks now; each rank verifies a shard's sha256 in the background when its
    # loader first reads it (and prefetches the next), never training on unverified tokens.
    shards = open_stage_shards(plan, data_root, verify="on_read")
    plan = resolve_stage_lengths(plan, env.world_size, planned_tokens(shards))
    check_stop_after(plan, stop_after)
    vocab_size = int(next(iter(shards.values())).manifest["tokenizer"]["vocab_size"])
    model = build_model(plan, vocab_size, env)
    peaks, ropes = stage_peak_lrs(plan), stage_rope_settings(plan)
    optimizer = build_adamw(model, lr=peaks[0], weight_decay=plan.stages[0].weight_decay)

    data = data_fingerprints(data_root, shards)
    resumed = resume_state(plan, ckpt_root, model, optimizer, data) if resume else None
    state = resumed or RunState()
    metrics = RunMetrics(
        output,
        enabled=env.is_main,
        keep_through_step=None if resumed is None else resumed.global_step,
        tensorboard=plan.tensorboard,
    )
    progress = Progress(
        {s.name: s.steps for s in plan.stages},
        done=state.global_step,
        enabled=env.is_main,
        tokens_per_step={
            s.name: env.world_size * s.grad_accum * s.batch_size * s.seq_len for s in plan.stages
        },
    )
    guard = NonFiniteGuard(plan.max_nan_skips, state.skipped_steps)

    try:
        for i in range(state.stage_index, len(plan.stages)):
            stage = plan.stages[i]
            if state.stage_step == 0:
                optimizer = enter_stage(plan, i, model, optimizer, peaks[i])
            set_weight_decay(optimizer, stage.weight_decay)
            model.rope_theta, model.rope_yarn = ropes[i]
            objective = build_objective(stage.objective, **stage.objective_settings())
            stage_shards = shards[stage.data]
            loader = build_loader(plan, i, stage_shards, env, model)
            objective.check_batch_type(loader.batch_type)
            if state.loader is not None:
                loader.load_state_dict(state.loader)
            prepare_objective(objective, model, stage, stage_shards, env, state.objective)
            log.info("stage %s: steps %d..%d", stage.name, state.stage_step + 1, stage.steps)
            meter = StepMetrics(
                model.cfg,
                stage,
                world_size=env.world_size,
                device=env.device,
                dtype=getattr(torch, plan.dtype),
                domains=loader.domains,
            )

            for step in range(state.stage_step + 1, stage.steps + 1):
                meter.start()
                lr = stage_lr(stage, step, peaks[i])
                set_lr(optimizer, lr)
                micro_batches = [b.to(env.device) for b in loader.next_batches()]
                result = train_step(
                    model,
                    optimizer,
                    objective,
                    micro_batches,
                    grad_clip=stage.grad_clip,
                    n_domains=len(loader.domains),
                )
                state.global_step += 1
                row = meter.row(
                    result,
                    step=step,
                    global_step=state.global_step,
                    lr=lr,
                    skipped_total=guard.skipped + result.skipped,
                    stage_tokens=loader.tokens_consumed,
                    tokens=env.world_size * sum(mb.inputs.numel() for mb in micro_batches),
                    extra=getattr(loader, "last", None),
                )
                if step == stage.steps:  # the stage's last row carries its end-of-stage probe
                    probe = passkey_probe(
                        model,
                        stage_tokenizer_path(stage_shards.stage_dir, stage_shards.manifest),
                        seq_len=stage.seq_len,
                        n_samples=plan.passkey_samples,
                        batch_size=stage.batch_size,
                        seed=plan.seed,
                        device=env.device,
                    )
                    if probe is not None:
                        row["passkey"] = probe
                metrics.log(row)
                progress.update(row)
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
                    saved = trainer_state(
                        state,
                        stage.name,
                        loader,
                        env.world_size,
                        lr,
                        objective.state_dict(),
                        data,
                    )
                    save_checkpoint(save_to, model, optimizer, saved, is_main=env.is_main)
                if stop:
                    log.info("stopping after %s step %d (--stop-after)", stage.name, step)
                    return None
            state.stage_step, state.loader, state.objective = 0, None, None
    finally:
        progress.close()
        metrics.close()

    summary = summarize(read_metrics(output / "metrics.jsonl")) if env.is_main else {}
    budgets = planned_tokens(shards)
    for stage in plan.stages:  # what the stage was asked to train on, beside what it did
        if stage.name in summary and stage.tokens is not None:
            summary[stage.name]["budget_tokens"] = stage.token_budget(budgets)
    if env.is_main:
        (output / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    dist.barrier()
    return summary
