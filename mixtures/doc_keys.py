"""Random keys hashed from (seed, stage, document id): the planner's and shuffle's dice.

A plan or shuffle that draws numbers in input-row order changes when the same rows arrive
permuted or in other partitions. Keys hashed from each document's id do not: every
engine (numpy in one process, Arrow batches on Spark executors) gives the same document
the same key wherever it is read. Per document one 64-bit blake2b hash; everything else
(the rounding draw, one key per copy, the shard of a copy) is derived from it with the
splitmix64 finaliser, vectorised in numpy.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Iterable

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_ROUNDING = np.uint64(0xD1B54A32D192ED03)


def id_hashes(ids: Iterable[str], seed: int, purpose: str) -> np.ndarray:
    """uint64 blake2b of each id, salted by seed and purpose (a stage name, "tokenizer")."""
    key = f"{int(seed)}\x1f{purpose}".encode()
    if len(key) > 64:  # blake2b keys are at most 64 bytes
        key = hashlib.blake2b(key, digest_size=64).digest()
    digests = b"".join(
        hashlib.blake2b(i.encode("utf-8"), digest_size=8, key=key).digest() for i in ids
    )
    return np.frombuffer(digests, dtype="<u8").astype(np.uint64)


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a bijection on uint64 whose outputs look independent."""
    x = np.array(x, dtype=np.uint64, copy=True)
    with np.errstate(over="ignore"):
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return x


def unit(x: np.ndarray) -> np.ndarray:
    """uint64 -> float64 uniform in [0, 1) (top 53 bits)."""
    return (np.asarray(x, dtype=np.uint64) >> np.uint64(11)).astype(np.float64) * 2.0**-53


def rounding_draws(h: np.ndarray) -> np.ndarray:
    """Per-document uniform draw that decides which documents get an extra copy."""
    return unit(mix64(np.asarray(h, dtype=np.uint64) ^ _ROUNDING))


def copy_keys(h: np.ndarray, copy: np.ndarray) -> np.ndarray:
    """Shuffle key of copy `copy` of the document with hash `h` (sorting by it shuffles)."""
    h = np.asarray(h, dtype=np.uint64)
    with np.errstate(over="ignore"):
        return mix64(h + (np.asarray(copy, dtype=np.uint64) + np.uint64(1)) * _GOLDEN)


def shard_of(keys: np.ndarray, n_shards: int) -> np.ndarray:
    """Shard index of each copy: its key's position in [0, 2**64) scaled to n_shards, so
    shard k holds the keys of the k-th slice and shards in order are the global order."""
    if not 1 <= n_shards < 2**32:
        raise ValueError(f"n_shards must be in [1, 2**32), got {n_shards}")
    top = np.asarray(keys, dtype=np.uint64) >> np.uint64(32)
    return ((top * np.uint64(n_shards)) >> np.uint64(32)).astype(np.int64)


def stage_rng(seed: int, stage: str, purpose: str) -> np.random.Generator:
    """A seeded random stream per (seed, stage, purpose), for row-order shuffles of
    post-training stages (their rows come from ordered JSONL files)."""
    return np.random.default_rng(
        [seed, zlib.crc32(stage.encode("utf-8")), zlib.crc32(purpose.encode("utf-8"))]
    )
