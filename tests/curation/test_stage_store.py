"""Stage read-back: a stage is read with the schema it was written with, so Spark does not
run a job to infer it, and the rows come back exactly as an inferred read gives them."""

from __future__ import annotations

import json

from pyspark.sql import functions as F

from curation.stage_store import MARKER, StageStore, as_read_back


def _frame(spark):
    df = spark.range(5).select(
        F.col("id"),  # not nullable
        F.struct(F.col("id").alias("a"), F.lit("x").alias("b")).alias("s"),
        F.array(F.col("id")).alias("xs"),
        F.create_map(F.lit("k"), F.col("id")).alias("m"),
        F.col("id").alias("tagged", metadata={"why": "kept as written"}),
    )
    assert not df.schema["id"].nullable
    return df


def test_read_back_schema_is_the_one_spark_infers(spark, tmp_path):
    df = _frame(spark)
    df.write.parquet(str(tmp_path / "t"))
    inferred = spark.read.parquet(str(tmp_path / "t")).schema
    assert as_read_back(df.schema) == inferred
    assert inferred["tagged"].metadata == {"why": "kept as written"}
    assert as_read_back(df.schema) != df.schema  # the test would hold for a no-op otherwise


def test_stage_is_read_back_with_its_written_schema_without_an_inference_job(spark, tmp_path):
    out = StageStore(spark, str(tmp_path / "_stages"), "fp", lock=None).stage(
        "t", lambda: _frame(spark))
    sc = spark.sparkContext
    sc.setJobGroup("stage-read-back", "stage read-back")  # the resumed read runs no measure()
    try:
        again = StageStore(spark, str(tmp_path / "_stages"), "fp", lock=None).stage("t", lambda: None)
        resumed_jobs = len(sc.statusTracker().getJobIdsForGroup("stage-read-back"))
    finally:
        sc._jsc.clearJobGroup()
    marker = json.loads((tmp_path / "_stages" / "t" / MARKER).read_text())
    assert marker["schema"] == spark.read.parquet(str(tmp_path / "_stages" / "t")).schema.jsonValue()
    assert out.schema == again.schema == spark.read.parquet(str(tmp_path / "_stages" / "t")).schema
    assert sorted(map(tuple, out.collect())) == sorted(map(tuple, again.collect()))
    assert resumed_jobs == 0  # the reused stage is read without a schema-inference job
