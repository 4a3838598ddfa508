"""Reference log-probs for DPO: computed once per (reference model, stage), stored beside
the shards, looked up by each pair's stable `pair_index`.

The reference is the policy as the DPO stage starts (its `init_from` checkpoint or the
previous stage's weights). Its summed reply log-probs for every pair of the stage are one
pass of forwards before step 1; storing them means the reference model is never held in
memory beside the policy, and a resumed or repeated run reuses them. The file is keyed
by a fingerprint of the reference weights, so a different starting point never reads
stale values: `<stage>/reference_logps/<fingerprint>.npy`, shape (n_pairs, 2) float64
(chosen, rejected), written by rank 0 to a temporary name and renamed.

Every rank runs the same forwards over all pairs (FSDP2 forwards are collective); the
pass costs one forward per pair, small beside a stage's training.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from training.objectives.preference_losses import sequence_logps

log = logging.getLogger(__name__)


class ReferenceLogps:
    def __init__(self, values: np.ndarray, path: Path) -> None:
        self.values, self.path = torch.from_numpy(values), path

    def lookup(self, pair_index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(chosen, rejected) reference log-probs of the given pairs, on their device."""
        rows = self.values[pair_index.cpu()].to(pair_index.device)
        return rows[:, 0], rows[:, 1]


def load_reference_logps(path: Path, shards: Any) -> ReferenceLogps:
    """The file a stage started with (a resume: the weights have moved on since)."""
    values = np.load(path)
    if values.shape != (int(shards.total_rows), 2):
        raise ValueError(f"{path}: shape {values.shape} does not fit {shards.stage_dir}")
    return ReferenceLogps(values, path)


def model_fingerprint(model: nn.Module) -> str:
    """sha256 over every parameter's bytes, gathered from all ranks' FSDP shards."""
    digest = hashlib.sha256()
    for name, p in sorted(model.state_dict().items()):
        local = p.to_local() if hasattr(p, "to_local") else p
        digest.update(name.encode())
        digest.update(local.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    mine = digest.hexdigest()
    if not dist.is_initialized():
        return mine
    every: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(every, mine)
    return hashlib.sha256("".join(every).encode()).hexdigest()


def prepare_reference_logps(
    model: nn.Module,
    shards: Any,
    *,
    batch_size: int,
    pad_id: int,
    max_len: int | None,
    device: torch.device,
    is_main: bool,
) -> ReferenceLogps:
    """Load the stored reference log-probs of this model for this stage, or compute them."""
    from training.data.preferences import iter_pairs

    key = model_fingerprint(model)[:16]
    path = Path(shards.stage_dir) / "reference_logps" / f"{key}.npy"
    n_pairs = int(shards.total_rows)
    if path.is_file():
        values = np.load(path)
        if values.shape == (n_pairs, 2):
            log.info("reference log-probs: reusing %s", path)
            return ReferenceLogps(values, path)
        log.warning("%s: shape %s, expected (%d, 2): recomputing", path, values.shape, n_pairs)
    log.info("reference log-probs: one pass over %d pairs -> %s", n_pairs, path)
    values = np.full((n_pairs, 2), np.nan)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for batch in iter_pairs(shards, batch_size, pad_id, max_len):
            batch = batch.to(device)
            logits = model(batch.inputs, batch.position_ids, batch.segment_ids)
            logps, _ = sequence_logps(logits, batch.labels)
            chosen, rejected = batch.split(logps.double())
            index = batch.pair_index.cpu().numpy()
            values[index, 0], values[index, 1] = chosen.cpu().numpy(), rejected.cpu().numpy()
    model.train(was_training)
    if np.isnan(values).any():
        raise ValueError(f"{shards.stage_dir}: pair_index does not cover 0..{n_pairs - 1}")
    if is_main:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with tmp.open("wb") as f:
            np.save(f, values)
        os.replace(tmp, path)
    if dist.is_initialized():
        dist.barrier()
    return ReferenceLogps(values, path)
