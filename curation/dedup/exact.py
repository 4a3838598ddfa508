"""Exact dedup on the normalised-text hash, keeping the best copy of each group.

The keeper order is the one used everywhere: higher quality score, then source priority,
then smaller id, so which copy survives never depends on partitioning or input order.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F


def keeper_order(quality: str = "quality_score", priority: str = "prio", id_col: str = "id") -> Column:
    """A struct whose minimum is the preferred document."""
    return F.struct(
        (-F.coalesce(F.col(quality), F.lit(-1.0))).alias("neg_quality"),
        F.col(priority).alias("prio"),
        F.col(id_col).alias("id"),
    )


def exact_groups(docs: DataFrame, enabled: bool = True) -> DataFrame:
    """docs(id, norm_hash, quality_score, prio, ...) -> + exact_keeper_id, exact_dup_count."""
    if not enabled:
        return docs.withColumn("exact_keeper_id", F.col("id")).withColumn(
            "exact_dup_count", F.lit(1).cast("long"))
    groups = docs.groupBy("norm_hash").agg(
        F.min(keeper_order()).alias("best"), F.count("*").alias("exact_dup_count"))
    return docs.join(groups.select("norm_hash", F.col("best.id").alias("exact_keeper_id"),
                                   "exact_dup_count"), "norm_hash")
