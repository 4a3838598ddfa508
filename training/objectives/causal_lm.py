"""Causal-LM pre-training: next-token cross entropy over every valid target."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from training.objectives.base import IGNORE_INDEX, Objective

if TYPE_CHECKING:
    from training.data.packing import PackedBatch


class CausalLM(Objective):
    name: ClassVar[str] = "causal_lm"
    data_kind: ClassVar[str] = "pretrain"
    batch_schema: ClassVar[tuple[str, ...]] = ("inputs", "labels", "position_ids", "segment_ids")

    def loss(self, model: nn.Module, batch: PackedBatch) -> tuple[torch.Tensor, torch.Tensor]:
        logits = model(batch.inputs, batch.position_ids, batch.segment_ids)
        token_loss = F.cross_entropy(
            logits.flatten(0, 1).float(),
            batch.labels.flatten(),
            ignore_index=IGNORE_INDEX,
            reduction="none",  # 0 at ignored labels; kept per token for the per-domain loss
        )
        self.track(token_loss.view_as(batch.labels), batch)
        return token_loss.sum(), self.n_valid(batch)


class SFT(CausalLM):
    """Supervised fine-tuning: the same next-token loss on packed conversations, whose
    labels hold IGNORE_INDEX everywhere but on assistant tokens (the chat template's loss
    mask, `mixtures/chat.py`), so the loss falls only on what the model should say."""

    name: ClassVar[str] = "sft"
    data_kind: ClassVar[str] = "sft"
