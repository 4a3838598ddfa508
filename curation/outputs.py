"""Write the job's outputs: curated/, removed/, quarantine/ and dedup/ (all Parquet).

Every input record ends up in exactly one of curated (kept), removed (with the rule or
duplicate decision that removed it) or quarantine (with the reason it is invalid).
"""

from __future__ import annotations

from collections.abc import Callable

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from curation.broadcast_small import broadcast_if_small
from curation.io.parquet_output import write_parquet
from curation.side_by_side import side_by_side

# Up to this many removed documents (id and a few short columns each) are broadcast to
# the scan of the texts; above it, a shuffle join.
BROADCAST_REMOVED = 2_000_000
REMOVED_FILE_CHARS = 128 << 20

CURATED_COLUMNS = [
    "id", "source", "domain", "text", "n_chars", "lang", "lang_score", "exact_dup_count",
    "cluster_id", "cluster_size", "n_sources", "quality_fasttext", "quality_kenlm_ppl",
    "quality_heuristic", "heuristic_flags", "quality_score", "quality_bucket", "meta",
]


def quality_cutoffs(keepers: DataFrame, buckets: int) -> list[float]:
    """Global cut-offs of `quality_score`: cut i is the smallest score with at least i/buckets
    of all kept documents at or below it. Exact and independent of partitioning (Spark's
    approximate percentile is neither): scores are rounded to 1e-6, counted per distinct
    value (at most a million rows reach the driver), and the ranks are read off in order."""
    if buckets <= 1:
        return []
    q = F.round(F.col("quality_score"), 6).alias("q")
    counts = [(float(r["q"]), int(r["count"])) for r in
              keepers.where(F.col("quality_score").isNotNull()).groupBy(q).count().collect()]
    return cutoffs_from_counts(counts, buckets)


def cutoffs_from_counts(counts: list[tuple[float, int]], buckets: int) -> list[float]:
    """The rule of `quality_cutoffs` on (score, count) pairs: cut i is the smallest score
    with at least i/buckets of the documents at or below it."""
    total = sum(n for _, n in counts)
    cutoffs, seen, i = [], 0, 1
    for value, n in sorted(counts):
        seen += n
        while i < buckets and seen * buckets >= i * total:
            cutoffs.append(value)
            i += 1
    return cutoffs


def quality_buckets(keepers: DataFrame, cutoffs: list[float]) -> DataFrame:
    """quality_bucket = how many cut-offs lie strictly below the score (0 = worst)."""
    bucket = F.lit(0)
    for cut in cutoffs:
        bucket = bucket + (F.col("quality_score") > F.lit(cut)).cast("int")
    return keepers.withColumn("quality_bucket", bucket)


def write_outputs(job, validated: DataFrame, annotated: DataFrame, assigned: DataFrame,
                  texts: DataFrame, commit: Callable[[str, str], None] | None = None) -> dict:
    """Write every output; returns the quality bucketing (cut-offs) for stats.json.
    `texts`: (id, text), the final text of every annotated document. The outputs do not
    depend on each other: they are written side by side (`side_by_side`)."""
    out, cfg = job.output, job.cfg
    quarantine = validated.where(F.col("q_reason").isNotNull()).select(
        F.col("q_reason").alias("reason"), F.col("q_detail").alias("detail"), "file", "block",
        "pos", "id", F.col("q_raw").alias("raw"))

    def write_quarantine() -> None:
        write_parquet(quarantine, f"{out}/quarantine", ["file", "block", "pos"], commit=commit)

    def write_removed() -> None:
        docs = annotated.select("id", "source", "domain", "n_chars")
        filtered = annotated.where(F.col("removed_by").isNotNull()).select(
            "id", "source", "domain", F.concat(F.lit("filter:"), "removed_by").alias("reason"),
            F.lit(None).cast("string").alias("duplicate_of"),
            F.lit(None).cast("long").alias("cluster_id"), "n_chars")
        dups = assigned.where(~F.col("keep")).join(docs, "id").select(
            "id", "source", "domain", "reason", "duplicate_of", "cluster_id", "n_chars")
        rows = filtered.unionByName(dups)
        n, chars = rows.agg(F.count("*"), F.sum("n_chars")).first()
        # the removed rows are few: broadcast, so the texts are read in place, not shuffled;
        # one file per REMOVED_FILE_CHARS of text (a rule of the data, so every master
        # writes the same files), written by as many tasks
        removed = texts.join(broadcast_if_small(rows, BROADCAST_REMOVED, rows=n), "id")
        write_parquet(removed.select("id", "source", "domain", "reason", "duplicate_of",
                                     "cluster_id", "text"), f"{out}/removed", ["id"],
                      commit=commit, files=max(1, -(-int(chars or 0) // REMOVED_FILE_CHARS)))

    def write_dedup() -> None:
        dedup = assigned
        if job.mode == "dedup":  # every input record appears in dedup/
            dedup = dedup.unionByName(quarantine.select(
                "id", F.lit(None).cast("long").alias("cluster_id"),
                F.lit(None).cast("long").alias("cluster_size"),
                F.lit(None).cast("long").alias("n_sources"),
                F.lit(None).cast("long").alias("exact_dup_count"), F.lit(False).alias("keep"),
                F.concat(F.lit("quarantine:"), "reason").alias("reason"),
                F.lit(None).cast("string").alias("duplicate_of")))
        write_parquet(dedup, f"{out}/dedup", ["id", "reason"], commit=commit)

    def write_curated() -> dict:
        if job.mode != "full":
            return {}
        keepers = assigned.where(F.col("keep")).join(annotated.drop("text"), "id").select(
            "id", "source", "domain", "n_chars", "lang", "lang_score",
            "exact_dup_count", "cluster_id", "cluster_size", "n_sources", "quality_fasttext",
            "quality_kenlm_ppl", "quality_heuristic", "heuristic_flags", "quality_score", "meta")
        cutoffs = quality_cutoffs(keepers, cfg.quality.buckets)
        curated = quality_buckets(keepers, cutoffs).join(texts, "id").select(*CURATED_COLUMNS)
        write_parquet(curated, f"{out}/curated", ["id"], partition_by="domain",
                      files=cfg.output_files_per_domain, commit=commit)
        return {"buckets": cfg.quality.buckets, "cutoffs": cutoffs}

    # the largest first: the scheduler gives the first job's tasks the free cores first
    return side_by_side(write_curated, write_removed, write_quarantine, write_dedup)[0]
