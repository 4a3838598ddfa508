"""`torch.compile` per transformer block, as torchtitan does it.

Compiling block by block (not the whole model) keeps each FSDP2 unit a compiled module,
so the per-block all-gather and reshard hooks stay outside the graphs, and every block
reuses the first block's compiled code (same shapes). The attention kernels themselves
run eagerly (`attention.attend` is excluded from tracing): their document layout (how
many documents of which length a batch holds) changes every batch and would recompile.
Apply after activation checkpointing and before `fully_shard`.
"""

from __future__ import annotations

import torch
from torch import nn


def compile_blocks(model: nn.Module) -> nn.Module:
    """Replace every module of `model.blocks` by its compiled form, in place."""
    blocks: nn.ModuleList = model.blocks  # type: ignore[assignment]
    for i, block in enumerate(blocks):
        blocks[i] = torch.compile(block, dynamic=False)
    return model
