"""Exact-Jaccard verification of candidate edges, with a budget and re-starring rounds.

MinHash LSH over-generates candidates near the threshold (NeMo reports 1-2% false
positives without a check). We recompute the Jaccard of the two shingle sets for each
candidate pair and keep the edge only if it reaches the threshold. The shingle sets are
recomputed from the texts of the documents that share a bucket (`candidate_shingles`),
materialised once for all rounds. When a member fails
against its bucket's root, it may still be a near duplicate of other members: failed
members are starred again among themselves, for a few rounds.
"""

from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from curation.broadcast_small import broadcast_if_small
from curation.dedup.lsh import star_candidates
from curation.dedup.minhash import ShingleSpec, normalize_for_hashing, shingle_hashes
from curation.stage_profile import python_timed

log = logging.getLogger(__name__)


SHINGLES_DDL = "key long, shingles binary"
# Up to this many candidate (id, key) rows (~40 MB) are broadcast to the text scan, so the
# texts are read in place instead of shuffled into a join (180 MB of shuffle at 180 MB of
# input otherwise); above it, a plain shuffle join.
BROADCAST_CANDIDATES = 2_000_000


def shingle_set_batches(batches, spec: ShingleSpec):
    """mapInArrow body: (key, text) -> (key, the text's distinct shingle hashes, sorted, as
    little-endian uint32 bytes).

    32 bits of each 64-bit shingle hash are enough to verify: two distinct shingles of a
    pair collide with probability ~n*m/2^32 (1e-4 for two 1,000-shingle documents), which
    moves a Jaccard by ~1e-7, and the sets shuffled into pairs are half the size. One sort
    of (document << 32 | hash) per batch replaces a two-key lexsort (8x faster); no Python
    loop per shingle."""
    for batch in batches:
        texts = [normalize_for_hashing(t) for t in batch.column("text").to_pylist()]
        n = len(texts)
        hashes, offsets = shingle_hashes(texts, spec)
        doc = np.repeat(np.arange(n, dtype=np.uint64), np.diff(offsets))
        keyed = (doc << np.uint64(32)) | (hashes >> np.uint64(32))
        keyed.sort()
        first = np.ones(keyed.shape[0], dtype=bool)
        first[1:] = keyed[1:] != keyed[:-1]
        keyed = keyed[first]
        ends = np.zeros(n + 1, dtype=np.int32)
        np.cumsum(np.bincount((keyed >> np.uint64(32)).astype(np.int64), minlength=n) * 4,
                  out=ends[1:])
        values = keyed.astype("<u4")
        sets = pa.BinaryArray.from_buffers(pa.binary(), n,
                                           [None, pa.py_buffer(ends), pa.py_buffer(values)])
        yield pa.RecordBatch.from_arrays([batch.column("key"), sets], names=["key", "shingles"])


def candidate_shingles(members: DataFrame, keys: DataFrame, texts: DataFrame,
                       spec: ShingleSpec) -> DataFrame:
    """(key, shingle set) of every document in an LSH bucket with others, recomputed from
    its text: only these are ever verified, and recomputing them for the candidates is
    cheaper than writing every keeper's shingle set (4 bytes per shingle, about its
    text's size) and shuffling it into each pair. `keys`: (id, key); `texts`: (id, text)."""
    candidates = keys.join(members.select("key").distinct(), "key", "left_semi")
    docs = texts.join(broadcast_if_small(candidates, BROADCAST_CANDIDATES), "id")
    docs = docs.select("key", "text")
    return docs.mapInArrow(python_timed(lambda it: shingle_set_batches(it, spec)), SHINGLES_DDL)


def jaccard_batches(batches):
    """mapInArrow body: (src, dst, a, b) -> (src, dst, jaccard)."""
    for batch in batches:
        sa = batch.column("a").to_pylist()
        sb = batch.column("b").to_pylist()
        out = np.empty(len(sa), dtype=np.float64)
        for i, (x, y) in enumerate(zip(sa, sb, strict=True)):  # per pair, not per shingle
            u = np.frombuffer(x or b"", dtype="<u4")
            v = np.frombuffer(y or b"", dtype="<u4")
            union = u.size + v.size
            inter = np.intersect1d(u, v, assume_unique=True).size if union else 0
            out[i] = inter / (union - inter) if union else 0.0
        yield pa.RecordBatch.from_arrays(
            [batch.column("src"), batch.column("dst"), pa.array(out)],
            names=["src", "dst", "jaccard"],
        )


