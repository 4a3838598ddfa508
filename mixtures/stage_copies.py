"""From repeats to shard rows: expand each document into its copies, key every copy, cut
the keyed order into shards.

Copy c of the document with id hash h has the key copy_keys(h, c); the stage's rows are
all copies sorted by (key, h, c), and shard k holds the copies whose key falls in the k-th
of n_shards equal slices of the key range (`doc_keys.shard_of`). Everything is a function
of the copies themselves, so an engine that sees the documents in another order or split
over executors writes the same shards with the same rows in the same order.
"""

from __future__ import annotations

import math

import numpy as np

from mixtures.doc_keys import copy_keys, shard_of


def n_shards(stage_tokens: int, shard_tokens: int) -> int:
    """Shards for a stage: ceil(tokens / target), at least one."""
    return max(1, math.ceil(stage_tokens / shard_tokens))


def expand_copies(id_hash: np.ndarray, repeats: np.ndarray) -> tuple[np.ndarray, ...]:
    """(document index, copy number, key) of every copy, sorted into the stage's order."""
    repeats = np.asarray(repeats, dtype=np.int64)
    rows = np.repeat(np.arange(len(repeats), dtype=np.int64), repeats)
    first = np.repeat(np.cumsum(repeats) - repeats, repeats)
    copy = np.arange(len(rows), dtype=np.int64) - first
    h = np.asarray(id_hash, dtype=np.uint64)[rows]
    keys = copy_keys(h, copy)
    order = np.lexsort((copy, h, keys))
    return rows[order], copy[order].astype(np.int32), keys[order]


def shard_slices(sorted_keys: np.ndarray, n: int) -> list[tuple[int, int, int]]:
    """(shard index, start, stop) of each non-empty shard over keys sorted ascending."""
    shard = shard_of(sorted_keys, n)
    starts = np.flatnonzero(np.diff(shard, prepend=-1)) if len(shard) else np.zeros(0, int)
    stops = np.append(starts[1:], len(shard))
    return [(int(shard[a]), int(a), int(b)) for a, b in zip(starts, stops, strict=True)]
