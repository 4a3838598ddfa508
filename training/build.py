"""What a run builds before its first step: the opened stages and the sharded model.

Every stage's shards open up front (cheap checks; checksums on first read), so a missing
stage, a vocabulary mismatch or an objective pointed at the wrong kind of data fails
before step 1, in `sharpen train` before any rank starts and again in every rank.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from training.model import ModelConfig, Transformer
from training.objectives import OBJECTIVES
from training.parallel import DistEnv, apply_activation_checkpointing, compile_blocks, shard_model
from training.plan import TrainPlan


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
