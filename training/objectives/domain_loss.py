"""Per-domain loss of one optimizer step, from the per-token losses an objective computes.

The loader tags every label with its document's domain (`PackedBatch.domain_ids`); an
objective hands its per-token losses to `Objective.track`, which adds them here by
domain. Sums and counts are detached and all-reduced once per step, so a domain's loss is
its mean over the global batch, comparable to the total loss, at the cost of one
index_add per micro-batch and one small collective.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


class DomainLoss:
    def __init__(self, n_domains: int, device: torch.device) -> None:
        self.sums = torch.zeros(n_domains, dtype=torch.float64, device=device)
        self.counts = torch.zeros(n_domains, dtype=torch.float64, device=device)

    def add(self, token_loss: torch.Tensor, valid: torch.Tensor, domain_ids: torch.Tensor) -> None:
        """token_loss, valid (bool) and domain_ids: same shape, one entry per label."""
        ids = domain_ids[valid]
        self.sums.index_add_(0, ids, token_loss.detach()[valid].double())
        self.counts.index_add_(0, ids, torch.ones_like(ids, dtype=torch.float64))

    def global_means(self) -> list[float | None]:
        """Each domain's mean loss over every rank's valid labels; None where it had none."""
        both = torch.stack([self.sums, self.counts])
        if dist.is_initialized():
            dist.all_reduce(both)
        sums, counts = both.tolist()
        return [s / c if c else None for s, c in zip(sums, counts, strict=True)]
