"""Read raw JSONL(.gz) and Parquet inputs from any Hadoop-FS path into validated rows.

Lines are read as raw bytes (`text` source cast to binary) so that invalid UTF-8 is
caught and quarantined instead of being silently replaced. Each row carries its input
position (file, block start, position in the partition), which orders records the same
way whatever the partitioning (see `parse_batches`): it decides which copy of a
repeated id is kept.
"""

from __future__ import annotations

import logging

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from curation.config import CurationConfig
from curation.io.record_parser import PARSED_DDL, parse_batches

log = logging.getLogger(__name__)

JSONL_SUFFIXES = (".jsonl", ".json", ".jsonl.gz", ".json.gz", ".ndjson", ".ndjson.gz")
PARQUET_SUFFIXES = (".parquet",)


def list_input_files(spark: SparkSession, paths: list[str]) -> tuple[list[str], list[str]]:
    """Expand files, directories (recursively) and globs into (jsonl files, parquet files)."""
    jvm = spark.sparkContext._jvm
    hconf = spark.sparkContext._jsc.hadoopConfiguration()
    jsonl, parquet = [], []
    for p in paths:
        hpath = jvm.org.apache.hadoop.fs.Path(p)
        fs = hpath.getFileSystem(hconf)
        statuses = fs.globStatus(hpath)
        if not statuses:
            raise FileNotFoundError(f"input not found: {p}")
        for st in statuses:
            if st.isDirectory():
                it = fs.listFiles(st.getPath(), True)
                files = []
                while it.hasNext():
                    files.append(it.next().getPath().toString())
            else:
                files = [st.getPath().toString()]
            for f in files:
                name = f.rsplit("/", 1)[-1]
                if name.startswith((".", "_")):
                    continue
                if name.endswith(JSONL_SUFFIXES):
                    jsonl.append(f)
                elif name.endswith(PARQUET_SUFFIXES):
                    parquet.append(f)
                else:
                    log.warning("skipping %s: not .jsonl[.gz]/.json[.gz]/.parquet", f)
    if not jsonl and not parquet:
        raise FileNotFoundError(f"no JSONL or Parquet files under {paths}")
    return sorted(set(jsonl)), sorted(set(parquet))


def _raw_lines(spark: SparkSession, jsonl: list[str], parquet: list[str]) -> DataFrame:
    frames = []
    if jsonl:
        df = spark.read.text(jsonl)
        frames.append(df.select(
            F.col("value").cast("binary").alias("raw"),
            F.col("_metadata.file_path").alias("file"),
            F.col("_metadata.file_block_start").alias("block"),
        ))
    if parquet:
        df = spark.read.parquet(*parquet)
        if "text" not in df.columns:
            raise ValueError(f"Parquet input has no `text` column (columns: {df.columns})")
        # one JSON object per row, so Parquet and JSONL share one validation path
        frames.append(df.select(
            F.to_json(F.struct(*[F.col(c) for c in df.columns])).cast("binary").alias("raw"),
            F.col("_metadata.file_path").alias("file"),
            F.col("_metadata.file_block_start").alias("block"),
        ))
    out = frames[0]
    for f in frames[1:]:
        out = out.unionByName(f)
    return out


def read_documents(spark: SparkSession, jsonl: list[str], parquet: list[str],
                   cfg: CurationConfig) -> DataFrame:
    """All non-blank records of these files (from `list_input_files`), parsed: valid rows
    have `q_reason` null. Repeated ids are resolved later (the pipeline's `validated`
    stage), by input order.
    """
    log.info("reading %d JSONL and %d Parquet files", len(jsonl), len(parquet))
    raw = _raw_lines(spark, jsonl, parquet)
    # blank lines are not records (trailing newlines); everything else is accounted for
    raw = raw.where(F.length(F.trim(F.col("raw").cast("string"))) > 0)
    return raw.mapInArrow(lambda it: parse_batches(it, cfg), PARSED_DDL)
