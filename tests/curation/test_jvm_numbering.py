"""Driver-side tables and id numbering built in the JVM (no Python RDD): `spread_groups`
places one partition per group in order, and `ranked_keys` numbers ids by their rank
whatever the partitioning."""

from __future__ import annotations

import random

from pyspark.sql import functions as F

from curation.dedup.exact import ranked_keys
from curation.io.reader import SPLIT_DDL, spread_groups


def test_spread_groups_keeps_groups_as_partitions_in_order(spark):
    groups = [[("a\nb.jsonl", 0, 1 << 40), ("é 🙂.jsonl", 5, 9)], [], [("x\"y\\z", 1, 2)]]
    df = spread_groups(spark, groups, SPLIT_DDL)
    parts = df.withColumn("p", F.spark_partition_id()).collect()
    assert df.rdd.getNumPartitions() == 3
    assert [tuple(r)[:3] for r in parts] == [row for g in groups for row in g]
    assert [r.p for r in parts] == [0, 0, 2]
    assert spread_groups(spark, [], SPLIT_DDL).count() == 0


def test_ranked_keys_are_ranks_in_byte_order_whatever_the_partitioning(spark):
    rng = random.Random(0)
    ids = sorted({"".join(rng.choice("aZé0-🙂") for _ in range(rng.randint(1, 6)))
                  for _ in range(3000)})
    rank = {i: n for n, i in enumerate(sorted(ids, key=lambda s: s.encode()))}
    shuffled = ids[:]
    rng.shuffle(shuffled)
    df = spark.createDataFrame([(i,) for i in shuffled], "id string").repartition(5)
    for partitions in (1, 3, 8):
        keys = dict(ranked_keys(df, partitions, lambda d: d.cache()).collect())
        assert keys == rank
    empty = spark.createDataFrame([], "id string")
    assert ranked_keys(empty, 4, lambda d: d.cache()).count() == 0
