"""Group relative policy optimisation as an objective of the one training core.

A batch is a set of rollouts (`training/rollouts.py`): for each prompt, G sampled
completions with the log-probs the sampling policy gave them and their group-normalised
advantages. The loss is the clipped-ratio surrogate per completion token, optionally
plus a k3 KL to a frozen reference, summed over tokens; the step divides by the global
count of completion tokens (token-level normalisation, as DAPO), like every objective.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from training.objectives.base import IGNORE_INDEX, Objective
from training.objectives.grpo_loss import grpo_token_loss


@dataclass(frozen=True)
class RolloutBatch:
    inputs: torch.Tensor  # (R, T) prompt + completion without its last token, right-padded
    labels: torch.Tensor  # (R, T) the completion's tokens where they are predicted, else -100
    position_ids: torch.Tensor  # (R, T) 0.. along the row; the padding restarts at 0
    segment_ids: torch.Tensor  # (R, T) 0 on the sequence, 1 on its padding
    old_logps: torch.Tensor  # (R, T) log-prob of each label under the sampling policy
    advantages: torch.Tensor  # (R,) group-normalised reward of each completion
    ref_logps: torch.Tensor | None = None  # (R, T) under the frozen reference (KL only)

    def to(self, device: torch.device) -> RolloutBatch:
        return RolloutBatch(**{k: t.to(device) for k, t in self.items()})

    def items(self) -> list[tuple[str, torch.Tensor]]:
        pairs = [(f.name, getattr(self, f.name)) for f in fields(self)]
        return [(k, t) for k, t in pairs if t is not None]


def label_logps(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """log p(label) per position, 0 where the label is IGNORE_INDEX: (R, T, V) -> (R, T)."""
    nll = F.cross_entropy(
        logits.flatten(0, 1).float(), labels.flatten(), ignore_index=IGNORE_INDEX, reduction="none"
    )
    return -nll.view_as(labels)


class GRPO(Objective):
    name: ClassVar[str] = "grpo"
    data_kind: ClassVar[str] = "tasks"
    batch_schema: ClassVar[tuple[str, ...]] = (
        "inputs",
        "labels",
        "position_ids",
        "segment_ids",
        "old_logps",
        "advantages",
    )

    def __init__(
        self, clip_eps: float = 0.2, clip_eps_high: float | None = None, kl_beta: float = 0.0
    ) -> None:
        self.clip_eps, self.clip_eps_high, self.kl_beta = clip_eps, clip_eps_high, kl_beta
        self.last_stats: dict[str, float] = {}

    def loss(self, model: nn.Module, batch: RolloutBatch) -> tuple[torch.Tensor, torch.Tensor]:
        logits = model(batch.inputs, batch.position_ids, batch.segment_ids)
        loss_sum, n_valid, stats = grpo_token_loss(
            label_logps(logits, batch.labels),
            batch.old_logps,
            batch.advantages,
            batch.labels != IGNORE_INDEX,
            clip_eps=self.clip_eps,
            clip_eps_high=self.clip_eps_high,
            ref_logps=batch.ref_logps,
            kl_beta=self.kl_beta,
        )
        self.last_stats = {k: float(v) for k, v in stats.items()}
        return loss_sum, n_valid
