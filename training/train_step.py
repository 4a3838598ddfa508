"""One optimizer step: accumulate micro-batches, clip, step, or skip a non-finite step.

The loss of a step is the mean over every valid target of the global batch (all ranks,
all micro-batches). The valid count is summed over ranks *before* the forward, so each
micro-batch's backward of `loss_sum / global_valid` adds its exact share; FSDP2 then
sums the gradients over ranks (`training/parallel/fsdp2.py`). One rank with two
micro-batches and two ranks with one each therefore compute the same gradient, up to
float summation order, and a micro-batch with fewer valid targets weighs less.

A step whose loss or gradient norm is NaN or inf changes nothing: its gradients are
dropped and the optimizer does not step (AdamW's moments would carry the NaN on).
Both values are global, so every rank takes the same decision. `NonFiniteGuard`
counts such steps and stops the run once there are more than the plan allows.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from training.objectives import Objective
from training.objectives.domain_loss import DomainLoss

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StepResult:
    loss: float  # mean over the global batch's valid targets
    grad_norm: float  # global norm before clipping
    valid_tokens: int  # valid targets in the global batch
    skipped: bool  # non-finite loss or gradient norm: no update
    loss_by_domain: tuple[float | None, ...] = ()  # mean per domain index (None: no labels)


class TooManySkippedSteps(RuntimeError):
    """More steps had a non-finite loss or gradient norm than `max_nan_skips` allows."""


def _global_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum over ranks (in place); a no-op outside a process group (single-process use)."""
    if dist.is_initialized():
        dist.all_reduce(t)  # SUM
    return t


def forward_backward(
    model: nn.Module, objective: Objective, micro_batches: Sequence[Any]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Accumulate the gradient of the global mean loss; returns (global loss sum, global valid)."""
    n_valid = torch.stack([objective.n_valid(mb) for mb in micro_batches]).sum()
    global_valid = _global_sum(n_valid).clamp(min=1)
    loss_sum = torch.zeros((), device=n_valid.device)
    for mb in micro_batches:
        mb_loss, _ = objective.loss(model, mb)
        (mb_loss / global_valid).backward()
        loss_sum += mb_loss.detach().float()
    return _global_sum(loss_sum), global_valid


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    objective: Objective,
    micro_batches: Sequence[Any],
    *,
    grad_clip: float | None,
    n_domains: int = 0,
) -> StepResult:
    """forward/backward every micro-batch, clip, then step unless the step is non-finite.

    `n_domains` > 0 also measures the loss per domain (the batches' `domain_ids`).
    """
    objective.domain_loss = DomainLoss(n_domains, _device(micro_batches)) if n_domains else None
    try:
        loss_sum, n_valid = forward_backward(model, objective, micro_batches)
        by_domain = objective.domain_loss.global_means() if objective.domain_loss else []
    finally:
        objective.domain_loss = None
    max_norm = grad_clip if grad_clip is not None else math.inf
    grad_norm = _full(torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm))
    loss = (loss_sum / n_valid).item()
    skipped = not (math.isfinite(loss) and math.isfinite(grad_norm))
    if not skipped:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return StepResult(loss, grad_norm, int(n_valid.item()), skipped, tuple(by_domain))


def _device(micro_batches: Sequence[Any]) -> torch.device:
    return micro_batches[0].labels.device


def _full(t: torch.Tensor) -> float:
    """A DTensor's value (FSDP2 grad norms are DTensors) or a plain tensor's."""
    full = t.full_tensor() if hasattr(t, "full_tensor") else t
    return float(full.item())


class NonFiniteGuard:
    """Counts skipped steps over the run; the (limit + 1)-th raises TooManySkippedSteps."""

    def __init__(self, limit: int, skipped: int = 0) -> None:
        self.limit, self.skipped = limit, skipped

    def update(self, result: StepResult, *, stage: str, step: int) -> None:
        if not result.skipped:
            return
        self.skipped += 1
        what = f"loss {result.loss}, grad norm {result.grad_norm}"
        if self.skipped > self.limit:
            raise TooManySkippedSteps(
                f"stage {stage} step {step}: {self.skipped} steps skipped for a non-finite "
                f"loss or gradient norm, more than max_nan_skips={self.limit} ({what}); "
                "lower the LR, check the data, or resume from an earlier checkpoint"
            )
        log.warning(
            "stage %s step %d: %s; step skipped (%d of %d allowed)",
            stage,
            step,
            what,
            self.skipped,
            self.limit,
        )
