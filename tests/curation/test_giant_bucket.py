"""Boilerplate: hundreds of near-identical documents share every LSH bucket. They must
form one cluster, with star edges built by aggregation + join (no per-bucket lists)."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
from corpus_fixture import real_texts, write_jsonl

from curation.config import CurationConfig
from curation.dedup.lsh import bucket_members, star_candidates
from curation.pipeline import CurationJob


@pytest.fixture()
def checkpoint(spark, tmp_path):
    """`verified_edges`' checkpoint: write under the test's directory, read back."""
    def write_and_read(name, df):
        df.write.mode("overwrite").parquet(str(tmp_path / name))
        return spark.read.parquet(str(tmp_path / name))

    return write_and_read


def test_giant_bucket_becomes_one_cluster(spark, tmp_path):
    boiler = real_texts(1)[0]
    n = 300
    recs = [{"id": f"b{i:04d}", "text": f"{boiler}\nserial {i:04d}", "source": "mirror"}
            for i in range(n)]
    recs += [{"id": f"u{i}", "text": t} for i, t in enumerate(real_texts(6)[1:])]
    write_jsonl(tmp_path / "in.jsonl", recs)
    stats = CurationJob(spark, [str(tmp_path / "in.jsonl")], str(tmp_path / "out"),
                        CurationConfig(), mode="dedup").run()
    rows = {r["id"]: r for r in pq.read_table(tmp_path / "out" / "dedup").to_pylist()}
    boiler_rows = [rows[f"b{i:04d}"] for i in range(n)]
    assert {r["cluster_size"] for r in boiler_rows} == {n}
    assert len({r["cluster_id"] for r in boiler_rows}) == 1
    # equal quality and source: the smallest id keeps
    assert [r["id"] for r in boiler_rows if r["keep"]] == ["b0000"]
    assert stats["clusters"]["largest"] == n
    # star edges: n - 1 pairs per bucket, not n^2
    assert stats["dedup"]["candidate_pairs"] <= (n - 1) + 10


def test_star_edges_never_collect_a_bucket(spark):
    sigs = spark.createDataFrame([(k, [7, 8]) for k in range(50)], "key long, bands array<long>")
    plan = star_candidates(bucket_members(sigs))._jdf.queryExecution().executedPlan().toString()
    assert "collect_list" not in plan and "collect_set" not in plan
    edges = star_candidates(bucket_members(sigs)).collect()
    assert len(edges) == 2 * 49 and {r["root"] for r in edges} == {0}


def test_verification_budget_checks_a_subset_and_counts_every_pair(spark, checkpoint):
    """Over `verify_max_pairs`, a hash-chosen subset is checked and the rest kept
    unverified; under it every distinct pair is checked; both count all candidates."""
    import numpy as np

    from curation.dedup.verify import verified_edges

    n = 40  # keys 0..39 share two buckets: 39 distinct star pairs (78 star rows)
    sigs = spark.createDataFrame([(k, [7, 8]) for k in range(n)], "key long, bands array<long>")
    same = np.arange(100, dtype="<u4").tobytes()  # every set equal: Jaccard 1
    shingles = spark.createDataFrame([(k, same) for k in range(n)], "key long, shingles binary")
    for budget, checked in ((1_000, n - 1), (10, None)):
        stats: dict = {}
        edges = verified_edges(bucket_members(sigs), shingles, 0.7, 3, budget,
                               checkpoint, stats)
        assert edges.count() == n - 1 and stats["candidate_pairs"] == n - 1, stats
        if checked is not None:
            assert stats["verified_pairs"] == checked and stats["unverified_pairs"] == 0
        else:
            assert 0 < stats["unverified_pairs"] < n - 1
            assert stats["verified_pairs"] + stats["unverified_pairs"] == n - 1


def test_later_rounds_in_one_task_match_the_spark_rounds(spark, checkpoint, caplog):
    """Members failing a round are starred again; once few rows are left (from the start,
    or after a Spark round), the remaining rounds run in one Python task: the same edges
    and counts as running every round in Spark."""
    import logging

    import numpy as np

    from curation.dedup.verify import verified_edges

    rng = np.random.default_rng(3)
    families = [np.unique(rng.integers(0, 5_000, 400)).astype("<u4") for _ in range(4)]
    sets, bands = [], []
    for k in range(60):  # a few buckets each mixing families: roots often fail, later rounds pass
        fam = families[k % 4] if k % 7 else families[(k + 1) % 4]
        keep = fam[rng.random(fam.size) < 0.97]
        sets.append((k, np.sort(keep).tobytes()))
        bands.append((k, [k % 3, 10 + k % 2, 20 + (k * 7) % 5]))
    sigs = spark.createDataFrame(bands, "key long, bands array<long>")
    shingles = spark.createDataFrame(sets, "key long, shingles binary")
    members = bucket_members(sigs).persist()
    n = members.count()  # 180: every key in three buckets
    results = []
    # every round in Spark; round 0 in Spark, the rest in one task; every round in one task
    for in_task, spark_rounds, task_rounds in ((0, True, False), (n - 1, True, True),
                                               (n, False, True)):
        stats: dict = {}
        with caplog.at_level(logging.INFO, logger="curation.dedup.verify"):
            caplog.clear()
            edges = verified_edges(members, shingles, 0.7, 4, 10**9, checkpoint,
                                   stats, in_task_rows=in_task)
            rows = sorted((r["src"], r["dst"]) for r in edges.collect())
        results.append((rows, stats))
        assert ("checked" in caplog.text) == spark_rounds, caplog.text
        assert ("in one task" in caplog.text) == task_rounds, caplog.text
    (spark_rows, spark_stats), *in_task = results
    assert spark_stats["verify_rounds_run"] >= 3 and spark_stats["rejected_pairs"] > 0
    assert len(spark_rows) > 0
    for task_rows, task_stats in in_task:
        assert task_rows == spark_rows
        assert task_stats == spark_stats


def test_no_shared_bucket_checks_nothing(spark, checkpoint):
    """Every document alone in its buckets: no edge, no round run, in either path."""
    from curation.dedup.verify import verified_edges

    sigs = spark.createDataFrame([(k, [k, 100 + k]) for k in range(20)], "key long, bands array<long>")
    shingles = spark.createDataFrame([(k, b"\0\0\0\0") for k in range(20)], "key long, shingles binary")
    for in_task in (0, 10_000):
        stats: dict = {}
        edges = verified_edges(bucket_members(sigs), shingles, 0.7, 3, 10**9, checkpoint, stats,
                               in_task_rows=in_task)
        assert edges.count() == 0
        assert stats["verify_rounds_run"] == 0 and stats["candidate_pairs"] == 0, stats
