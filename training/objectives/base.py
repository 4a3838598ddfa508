"""What a training stage optimises, as one small component beside the loop.

An `Objective` turns a batch into `(loss_sum, n_valid)`: the loss *summed* over the
batch's valid targets and how many there are. The step divides every micro-batch's sum
by the valid count summed over all ranks and micro-batches, so the gradient is the mean
over the global batch whatever the world size and accumulation (torchtitan's
`components/loss.py` makes the same split). Positions that carry no loss (padding, an
SFT prompt) hold `IGNORE_INDEX` in `labels`, the convention of `F.cross_entropy`.

A later stage type (SFT, DPO, GRPO) adds a subclass and the batch fields it reads
(`batch_schema`); the loop in `training/trainer.py` stays as it is.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import fields, is_dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from training.objectives.domain_loss import DomainLoss

IGNORE_INDEX = -100


class Objective(ABC):
    name: ClassVar[str]
    batch_schema: ClassVar[tuple[str, ...]]  # batch fields `loss` and `n_valid` read
    data_kind: ClassVar[str]  # the shard manifest `kind` it trains on: pretrain, sft, ...
    domain_loss: DomainLoss | None = None  # set by the step when the loader knows domains

    @abstractmethod
    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss summed over valid targets, their count), both 0-d tensors."""

    def track(self, token_loss: torch.Tensor, batch: Any) -> None:
        """Add per-label losses (shaped like `batch.labels`) to the step's per-domain loss."""
        domain_ids = getattr(batch, "domain_ids", None)
        if self.domain_loss is not None and domain_ids is not None:
            self.domain_loss.add(token_loss, batch.labels != IGNORE_INDEX, domain_ids)

    def n_valid(self, batch: Any) -> torch.Tensor:
        """Valid targets in `batch`, known before the forward (the step all-reduces it first)."""
        return (batch.labels != IGNORE_INDEX).sum()

    def state_dict(self) -> dict[str, Any]:
        """What a resumed stage needs to continue identically (saved in trainer_state)."""
        return {}

    def check_batch_type(self, batch_type: type) -> None:
        """Fail at stage start, not mid-step, when the loader's batches lack a field."""
        have = {f.name for f in fields(batch_type)} if is_dataclass(batch_type) else set()
        have |= {n for n in dir(batch_type) if isinstance(getattr(batch_type, n), property)}
        missing = [f for f in self.batch_schema if f not in have]
        if missing:
            raise ValueError(
                f"objective {self.name!r} needs batch fields {missing}, "
                f"which {batch_type.__name__} does not have"
            )
