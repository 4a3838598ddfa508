"""AdamW with the usual split: decay matrices, never norm gains."""

from __future__ import annotations

import torch
from torch import nn


def build_adamw(
    model: nn.Module,
    *,
    lr: float,
    weight_decay: float,
    betas: tuple[float, float] = (0.9, 0.95),
    eps: float = 1e-8,
) -> torch.optim.AdamW:
    """Two parameter groups: ndim >= 2 weights decay, 1-D (norm gains) do not.

    FSDP2 parameters are DTensors whose `ndim` is the full tensor's, so the split is
    the same sharded or not. `foreach` keeps the update vectorised on CPU and GPU.
    """
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, foreach=True)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def set_weight_decay(optimizer: torch.optim.Optimizer, weight_decay: float) -> None:
    """Update the decaying group when a stage changes weight decay (optimizer state kept)."""
    optimizer.param_groups[0]["weight_decay"] = weight_decay  # group 0 = matrices
