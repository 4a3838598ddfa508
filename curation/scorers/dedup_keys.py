"""Registry entry: each document's dedup keys, from one normalisation of its text.

`norm_hash` (exact dedup) and the MinHash LSH `bands` (near dedup) both start from
`normalize_for_hashing`, the costliest per-byte step of dedup. Computing both here, in
the annotation pass that already holds the text in Python, normalises each document once
and moves no text through a second Python pass: the LSH stages then read 28 numbers per
document instead of the text (benchmarks/RESULTS.md, curation throughput).

Bands are computed for documents no filter removed (a removed document is never a
keeper) and are null when there are none (near dedup off, or no shingles). Exact
duplicates get bands too: cheaper than a second pass over the exact keepers' texts.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa

from curation.config import CurationConfig
from curation.dedup.lsh import band_hashes
from curation.dedup.lsh_params import lsh_params_for
from curation.dedup.minhash import MinHasher, ShingleSpec, normalize_for_hashing, shingle_hashes
from curation.scorers.base import DocBatch, Scorer


def norm_hash(text: str) -> bytes:
    """128-bit hash of the normalised text (NFKC, lower case, punctuation and whitespace
    folded): documents that differ only in those are exact duplicates."""
    return _hash(normalize_for_hashing(text))


def _hash(normalised: str) -> bytes:
    return hashlib.blake2b(normalised.encode(), digest_size=16).digest()


class DedupKeys(Scorer):
    name = "dedup_keys"
    columns = (pa.field("norm_hash", pa.binary()), pa.field("bands", pa.list_(pa.int64())))
    reads = ("removed_by",)

    def __init__(self, cfg: CurationConfig):
        super().__init__(cfg)
        d = cfg.dedup
        self.near = d.near
        self.spec = ShingleSpec(d.shingle, d.ngram)
        self.params = lsh_params_for(d)
        self.hasher = MinHasher(d.num_perm, d.seed, keep=self.params.bands * self.params.rows)

    def score(self, batch: DocBatch) -> dict[str, list]:
        normalised = [normalize_for_hashing(t) for t in batch.texts]
        out: dict[str, list] = {"norm_hash": [_hash(t) for t in normalised]}
        n = len(normalised)
        if not self.near:
            out["bands"] = pa.nulls(n, pa.list_(pa.int64()))
            return out
        kept = [i for i, r in enumerate(batch.columns["removed_by"]) if r is None]
        hashes, offsets = shingle_hashes([normalised[i] for i in kept], self.spec)
        bands = band_hashes(self.hasher.signatures(hashes, offsets), self.params)
        has = np.zeros(n, dtype=bool)
        has[np.asarray(kept, dtype=np.int64)[np.diff(offsets) > 0]] = True
        rows = np.zeros(n, dtype=np.int64)  # which row of `bands` each document takes
        rows[kept] = np.arange(len(kept))
        # a document without shingles (or removed) gets null bands: never a near duplicate
        offs = np.zeros(n + 1, dtype=np.int32)
        np.cumsum(np.where(has, self.params.bands, 0), out=offs[1:])
        values = bands[rows[has]].reshape(-1)
        out["bands"] = pa.ListArray.from_arrays(pa.array(offs), pa.array(values),
                                                mask=pa.array(~has))
        return out