def score_pairs(pairs: DataFrame, shingles: DataFrame) -> DataFrame:
    """pairs(src, dst) -> (src, dst, jaccard) from the shingle sets of both ends."""
    # hash joins built on the shingle sets (a partition's share of them in memory): no sort
    # of rows that carry whole sets, as a merge join would do on both sides
    a = shingles.select(F.col("key").alias("src"), F.col("shingles").alias("a")).hint("shuffle_hash")
    b = shingles.select(F.col("key").alias("dst"), F.col("shingles").alias("b")).hint("shuffle_hash")
    joined = pairs.join(a, "src").join(b, "dst").select("src", "dst", "a", "b")
    return joined.mapInArrow(python_timed(jaccard_batches), "src long, dst long, jaccard double")


def verified_edges(members: DataFrame, shingles: DataFrame | None, threshold: float,
                   rounds: int, max_pairs: int, checkpoint, stats: dict) -> DataFrame:
    """Edges (src, dst) that survive verification (all star edges when `shingles` is None).

    `shingles`: (key, shingle set), e.g. `candidate_shingles(...)`, unevaluated: it is
    materialised here, once.

    `checkpoint(name, df)` materialises an intermediate result (lineage stays short).
    """
    if shingles is None:
        edges = star_candidates(members).select(F.col("key").alias("src"), F.col("root").alias("dst"))
        edges = checkpoint("edges_unverified", edges.distinct())
        n = edges.count()
        stats.update(candidate_pairs=n, verified_pairs=0, rejected_pairs=0, unverified_pairs=n)
        return edges
    shingles = checkpoint("shingles", shingles)  # one pass over the candidates' texts
    accepted = []
    budget = max_pairs
    totals = {"candidate_pairs": 0, "verified_pairs": 0, "rejected_pairs": 0,
              "unverified_pairs": 0, "verify_rounds_run": 0}
    # a round's candidates and scores are read three times each, and are small (four
    # numbers a row): cached where they are computed (the counts below fill the cache)
    # instead of written and read back, which cost two Spark jobs per round
    cached = []
    for r in range(rounds):
        cand = star_candidates(members).persist()
        cached.append(cand)
        upper = cand.count()  # star rows >= distinct pairs
        if upper == 0:
            break
        pairs = cand.select(F.col("key").alias("src"), F.col("root").alias("dst")).distinct()
        # the distinct pairs are counted only when they may exceed the budget (otherwise
        # every pair is checked and the scored count is theirs): one shuffle less per round
        n = pairs.count() if upper > budget else None
        totals["verify_rounds_run"] = r + 1
        if n is not None and n > budget:  # check a deterministic hash-chosen subset, keep the rest
            frac = budget / n
            pick = (F.abs(F.xxhash64("src", "dst")) % 1_000_000) < int(frac * 1_000_000)
            unchecked = pairs.where(~pick)
            pairs = pairs.where(pick)
            log.warning("verification budget: checking %.1f%% of %d pairs in round %d",
                        100 * frac, n, r)
            accepted.append(checkpoint(f"unchecked_{r}", unchecked))
            totals["unverified_pairs"] += accepted[-1].count()
        scored = score_pairs(pairs, shingles).persist()
        cached.append(scored)
        ok = scored.where(F.col("jaccard") >= threshold).select("src", "dst")
        accepted.append(ok)
        counts = scored.agg(F.count("*"), F.sum((F.col("jaccard") >= threshold).cast("long"))).first()
        n_checked, n_ok = int(counts[0]), int(counts[1] or 0)
        n = n_checked if n is None else n
        totals["candidate_pairs"] += n
        budget -= n_checked
        totals["verified_pairs"] += n_ok
        totals["rejected_pairs"] += n_checked - n_ok
        log.info("verify round %d: %d candidate pairs, %d checked, %d rejected",
                 r, n, n_checked, n_checked - n_ok)
        if n_checked == n_ok or budget <= 0:
            break
        failed = scored.where(F.col("jaccard") < threshold).select(
            F.col("src").alias("key"), F.col("dst").alias("root"))
        members = cand.join(failed, ["key", "root"], "left_semi").select("band", "bucket", "key")
    stats.update(totals)
    out = members.sparkSession.createDataFrame([], "src long, dst long")
    for a in accepted:
        out = out.unionByName(a)
    edges = checkpoint("edges", out.distinct())
    for df in cached:
        df.unpersist()
    return edges
