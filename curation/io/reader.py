"""Read raw JSONL(.gz) and Parquet inputs into validated rows.

JSONL is read in Python on the executors (`jsonl_splits`): raw bytes, so invalid UTF-8 is
quarantined rather than silently replaced, bounded memory per record, and corrupt files
contained. Parquet goes through Spark's reader, one JSON object per row, so both share one
validator. Each row carries its input position (file, split start, position in the
split), which orders records the same way whatever the partitioning: it decides which
copy of a repeated id is kept.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, StructType

from curation.config import CurationConfig
from curation.io.arrow_parquet import SUMMARY_DDL, writing
from curation.io.jsonl_splits import (
    RAW_DDL,
    READ_DDL,
    READ_SCHEMA,
    SPLIT_DDL,
    Split,
    is_gzip,
    parse_records,
    read_split_records,
    read_splits,
)
from curation.io.paths import is_under
from curation.io.record_parser import parse_batches
from curation.stage_profile import python_timed

log = logging.getLogger(__name__)

PARSE_TASKS_PER_CORE = 4


def split_bytes_gz(cfg: CurationConfig) -> int:
    """A gzip file over this many compressed bytes (a quarter of a byte-range split, i.e.
    about one split of text) is read by one task but parsed by many."""
    return (cfg.input_split_mb << 20) // 4


JSONL_SUFFIXES = (".jsonl", ".json", ".jsonl.gz", ".json.gz", ".ndjson", ".ndjson.gz")
PARQUET_SUFFIXES = (".parquet",)


@dataclass(frozen=True)
class InputFiles:
    """The job's input files as listed once per run: (path, size, mtime) each."""

    jsonl: list[tuple[str, int, int]]
    parquet: list[tuple[str, int, int]]

    @property
    def all(self) -> list[tuple[str, int, int]]:
        return self.jsonl + self.parquet


def list_input_files(spark: SparkSession, paths: list[str], exclude: str | None = None) -> InputFiles:
    """Expand files, directories (recursively) and globs into JSONL and Parquet files.

    `exclude` is the job's output directory: a file under it is never an input (an output
    inside an input directory is refused before this, see `output_checks`)."""
    jvm = spark.sparkContext._jvm
    hconf = spark.sparkContext._jsc.hadoopConfiguration()
    jsonl, parquet = {}, {}
    for p in paths:
        hpath = jvm.org.apache.hadoop.fs.Path(p)
        fs = hpath.getFileSystem(hconf)
        statuses = fs.globStatus(hpath)
        if not statuses:
            raise FileNotFoundError(f"input not found: {p}")
        for st in statuses:
            if st.isDirectory():
                it = fs.listFiles(st.getPath(), True)
                found = []
                while it.hasNext():
                    found.append(it.next())
            else:
                found = [st]
            for f in found:
                path = f.getPath().toString()
                name = path.rsplit("/", 1)[-1]
                if name.startswith((".", "_")) or (exclude and is_under(path, exclude)):
                    continue
                entry = (path, int(f.getLen()), int(f.getModificationTime()))
                if name.endswith(JSONL_SUFFIXES):
                    jsonl[path] = entry
                elif name.endswith(PARQUET_SUFFIXES):
                    parquet[path] = entry
                else:
                    log.warning("skipping %s: not .jsonl[.gz]/.json[.gz]/.parquet", path)
    if not jsonl and not parquet:
        raise FileNotFoundError(f"no JSONL or Parquet files under {paths}")
    return InputFiles(sorted(jsonl.values()), sorted(parquet.values()))


def _parquet_docs(spark: SparkSession, parquet: list[str]) -> DataFrame:
    df = spark.read.parquet(*parquet)
    if "text" not in df.columns:
        raise ValueError(f"Parquet input has no `text` column (columns: {df.columns})")
    # one JSON object per row, so Parquet and JSONL share one validation path
    return df.select(
        F.to_json(F.struct(*[F.col(c) for c in df.columns])).cast("binary").alias("raw"),
        F.col("_metadata.file_path").alias("file"),
        F.col("_metadata.file_block_start").alias("block"),
    )


def parquet_row_counts(spark: SparkSession, parquet: list[str]) -> dict[str, int]:
    """Rows per Parquet input file, read from the files themselves (not from the job)."""
    if not parquet:
        return {}
    df = spark.read.parquet(*parquet).select(F.col("_metadata.file_path").alias("f"))
    return {r["f"]: int(r["count"]) for r in df.groupBy("f").count().collect()}


