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
# Up to this many (band, bucket, key) member rows left (a small input's, or those failing
# a round), the remaining rounds run in one Python task, which holds each of their
# documents' shingle set once (~5 KB each on the benchmark corpus: at most ~0.5 GB). At
# 1 GB 82,665 rows failed round 0 (rounds 1-2: 83k pairs checked in 1.9 s instead of ~16
# Spark jobs, edges 17.8 -> 13.8 s); a Spark round costs ~8 jobs of fixed driver time
# (~1.5 s) where one task checks ~100k pairs; more rows than this, and the rounds stay in
# Spark, spread over the executors.
IN_TASK_ROWS = 100_000


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


def set_intersection(u: np.ndarray, v: np.ndarray) -> int:
    """|u & v| of two sorted arrays of distinct values: one stable sort of the two runs
    (numpy merges them in linear time, where `np.intersect1d` sorts from scratch: 3.6x
    slower on 1,000-shingle sets) and a count of the values that appear twice."""
    both = np.concatenate((u, v))
    both.sort(kind="stable")
    return int(np.count_nonzero(both[1:] == both[:-1]))


def set_jaccard(u: np.ndarray, v: np.ndarray) -> float:
    """Exact Jaccard of two sorted arrays of distinct values (0 for two empty sets)."""
    union = u.size + v.size
    if not union:
        return 0.0
    inter = set_intersection(u, v)
    return inter / (union - inter)


def jaccard(x: bytes | None, y: bytes | None) -> float:
    """Exact Jaccard of two shingle sets (sorted distinct little-endian uint32 bytes)."""
    return set_jaccard(np.frombuffer(x or b"", dtype="<u4"), np.frombuffer(y or b"", dtype="<u4"))


