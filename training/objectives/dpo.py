"""Direct preference optimisation as an objective of the one training core.

A batch holds B preference pairs as 2B rows (`training/data/preferences.py`): chosen
rows first, then rejected, labels only on reply tokens. The policy's summed reply
log-probs are compared with the reference model's, computed once before the stage's
first step and stored beside the shards (`reference_logps.py`), so the reference model
never sits in memory during training. The loss of a step is the mean over the global
batch's pairs: `n_valid` counts pairs, and the step divides the summed pair losses by
their global count, as it does for tokens in pre-training.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal

import torch
from torch import nn

from training.objectives.base import Objective
from training.objectives.preference_losses import preference_loss, sequence_logps

if TYPE_CHECKING:
    from training.data.preferences import PreferenceBatch
    from training.objectives.reference_logps import ReferenceLogps

PreferenceLossKind = Literal["sigmoid", "ipo", "length_normalized"]


class DPO(Objective):
    name: ClassVar[str] = "dpo"
    data_kind: ClassVar[str] = "preferences"
    batch_schema: ClassVar[tuple[str, ...]] = (
        "inputs",
        "labels",
        "position_ids",
        "segment_ids",
        "pair_index",
    )

    def __init__(
        self, beta: float = 0.1, loss: PreferenceLossKind = "sigmoid", label_smoothing: float = 0.0
    ) -> None:
        self.beta, self.kind, self.label_smoothing = beta, loss, label_smoothing
        self.reference: ReferenceLogps | None = None  # set before the stage's first step
        self.last_margin: torch.Tensor | None = None  # mean reward margin, for metrics

    def state_dict(self) -> dict[str, str]:
        return {"reference_logps": str(self.reference.path)} if self.reference else {}

    def n_valid(self, batch: PreferenceBatch) -> torch.Tensor:
        return torch.tensor(batch.n_pairs, device=batch.labels.device)

    def policy_logps(
        self, model: nn.Module, batch: PreferenceBatch
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Each row's summed reply log-prob and reply length (chosen rows, then rejected)."""
        logits = model(batch.inputs, batch.position_ids, batch.segment_ids)
        return sequence_logps(logits, batch.labels)

    def loss(self, model: nn.Module, batch: PreferenceBatch) -> tuple[torch.Tensor, torch.Tensor]:
        if self.reference is None:
            raise RuntimeError("dpo: reference log-probs were not prepared for this stage")
        logps, lengths = self.policy_logps(model, batch)
        (pc, pr), (lc, lr) = batch.split(logps), batch.split(lengths)
        rc, rr = self.reference.lookup(batch.pair_index)
        losses, chosen_reward, rejected_reward = preference_loss(
            pc,
            pr,
            rc.to(pc.dtype),
            rr.to(pr.dtype),
            beta=self.beta,
            kind=self.kind,
            chosen_lengths=lc,
            rejected_lengths=lr,
            label_smoothing=self.label_smoothing,
        )
        self.last_margin = (chosen_reward - rejected_reward).detach().mean()
        return losses.sum(), self.n_valid(batch)
