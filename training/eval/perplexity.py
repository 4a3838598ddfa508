"""Held-out perplexity per domain over a stage's shards.

The stage is read exactly as training reads it (`PackedLoader`, world size 1, from its
start): documents packed back to back into `seq_len + 1`-token windows, attention kept
inside each document, positions restarting at each one. Every label is scored once;
its loss is counted for its own document's domain (`PackedBatch.domain_ids`). Per domain
the token-weighted mean NLL gives ppl = exp(mean NLL); `all` pools every label. Reading
stops at `max_tokens` scored labels (whole windows, so slightly past it) or at the end
of the stage, never wrapping into repeated data.

It is only held-out when the stage is one the model did not train on (another mixture
stage, or a split kept aside): pointed at its own training stage it measures fit.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from training.data.loader import PackedLoader
from training.data.packing import PackedBatch
from training.objectives.base import IGNORE_INDEX

log = logging.getLogger(__name__)


def _windows(loader: PackedLoader, limit: int | None) -> Iterator[PackedBatch]:
    """One window at a time from the stream's start until it is used up (no epoch 2)."""
    n = 0
    while limit is None or n < limit:
        window = loader.next_batch()
        if loader.state_dict()["epoch"] > 0:  # the stream wrapped: that window repeats data
            return
        n += 1
        yield window


def _batches(
    windows: Iterator[PackedBatch], batch_size: int, max_tokens: int
) -> Iterator[list[PackedBatch]]:
    """Up to batch_size windows at a time, until max_tokens labels are in or none are left."""
    scored = 0
    while scored < max_tokens:
        batch: list[PackedBatch] = []
        for window in windows:
            batch.append(window)
            scored += int((window.labels != IGNORE_INDEX).sum())
            if len(batch) == batch_size or scored >= max_tokens:
                break
        if not batch:
            return
        yield batch


class _DropEpochWarning(logging.Filter):
    """The loader's "starting epoch 1 (data repeats)": here the wrapped window is dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "starting epoch" not in record.getMessage()


@torch.no_grad()
def domain_perplexity(
    model: nn.Module,
    shards: Any,
    *,
    seq_len: int,
    max_tokens: int,
    batch_size: int = 4,
    device: torch.device | str | None = None,
) -> list[dict[str, Any]]:
    """One row per domain that has scored labels, then `all`: {domain, value (ppl), nll,
    tokens}; `shards` is an open `mixtures.shards.StageShards` (pretrain or SFT)."""
    cfg = model.cfg  # type: ignore[attr-defined]
    if not 1 <= seq_len <= cfg.max_seq_len:
        raise ValueError(f"seq_len {seq_len} outside [1, model.max_seq_len={cfg.max_seq_len}]")
    if max_tokens < 1 or batch_size < 1:
        raise ValueError("max_tokens and batch_size must be at least 1")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    loader = PackedLoader(
        shards, seq_len=seq_len, batch_size=1, vocab_size=cfg.vocab_size, name=str(shards.stage_dir)
    )
    # a pre-training stream holds exactly this many whole windows; SFT pads, so it relies
    # on the epoch check alone
    limit = None if loader.masked else shards.total_tokens // (seq_len + 1)
    if limit == 0:
        raise ValueError(
            f"{shards.stage_dir}: {shards.total_tokens} tokens, fewer than one "
            f"{seq_len + 1}-token window; choose a smaller seq_len"
        )
    n_domains = len(loader.domains)
    nll_sum = torch.zeros(n_domains, dtype=torch.float64, device=device)
    count = torch.zeros(n_domains, dtype=torch.int64, device=device)
    quiet = _DropEpochWarning()
    loader_log = logging.getLogger(PackedLoader.__module__)
    loader_log.addFilter(quiet)
    n_windows = 0
    try:
        for batch in _batches(_windows(loader, limit), batch_size, max_tokens):
            n_windows += len(batch)
            inputs, labels, positions, segments, domains = (
                torch.cat([getattr(w, name) for w in batch]).to(device)
                for name in ("inputs", "labels", "position_ids", "segment_ids", "domain_ids")
            )
            logits = model(inputs, positions, segments)
            nll = F.cross_entropy(
                logits.flatten(0, 1).float(),
                labels.flatten(),
                ignore_index=IGNORE_INDEX,
                reduction="none",
            )
            valid = labels.flatten() != IGNORE_INDEX
            by = domains.flatten()[valid]
            nll_sum.index_add_(0, by, nll[valid].double())
            count.index_add_(0, by, torch.ones_like(by))
    finally:
        loader_log.removeFilter(quiet)
    log.info("%s: %d labels scored in %d windows", shards.stage_dir, int(count.sum()), n_windows)
    rows = []
    totals = [(d, float(nll_sum[i]), int(count[i])) for i, d in enumerate(loader.domains)]
    totals.append(("all", float(nll_sum.sum()), int(count.sum())))
    for domain, total, n in totals:
        if n == 0:
            continue
        mean = total / n
        rows.append(
            {
                "domain": domain,
                "value": math.exp(mean),
                "nll": mean,
                "tokens": n,
                "windows": n_windows,
            }
        )
    if not rows:
        raise ValueError(f"{shards.stage_dir}: no labels to score (all masked?)")
    return rows