def _set_views(column: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(values, starts, ends) of a binary column of shingle sets, read in place from its
    Arrow buffers (no bytes object per row); a null row is an empty set."""
    wide = pa.types.is_large_binary(column.type)
    kind = np.dtype(np.int64 if wide else np.int32)
    _, offsets, data = column.buffers()
    n = len(column)
    offs = np.frombuffer(offsets, dtype=kind, count=n + 1,
                         offset=column.offset * kind.itemsize)
    if offs[-1] % 4 or (offs[:-1] % 4).any():
        raise ValueError("a shingle set is not a whole number of uint32 values")
    values = np.frombuffer(data, dtype="<u4", count=int(offs[-1]) // 4) if offs[-1] else \
        np.empty(0, dtype="<u4")
    starts, ends = offs[:-1] // 4, offs[1:] // 4
    if column.null_count:
        nulls = column.is_null().to_numpy(zero_copy_only=False)
        ends = np.where(nulls, starts, ends)
    return values, starts, ends


def jaccard_batches(batches):
    """mapInArrow body: (src, dst, a, b) -> (src, dst, jaccard)."""
    for batch in batches:
        va, sa, ea = _set_views(batch.column("a"))
        vb, sb, eb = _set_views(batch.column("b"))
        out = np.fromiter((set_jaccard(va[sa[i]:ea[i]], vb[sb[i]:eb[i]])  # per pair
                           for i in range(batch.num_rows)), dtype=np.float64, count=batch.num_rows)
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


LATE_DDL = "src long, dst long, round int, pairs long, ok long"


def late_rounds(batches, threshold: float, rounds: int):
    """mapInArrow body, one task: the remaining rounds, in Python. Rows are either members
    (band, bucket, key, null: all of a small input's, or those that failed the last Spark
    round) or shingle sets (null, null, key, shingles: one per member key); each round
    stars every bucket's members to its smallest key, checks each distinct pair once,
    and stars the failed members again, exactly as the Spark rounds do. Yields the
    accepted (src, dst) edges and one (round, pairs, ok) row per round run."""
    from collections import defaultdict

    groups: dict[tuple[int, int], set[int]] = defaultdict(set)
    sets: dict[int, bytes] = {}
    for batch in batches:
        cols = [batch.column(c).to_pylist() for c in ("band", "bucket", "key", "shingles")]
        for band, bucket, key, shingles in zip(*cols, strict=True):
            if band is None:
                sets[key] = shingles
            else:
                groups[(band, bucket)].add(key)
    members = {g: sorted(keys) for g, keys in groups.items()}
    src, dst, stats = [], [], []
    for r in range(rounds):
        star = [(g, k, keys[0]) for g, keys in members.items() if len(keys) > 1 for k in keys[1:]]
        if not star:
            break
        scores = {pair: jaccard(sets[pair[0]], sets[pair[1]])
                  for pair in sorted({(k, root) for _, k, root in star})}
        ok = [pair for pair, j in scores.items() if j >= threshold]
        src += [a for a, _ in ok]
        dst += [b for _, b in ok]
        stats.append((r, len(scores), len(ok)))
        if len(ok) == len(scores):
            break
        failed: dict[tuple[int, int], list[int]] = defaultdict(list)
        for g, k, root in star:  # in key order within each bucket
            if scores[(k, root)] < threshold:
                failed[g].append(k)
        members = failed
    n = len(src)
    yield pa.RecordBatch.from_pydict({
        "src": pa.array(src + [None] * len(stats), pa.int64()),
        "dst": pa.array(dst + [None] * len(stats), pa.int64()),
        "round": pa.array([None] * n + [s[0] for s in stats], pa.int32()),
        "pairs": pa.array([None] * n + [s[1] for s in stats], pa.int64()),
        "ok": pa.array([None] * n + [s[2] for s in stats], pa.int64())})


def _in_one_task(members: DataFrame, shingles: DataFrame, threshold: float, rounds: int,
                 first: int, totals: dict) -> DataFrame:
    """Rounds `first`.. `first + rounds - 1` in one task (`late_rounds`): the member rows and
    each member's shingle set once (not once per bucket it is in), then the accepted edges;
    the per-round counts are added to `totals`."""
    sets = shingles.join(members, "key", "left_semi").select(
        F.lit(None).cast("int").alias("band"), F.lit(None).cast("long").alias("bucket"),
        "key", "shingles")
    rows = members.select("band", "bucket", "key", F.lit(None).cast("binary").alias("shingles"))
    late = rows.unionByName(sets).repartition(1).mapInArrow(
        python_timed(lambda it: late_rounds(it, threshold, rounds)), LATE_DDL).persist()
    for row in late.where(F.col("src").isNull()).orderBy("round").collect():
        totals["verify_rounds_run"] = first + 1 + row["round"]
        totals["candidate_pairs"] += row["pairs"]
        totals["verified_pairs"] += row["ok"]
        totals["rejected_pairs"] += row["pairs"] - row["ok"]
        log.info("verify round %d (in one task): %d candidate pairs, %d rejected",
                 first + row["round"], row["pairs"], row["pairs"] - row["ok"])
    return late


def verified_edges(members: DataFrame, shingles: DataFrame | None, threshold: float,
                   rounds: int, max_pairs: int, checkpoint, stats: dict,
                   in_task_rows: int = IN_TASK_ROWS) -> DataFrame:
    """Edges (src, dst) that survive verification (all star edges when `shingles` is None).
    Once at most `in_task_rows` member rows are left (from the start on a small input, or
    after a round), the remaining rounds run in one task (`late_rounds`; 0: every round in
    Spark).

    `shingles`: (key, shingle set), e.g. `candidate_shingles(...)`, unevaluated: it is
    evaluated once, in the task or into a checkpoint the Spark rounds read.

    `checkpoint(name, df)` materialises an intermediate result (lineage stays short).
    """
    if shingles is None:
        edges = star_candidates(members).select(F.col("key").alias("src"), F.col("root").alias("dst"))
        edges = checkpoint("edges_unverified", edges.distinct())
        n = edges.count()
        stats.update(candidate_pairs=n, verified_pairs=0, rejected_pairs=0, unverified_pairs=n)
        return edges
    accepted = []
    budget = max_pairs
    totals = {"candidate_pairs": 0, "verified_pairs": 0, "rejected_pairs": 0,
              "unverified_pairs": 0, "verify_rounds_run": 0}
    # a round's candidates and scores are read three times each, and are small (four
    # numbers a row): cached where they are computed (the counts below fill the cache)
    # instead of written and read back, which cost two Spark jobs per round
    cached = []
    for r in range(rounds):
        left = rounds - r
        if in_task_rows:
            m = members.count()
            log.info("verify round %d: %d member rows", r, m)
            if m == 0:  # no document shares a bucket: nothing to check
                break
            # few rows and no budget to enforce (each round checks fewer pairs than there
            # are member rows): this round and the rest run in one Python task, not ~8
            # Spark jobs each (a small input never starts a Spark round)
            if m <= in_task_rows and budget > left * m:
                late = _in_one_task(members, shingles, threshold, left, r, totals)
                cached.append(late)
                accepted.append(late.where(F.col("src").isNotNull()).select("src", "dst"))
                break
        if r == 0:
            shingles = checkpoint("shingles", shingles)  # one pass over the candidates' texts
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
        if n_checked == n_ok or budget <= 0 or left == 1:
            break
        failed = scored.where(F.col("jaccard") < threshold).select(
            F.col("src").alias("key"), F.col("dst").alias("root"))
        # the next round, in Spark or in one task, starts from these rows written once: not
        # recomputed for the count and again for the round, and not a plan nesting every
        # earlier round's (Catalyst re-optimised that chain at each count and at the final
        # union: 4 Spark rounds over 60 documents took 74 s instead of 24)
        members = checkpoint(f"failed_{r}", cand.join(failed, ["key", "root"], "left_semi")
                             .select("band", "bucket", "key"))
    stats.update(totals)
    # an empty start built in the JVM (`createDataFrame([])` runs a Python RDD task)
    out = members.sparkSession.range(0).select(*(F.lit(None).cast("long").alias(c) for c in ("src", "dst")))
    for a in accepted:
        out = out.unionByName(a)
    edges = checkpoint("edges", out.distinct())
    for df in cached:
        df.unpersist()
    return edges
