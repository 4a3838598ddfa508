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
from torch.distributed.checkpoint.state_dict import get_model_state_dict, set_model_state_dict

from training.checkpoint import load_checkpoint, save_checkpoint
from training.checkpoint import stage_checkpoint_dir as ckpt_dir
from training.data.loader import PackedLoader
from training.data.preferences import PreferenceLoader
from training.data.tasks import TaskLoader
from training.eval.stage_probe import passkey_probe, stage_tokenizer_path
from training.metrics import read_metrics, summarize
from training.model import ModelConfig, Transformer
from training.model.rope_schedule import stage_rope_settings
from training.objectives import DPO, OBJECTIVES, Objective, build_objective
from training.objectives.reference_logps import load_reference_logps, prepare_reference_logps
from training.observability import Progress, RunMetrics
from training.optim import build_adamw, set_lr, set_weight_decay
from training.parallel import (
    DistEnv,
    apply_activation_checkpointing,
    compile_blocks,
    shard_model,
)
from training.plan import GRPOSpec, StageSpec, TrainPlan, resolve_stage_lengths
from training.rollouts import RolloutSource
from training.run_state import (
    RunState,
    check_stop_after,
    data_fingerprints,
    resume_state,
    trainer_state,
)
from training.stage_schedule import stage_lr, stage_peak_lrs, stage_rope_thetas
from training.step_metrics import StepMetrics
from training.train_step import NonFiniteGuard, train_step

# stage_rope_thetas and check_stop_after stay importable here for callers of the loop
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


def open_stage_shards(plan: TrainPlan, data_root: Path, *, verify: bool | str) -> dict[str, Any]:
    """Open every stage's shards up front: a missing or mismatched stage fails before step 1.

    `verify`: True hashes every shard now, "on_read" when a loader first reads it.
    """
    from mixtures.shards import StageShards

    opened = {s.data: StageShards.open(data_root / s.data, verify=verify) for s in plan.stages}
    vocab = {name: int(sh.manifest["tokenizer"]["vocab_size"]) for name, sh in opened.items()}
    if len(set(vocab.values())) != 1:
        raise ValueError(f"{data_root}: stages use different tokenizer vocab sizes {vocab}")
    for s in plan.stages:
        wanted, kind = OBJECTIVES[s.objective].data_kind, opened[s.data].kind
        if kind != wanted:
            raise ValueError(
                f"stage {s.name!r}: objective {s.objective} trains on {wanted} shards, but "
                f"{data_root / s.data} holds {kind} shards"
            )
    return opened


def build_loader(plan: TrainPlan, i: int, shards: Any, env: DistEnv, model: torch.nn.Module) -> Any:
    """The stage's batch stream: packed windows (pre-training, SFT), preference pairs, or
    rollouts sampled from the model (GRPO)."""
    vocab_size, max_len = model.cfg.vocab_size, model.cfg.max_seq_len
    stage = plan.stages[i]
    common = {
        "batch_size": stage.batch_size,
        "rank": env.rank,
        "world_size": env.world_size,
        "grad_accum": stage.grad_accum,
        "seed": plan.seed + i,
        "vocab_size": vocab_size,
        "name": stage.name,
    }
    pad = int(shards.manifest["tokenizer"]["eos_id"])  # never attended nor labelled
    if shards.kind == "preferences":
        return PreferenceLoader(shards, pad_id=pad, max_len=max_len, **common)
    if shards.kind == "tasks":
        return rollout_source(stage, TaskLoader(shards, **common), shards, model, env, pad, plan)
    return PackedLoader(shards, seq_len=stage.seq_len, **common)


def rollout_source(
    stage: StageSpec,
    tasks: TaskLoader,
    shards: Any,
    model: torch.nn.Module,
    env: DistEnv,
    pad_id: int,
    plan: TrainPlan,
) -> RolloutSource:
    """A GRPO stage samples its batches from the policy; a KL term adds a frozen copy of
    the stage's starting weights as the reference."""
    from mixtures.tokenizer import chat_token_ids, load_tokenizer

    spec = stage.grpo or GRPOSpec()
    tok_path = stage_tokenizer_path(shards.stage_dir, shards.manifest)
    if tok_path is None:
        raise ValueError(f"{shards.stage_dir}: a grpo stage needs its tokenizer to decode")
    tokenizer = load_tokenizer(tok_path)
    stops = [chat_token_ids(tokenizer)["<|end|>"], int(shards.manifest["tokenizer"]["eos_id"])]
    reference = None
    if spec.kl_beta > 0:
        reference = build_model(plan, model.cfg.vocab_size, env)
        set_model_state_dict(reference, get_model_state_dict(model))
        reference.requires_grad_(False)
    return RolloutSource(
        tasks,
        model,
        tokenizer,
        group_size=spec.group_size,
        max_new_tokens=spec.max_new_tokens,
        temperature=spec.temperature,
        top_p=spec.top_p,
        advantage_scale=spec.advantage_scale,
        stop_ids=stops,
        pad_id=pad_id,
        seed=plan.seed,
        rank=env.rank,
        device=env.device,
        reference=reference,
    )


def prepare_objective(
    objective: Objective,
    model: torch.nn.Module,
    stage: StageSpec,
    shards: Any,
    env: DistEnv,
    saved: dict[str, Any] | None,
) -> None:
    """What an objective needs before its stage's first step: DPO's reference log-probs,
    computed from the weights the stage starts from (a resumed stage reloads the file it
    used, since its weights have moved on)."""
    if not isinstance(objective, DPO):
        return
    if saved and saved.get("reference_logps"):
        objective.reference = load_reference_logps(Path(saved["reference_logps"]), shards)
        return
    objective.reference = prepare_reference_logps(
        model,
        shards,
        batch_size=stage.batch_size,
        pad_id=int(shards.manifest["tokenizer"]["eos_id"]),
        max_len=model.cfg.max_seq_len,
        device=env.device,
        is_main=env.is_main,
    )


def planned_tokens(shards: dict[str, Any]) -> dict[str, int]:
    """Each mixture stage's planned tokens, as its manifest records them."""
    return {name: int(sh.manifest["total_tokens"]) for name, sh in shards.items()}


def build_model(plan: TrainPlan, vocab_size: int, env: DistEnv) -> Transformer:
    """The same init on every rank (seeded before sharding), then AC per block, then FSDP2."""
    cfg = ModelConfig(**plan.model.model_dump(), vocab_size=vocab_size)
    torch.manual_seed(plan.seed)
    with torch.device(env.device):
        model = Transformer(cfg)
    if plan.activation_checkpointing:
        apply_activation_checkpointing(model)
    if plan.compile:
        compile_blocks(model)
    shard_model(model, env.mesh["dp"], getattr(torch, plan.dtype))
    return model


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

    data = data_fingerprints(shards)
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
