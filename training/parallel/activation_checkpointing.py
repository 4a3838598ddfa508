"""Activation checkpointing per transformer block.

Each block keeps only its input for backward and recomputes its activations there:
memory per layer drops from every intermediate (attention, SwiGLU) to one (B, T, dim)
tensor, for one extra forward. Non-reentrant checkpointing (the default of
`checkpoint_wrapper`) works with FSDP2, which all-gathers a block's parameters again for
the recompute. Apply it before `fully_shard`, so each FSDP unit is a wrapped block.
The wrapper's `_checkpoint_wrapped_module.` prefix never reaches a checkpoint: DCP's
`get_state_dict` strips it, so runs with and without it load each other's checkpoints.
"""

from __future__ import annotations

from torch import nn
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper


def apply_activation_checkpointing(model: nn.Module) -> nn.Module:
    """Wrap every module of `model.blocks` in place; returns the model."""
    blocks: nn.ModuleList = model.blocks  # type: ignore[assignment]
    for i, block in enumerate(blocks):
        blocks[i] = checkpoint_wrapper(block, preserve_rng_state=False)  # no dropout
    return model
