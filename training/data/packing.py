"""Turn a run of stream tokens into packed training windows.

A window is `seq_len + 1` consecutive stream tokens: inputs are the first `seq_len`,
labels the last `seq_len` (the next token at each position). Documents are packed back
to back across boundaries; the per-token `segment_ids` (which document inside the
window) and `position_ids` (offset since that document's start inside the window) let
attention stay inside a document and restart RoPE positions at each boundary.

In pre-training every label is a real next token, so none holds the objectives'
`IGNORE_INDEX`; a batch type that masks positions (SFT prompts) writes it into `labels`.
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

    @property
    def targets(self) -> torch.Tensor:
        """The next tokens; the same tensor as `labels` for packed pre-training windows."""
        return self.labels

    def to(self, device: torch.device) -> PackedBatch:
        return PackedBatch(**{k: t.to(device, non_blocking=True) for k, t in self.items()})

    def items(self) -> list[tuple[str, torch.Tensor]]:
        return [(f.name, getattr(self, f.name)) for f in fields(self)]

    def astuple(self) -> tuple[torch.Tensor, ...]:
        return tuple(t for _, t in self.items())


def pack_windows(tokens: np.ndarray, doc_start: np.ndarray, seq_len: int) -> PackedBatch:
    """tokens/doc_start: 1-D, length B * (seq_len + 1); doc_start marks each document's first token."""
    width = seq_len + 1
    if tokens.shape != doc_start.shape or tokens.size % width:
        raise ValueError(f"pack_windows: {tokens.size} tokens do not split into windows of {width}")
    rows = tokens.reshape(-1, width).astype(np.int64)
    starts = doc_start.reshape(-1, width)[:, :-1].copy()
    starts[:, 0] = True  # every row opens a (possibly continued) document
    segment_ids = np.cumsum(starts, axis=1) - 1
    idx = np.broadcast_to(np.arange(seq_len), starts.shape)
    segment_start = np.maximum.accumulate(np.where(starts, idx, 0), axis=1)
    position_ids = idx - segment_start
    return PackedBatch(
        inputs=torch.from_numpy(np.ascontiguousarray(rows[:, :-1])),
        labels=torch.from_numpy(np.ascontiguousarray(rows[:, 1:])),
        position_ids=torch.from_numpy(np.ascontiguousarray(position_ids)),
        segment_ids=torch.from_numpy(np.ascontiguousarray(segment_ids)),
    )
