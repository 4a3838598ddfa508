"""Registry entry: the exact-duplicate key of each document."""

from __future__ import annotations

import hashlib

import pyarrow as pa

from curation.dedup.minhash import normalize_for_hashing
from curation.scorers.base import DocBatch, Scorer


def norm_hash(text: str) -> bytes:
    """128-bit hash of the normalised text (NFKC, lower case, punctuation and whitespace
    folded): documents that differ only in those are exact duplicates."""
    return hashlib.blake2b(normalize_for_hashing(text).encode(), digest_size=16).digest()


class ExactHash(Scorer):
    name = "exact_hash"
    columns = (pa.field("norm_hash", pa.binary()),)

    def score(self, batch: DocBatch) -> dict[str, list]:
        return {"norm_hash": [norm_hash(t) for t in batch.texts]}
