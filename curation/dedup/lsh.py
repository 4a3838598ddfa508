"""MinHash signatures -> LSH band buckets -> star edges to each bucket's smallest key.

Signatures are computed per Arrow batch inside `mapInArrow`. Each document emits one
bucket hash per band; a bucket's members are joined to the bucket's minimum key, which
gives n-1 edges per bucket (not n^2) and never gathers a bucket's member list in one
task: a boilerplate bucket with millions of members is a plain aggregation plus a join
that adaptive execution splits when skewed.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from curation.dedup.lsh_params import LshParams
from curation.dedup.minhash import MinHasher, ShingleSpec, normalize_for_hashing, shingle_hashes
from curation.stage_profile import python_timed

SIGNATURE_DDL = "key long, bands array<long>, shingles binary"
_BAND_MULT = np.uint64(0xD6E8FEB86659FD93)


def band_hashes(sig: np.ndarray, params: LshParams) -> np.ndarray:
    """(n_docs, bands) int64: a 64-bit hash of each band's `rows` signature values."""
    n = sig.shape[0]
    out = np.zeros((n, params.bands), dtype=np.uint64)
    mult = np.uint64(1)
    for j in range(params.rows):  # rows is small; vectorised over docs and bands
        cols = sig[:, j : params.bands * params.rows : params.rows].astype(np.uint64)
        out += cols * mult
        mult = np.uint64((int(mult) * int(_BAND_MULT)) & 0xFFFFFFFFFFFFFFFF)
    out ^= np.arange(params.bands, dtype=np.uint64)[None, :] * np.uint64(0x9E3779B97F4A7C15)
    out ^= out >> np.uint64(29)
    out *= np.uint64(0xBF58476D1CE4E5B9)
    out ^= out >> np.uint64(32)
    return out.view(np.int64)


def signature_batches(batches, spec: ShingleSpec, num_perm: int, seed: int,
                      params: LshParams, keep_shingles: bool):
    """mapInArrow body: (key, text) -> (key, bands, shingles)."""
    hasher = MinHasher(num_perm, seed)
    for batch in batches:
        keys = batch.column("key")
        texts = [normalize_for_hashing(t) for t in batch.column("text").to_pylist()]
        hashes, offsets = shingle_hashes(texts, spec)
        sig = hasher.signatures(hashes, offsets)
        bands = band_hashes(sig, params)
        # a document without shingles gets no bands: it cannot be a near duplicate
        lens = np.where(np.diff(offsets) > 0, params.bands, 0).astype(np.int32)
        band_off = np.zeros(len(texts) + 1, dtype=np.int32)
        np.cumsum(lens, out=band_off[1:])
        band_arr = pa.ListArray.from_arrays(pa.array(band_off),
                                            pa.array(bands[lens > 0].reshape(-1)))
        if keep_shingles:
            shingles = [np.unique(hashes[offsets[i] : offsets[i + 1]]).tobytes()
                        for i in range(len(texts))]
        else:
            shingles = [None] * len(texts)
        yield pa.RecordBatch.from_arrays(
            [keys, band_arr, pa.array(shingles, type=pa.binary())],
            names=["key", "bands", "shingles"],
        )


def compute_signatures(docs: DataFrame, spec: ShingleSpec, num_perm: int, seed: int,
                       params: LshParams, keep_shingles: bool) -> DataFrame:
    """docs(key, text) -> (key, bands, shingles)."""
    def run(it):
        return signature_batches(it, spec, num_perm, seed, params, keep_shingles)

    return docs.select("key", "text").mapInArrow(python_timed(run), SIGNATURE_DDL)


def bucket_members(signatures: DataFrame) -> DataFrame:
    """(band, bucket, key) for buckets with at least two members."""
    members = signatures.select("key", F.posexplode("bands").alias("band", "bucket"))
    sizes = members.groupBy("band", "bucket").agg(F.count("*").alias("n")).where("n > 1")
    return members.join(sizes.select("band", "bucket"), ["band", "bucket"])


def star_candidates(members: DataFrame) -> DataFrame:
    """(band, bucket, key, root): each member with its bucket's smallest key, root excluded."""
    roots = members.groupBy("band", "bucket").agg(F.min("key").alias("root"))
    return members.join(roots, ["band", "bucket"]).where(F.col("key") != F.col("root"))