def parse_tasks(splits: list[Split], split_bytes: int, min_tasks: int) -> int:
    """How many parsing tasks: one per `split_bytes` of input, at least `min_tasks` (cores
    idle on a small input), at most one per split."""
    total = sum(s.end - s.start for s in splits)
    return max(1, min(len(splits), max(min_tasks, -(-total // split_bytes))))


def split_groups(splits: list[Split], tasks: int) -> list[list[tuple]]:
    """Consecutive splits in at most `tasks` groups of about equal bytes (a split goes to
    the group its first byte falls in): small files share a task. A task costs ~0.1 s of
    Python and Spark set-up: 64 tasks of 16 MB files parsed 1 GB in 14.7 s on two cores,
    16 tasks in 11.9 s."""
    total = max(1, sum(s.end - s.start for s in splits))
    groups: dict[int, list[tuple]] = {}
    seen = 0
    for s in splits:
        groups.setdefault(seen * tasks // total, []).append((s.file, s.start, s.end))
        seen += s.end - s.start
    return list(groups.values())


def spread_groups(spark: SparkSession, groups: list[list[tuple]], ddl: str) -> DataFrame:
    """A small driver-side table as one partition per group of rows: placed where it is
    created, not shuffled (a `repartition` cost a Spark job, ~0.9 s as the job's first).

    Built in the JVM: one `range` row per group, whose group of rows is picked from a JSON
    literal (split into groups once, when the plan is optimised) and exploded. A Python RDD
    (`parallelize`) here started a second Python worker daemon, for RDD tasks, beside the
    one of our Arrow UDFs: ~1 s of one core on the critical path of every job's first
    tasks, and again when the first RDD task ran."""
    schema = StructType.fromDDL(ddl)
    names = schema.fieldNames()
    blob = "\n".join(json.dumps([dict(zip(names, row, strict=True)) for row in group])
                     for group in groups)  # ensure_ascii: no raw newline inside a group
    group = F.element_at(F.split(F.lit(blob), "\n"), (F.col("id") + 1).cast("int"))
    rows = F.explode(F.from_json(group, ArrayType(schema)))
    return spark.range(0, len(groups), 1, max(1, len(groups))).select(rows.alias("r")).select("r.*")


def spread_rows(spark: SparkSession, rows: list[tuple], ddl: str, n: int) -> DataFrame:
    """`rows` as `n` partitions of consecutive rows (`spread_groups` by row count)."""
    return spread_groups(spark, [rows[i * len(rows) // n:(i + 1) * len(rows) // n]
                                 for i in range(n)], ddl)


def read_documents(spark: SparkSession, splits: list[Split], parquet: list[str],
                   cfg: CurationConfig, write_to: str | None = None) -> DataFrame | int:
    """Every record of these inputs, parsed (valid rows have `q_reason` null), plus one
    `kind = "split"` summary row per JSONL split (see `jsonl_splits`). Repeated ids are
    resolved later (the pipeline's `validated` stage), by input order.

    `write_to` (a URI pyarrow can open): the parsing tasks write their rows there as
    Parquet themselves (`arrow_parquet.writing`) and the number of rows written is
    returned; the JVM then only schedules the tasks."""
    log.info("reading %d JSONL splits and %d Parquet files", len(splits), len(parquet))
    passes = []  # (input rows, mapInArrow body, name of the pass)
    if splits:
        groups = split_groups(splits, parse_tasks(splits, cfg.input_split_mb << 20,
                                                  spark.sparkContext.defaultParallelism * 2))
        table = spread_groups(spark, groups, SPLIT_DDL)
        serial = [s for s in splits if is_gzip(s.file) and s.end - s.start > split_bytes_gz(cfg)]
        if not serial:  # byte-range splits (or small gzip files): read and parse in one task
            passes.append((table, lambda it: read_splits(it, cfg), "jsonl"))
        else:  # a large gzip file is one reading task: spread its lines before parsing
            lines = table.mapInArrow(python_timed(lambda it: read_split_records(it, cfg)),
                                     RAW_DDL)
            width = max(len(groups), spark.sparkContext.defaultParallelism * PARSE_TASKS_PER_CORE)
            log.info("%d gzip file(s) over %d MB compressed: repartitioning their lines into "
                     "%d parsing tasks", len(serial), split_bytes_gz(cfg) >> 20, width)
            spread = lines.repartition(width, "file", "block", "pos")
            passes.append((spread, lambda it: parse_records(it, cfg), "jsonl"))
    if parquet:
        passes.append((_parquet_docs(spark, parquet), lambda it: _parquet_rows(it, cfg), "parquet"))
    if write_to is not None:
        return sum(r["rows"] for rows, body, name in passes for r in rows.mapInArrow(
            writing(python_timed(body), write_to, name), SUMMARY_DDL).collect())
    out = None
    for rows, body, _ in passes:
        frame = rows.mapInArrow(python_timed(body), READ_DDL)
        out = frame if out is None else out.unionByName(frame)
    return out


def _parquet_rows(batches, cfg: CurationConfig):
    """mapInArrow body for Parquet input: `parse_batches`, with `kind = "doc"`."""
    for batch in parse_batches(batches, cfg):
        kind = pa.array(["doc"] * batch.num_rows, pa.string())
        yield pa.RecordBatch.from_arrays([*batch.columns, kind], schema=READ_SCHEMA)
