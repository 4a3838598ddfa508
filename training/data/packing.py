"""Turn a run of stream tokens into packed training windows.

A window is `seq_len + 1` consecutive stream tokens: inputs are the first `seq_len`,
labels the last `seq_len` (the next token at each position). Documents are packed back
to back across boundaries; the per-token `segment_ids` (which document inside the
window) and `position_ids` (offset since that document's start inside the window) let
attention stay inside a document and restart RoPE positions at each boundary.

`domain_ids` give, per position, the domain of the document its *label* belongs to, so
the loss can be reported per domain (issue 7, point 7). A label and its input share a
document except at a boundary, where the input is the previous document's last token
and the label the next document's first: the loss there is for predicting the label,
so it is counted for the label's document.

In pre-training every label is a real next token, so none holds the objectives'
`IGNORE_INDEX`. SFT windows pass `trainable` (the stage's loss mask, 1 on assistant
content and its END; 0 on padding): labels hold `IGNORE_INDEX` wherever the label token is
not trainable, so a causal-LM loss falls on assistant tokens only. The SFT loader starts
every conversation that fits a window at a window's start; the rest of one longer than a
window, which a row only continues, is masked in that row: there it cannot see its prompt,
and training on it would teach answering without one.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch


@dataclass(frozen=True)
class PackedBatch:
    inputs: torch.Tensor  # (B, T) int64
    labels: torch.Tensor  # (B, T) int64, next token; IGNORE_INDEX where no loss is wanted
    position_ids: torch.Tensor  # (B, T) int64, restart at 0 for each document
    segment_ids: torch.Tensor  # (B, T) int64, 0, 1, ... per document inside the row
    # (B, T) int64: index into the loader's `domains` of each *label's* document; None for
    # batches built without domains (hand-made test batches).
    domain_ids: torch.Tensor | None = None

    @property
    def targets(self) -> torch.Tensor:
        """The next tokens; the same tensor as `labels` for packed pre-training windows."""
        return self.labels

    def to(self, device: torch.device) -> PackedBatch:
        return PackedBatch(**{k: t.to(device, non_blocking=True) for k, t in self.items()})

    def items(self) -> list[tuple[str, torch.Tensor]]:
        """The tensors by field name; optional fields left None are skipped."""
        pairs = [(f.name, getattr(self, f.name)) for f in fields(self)]
        return [(k, t) for k, t in pairs if t is not None]

    def astuple(self) -> tuple[torch.Tensor, ...]:
        return tuple(t for _, t in self.items())


def pack_windows(
    tokens: np.ndarray,
    doc_start: np.ndarray,
    seq_len: int,
    domains: np.ndarray | None = None,
    trainable: np.ndarray | None = None,
) -> PackedBatch:
    """tokens/doc_start (and domains, each token's document's domain index; trainable, each
    token's loss-mask flag): 1-D, length B * (seq_len + 1); doc_start marks each document's
    first token."""
    width = seq_len + 1
    if tokens.shape != doc_start.shape or tokens.size % width:
        raise ValueError(f"pack_windows: {tokens.size} tokens do not split into windows of {width}")
    for name, extra in (("domain ids", domains), ("loss-mask flags", trainable)):
        if extra is not None and extra.shape != tokens.shape:
            raise ValueError(f"pack_windows: {extra.size} {name} for {tokens.size} tokens")
    rows = tokens.reshape(-1, width)
    starts = doc_start.reshape(-1, width)[:, :-1].copy()
    starts[:, 0] = True  # every row opens a (possibly continued) document
    # Over the flattened batch (faster than row-wise accumulates): each position's segment
    # number, its segment's first flat index, positions as the offset from it; segment ids
    # then restart at 0 per row (every row opens a segment).
    flat = starts.ravel()
    segment = np.cumsum(flat, dtype=np.int64)
    segment -= 1
    position_ids = np.arange(flat.size, dtype=np.int64)
    position_ids -= np.flatnonzero(flat)[segment]
    position_ids = position_ids.reshape(starts.shape)
    segment_ids = segment.reshape(starts.shape)
    segment_ids -= segment_ids[:, :1].copy()
    domain_ids = None
    if domains is not None:  # the labels' documents: stream positions 1..seq_len of a window
        domain_ids = torch.from_numpy(domains.reshape(-1, width)[:, 1:].astype(np.int64))
    # astype of a row-sliced view writes a fresh C-contiguous int64 array: one pass each.
    labels = rows[:, 1:].astype(np.int64)
    if trainable is not None:
        from training.objectives.base import IGNORE_INDEX  # here: objectives may import data

        keep = _trainable_labels(trainable.reshape(-1, width), doc_start.reshape(-1, width))
        labels[~keep] = IGNORE_INDEX
    return PackedBatch(
        inputs=torch.from_numpy(rows[:, :-1].astype(np.int64)),
        labels=torch.from_numpy(labels),
        position_ids=torch.from_numpy(position_ids),
        segment_ids=torch.from_numpy(segment_ids),
        domain_ids=domain_ids,
    )


def _trainable_labels(trainable: np.ndarray, doc_start: np.ndarray) -> np.ndarray:
    """(B, seq_len) bool: the label token is trainable and its document starts in its row."""
    opened = np.cumsum(doc_start, axis=1) > 0  # a document has started in this row
    return (trainable[:, 1:] != 0) & opened[:, 1:]
