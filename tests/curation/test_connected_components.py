"""Components agree with union-find, including on long chains: the distributed
large-star/small-star rounds (`local_max_edges=0`) and the one-task path for small graphs."""

from __future__ import annotations

import random

import pytest

from curation.dedup.connected_components import connected_components


def _checkpointer(spark, tmp_path):
    def checkpoint(name, df):
        path = str(tmp_path / name)
        df.write.mode("overwrite").parquet(path)
        return spark.read.parquet(path)
    return checkpoint


def _union_find(edges):
    parent = {}

    def find(x):
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in edges:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return {x: find(x) for x in parent}


def _run(spark, tmp_path, edges, stats=None, local_max_edges=0):
    df = spark.createDataFrame(edges, "src long, dst long")
    out = connected_components(df, _checkpointer(spark, tmp_path), 60, stats, local_max_edges)
    return {r["key"]: r["root"] for r in out.collect()}


@pytest.mark.parametrize("local_max_edges", [0, 10_000])
def test_random_graph_matches_union_find(spark, tmp_path, local_max_edges):
    rng = random.Random(3)
    edges = [(rng.randrange(300), rng.randrange(300)) for _ in range(260)]
    edges = [(a, b) for a, b in edges if a != b] + [(7, 7)]  # a self-loop adds no node
    expected = _union_find(edges[:-1])
    stats = {}
    got = _run(spark, tmp_path, edges, stats, local_max_edges)
    assert got == expected  # root is each component's smallest key
    assert (stats["cc_iterations"] == 0) == (local_max_edges > 0)


@pytest.mark.slow
def test_long_shuffled_chain_converges(spark, tmp_path):
    n = 2000
    order = list(range(n))
    random.Random(5).shuffle(order)  # a path whose labels are scrambled: the hard case
    edges = [(order[i], order[i + 1]) for i in range(n - 1)]
    stats = {}
    got = _run(spark, tmp_path, edges, stats)
    assert set(got.values()) == {0} and len(got) == n
    assert stats["cc_iterations"] <= 25
    assert _run(spark, tmp_path, edges, local_max_edges=n) == got


def test_not_converging_is_an_error(spark, tmp_path):
    edges = [(i, i + 1) for i in range(64)]
    df = spark.createDataFrame(edges, "src long, dst long")
    with pytest.raises(RuntimeError, match="did not converge"):
        connected_components(df, _checkpointer(spark, tmp_path), max_iterations=1,
                             local_max_edges=0)
