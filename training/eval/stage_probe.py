"""The probes a stage runs when it ends, at the stage's own window length.

Today one probe: passkey retrieval (`passkey.py`), the cheapest signal that a
length-extension stage (a longer `seq_len`, a larger RoPE base, YaRN) can use the whole
window. Every rank runs it (the model is sharded, so each forward is collective) and
gets the same result. It needs the tokenizer the stage was tokenised with, found
through the stage manifest; a stage without one (hand-built test shards) skips it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from training.eval.passkey import passkey_accuracy

log = logging.getLogger(__name__)


def stage_tokenizer_path(stage_dir: Path, manifest: dict[str, Any]) -> Path | None:
    """The stage's tokenizer.json (the manifest's path is relative to the stage dir)."""
    path = stage_dir / str(manifest["tokenizer"]["path"])
    return path if path.is_file() else None


def passkey_probe(
    model: nn.Module,
    tokenizer_path: Path | None,
    *,
    seq_len: int,
    n_samples: int,
    batch_size: int,
    seed: int,
    device: torch.device,
) -> dict[str, Any] | None:
    """{accuracy, n, seq_len, mean_depth}, or None when skipped (no tokenizer, window too
    short for a needle); the same decision on every rank, so no rank waits alone."""
    if n_samples <= 0 or tokenizer_path is None:
        return None
    from mixtures.tokenizer import load_tokenizer

    try:
        return passkey_accuracy(
            model,
            load_tokenizer(tokenizer_path),
            seq_len,
            n_samples=n_samples,
            seed=seed,
            batch_size=batch_size,
            device=device,
        )
    except ValueError as e:  # raised before any forward, identically on every rank
        log.warning("passkey probe skipped at seq_len %d: %s", seq_len, e)
        return None
