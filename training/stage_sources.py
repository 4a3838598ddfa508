"""What a stage reads: its batch source, and what its objective needs before step 1.

Packed windows (pre-training, SFT), preference pairs (DPO) or rollouts sampled from the
policy (GRPO) all offer `next_batches()`, `state_dict()` and `tokens_consumed`, so the
loop treats them alike.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch.distributed.checkpoint.state_dict import get_model_state_dict, set_model_state_dict

from training.build import build_model
from training.data.loader import PackedLoader
from training.data.preferences import PreferenceLoader
from training.data.tasks import TaskLoader
from training.eval.stage_probe import stage_tokenizer_path
from training.objectives import DPO, Objective
from training.objectives.reference_logps import load_reference_logps, prepare_reference_logps
from training.parallel import DistEnv
from training.plan import GRPOSpec, StageSpec, TrainPlan
from training.rollouts import RolloutSource


def pad_id(shards: Any) -> int:
    """Padding of pair and rollout rows: eos, never attended to nor labelled."""
    return int(shards.manifest["tokenizer"]["eos_id"])


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
    pad = pad_id(shards)
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
    stops = [chat_token_ids(tokenizer)["<|end|>"], pad_id]  # the pad is eos
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
        pad_id=pad_id(shards),
        max_len=model.cfg.max_seq_len,
        device=env.device,
        is_main=env.is_main,
    )
