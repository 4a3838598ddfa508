"""Deterministic Parquet output: same rows -> same files, same names, same bytes.

Spark names its part files with a per-job UUID and orders rows by whatever the plan
did; we sort by a key, write a fixed number of files per partition and rename them to
`part-00000.parquet`, … Unpartitioned outputs are written by pyarrow inside the tasks
(`write_with_arrow`): one file per partition, row groups cut by row count. Partitioned
outputs (and any on a filesystem pyarrow cannot open) are written by Spark, then each
file is re-encoded by pyarrow, in parallel on the executors (files up to 8 MB on the
driver, cheaper than a task): parquet-mr lists column encodings in a footer in an order
that differs from one JVM to the next, so Spark's own bytes are not reproducible across
runs. Either way the executors write where the driver reads: a shared filesystem.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from pyspark.sql import DataFrame

from curation.io.arrow_parquet import arrow_filesystem, write_with_arrow
from curation.io.hadoop_fs import HadoopFS

_PART = re.compile(r"part-(\d+)-")
DRIVER_REENCODE_BYTES = 8 << 20


def write_parquet(df: DataFrame, path: str, sort_by: list[str], *, partition_by: str | None = None,
                  files: int = 1, commit: Callable[[str, str], None] | None = None) -> None:
    """Write `df` to `path` deterministically; `commit(tmp, path)` puts the finished
    directory in place (default: delete, then rename)."""
    spark = df.sparkSession
    fs = HadoopFS(spark)
    tmp = path.rstrip("/") + "._writing"
    fs.delete(tmp)
    direct = False
    if partition_by:
        # `files` range partitions per value of partition_by, each sorted
        # range partitioning is never optimised away and never splits one value, so with
        # files=1 each value of partition_by is written by exactly one task (one file)
        out = df.repartitionByRange(files * 64, partition_by, *sort_by) if files > 1 else (
            df.repartitionByRange(partition_by))
        out = out.sortWithinPartitions(partition_by, *sort_by)
        out.write.mode("overwrite").partitionBy(partition_by).parquet(tmp)
    else:
        # several files: rows spread by a hash of the sort key, which (unlike the sampled
        # bounds of range partitioning) does not depend on how the input was partitioned
        out = df.repartition(files, *sort_by) if files > 1 else df.repartition(1)
        out = out.sortWithinPartitions(*sort_by)
        uri = fs.qualify(tmp)
        direct = arrow_filesystem(uri) is not None
        if direct:
            write_with_arrow(out, uri)
        else:
            out.write.mode("overwrite").parquet(tmp)
    # rename part files deterministically within each directory
    by_dir: dict[str, list[str]] = {}
    for f in fs.list_files(tmp):
        name = f.rsplit("/", 1)[-1]
        if name.startswith("part-") and name.endswith(".parquet"):
            by_dir.setdefault(f.rsplit("/", 1)[0], []).append(f)
        elif name.startswith(".") or name.endswith(".crc"):
            fs.delete(f)
    for d, names in by_dir.items():
        names.sort(key=lambda f: int(_PART.search(f.rsplit("/", 1)[-1]).group(1)))
        for i, f in enumerate(names):
            fs.rename(f, f"{d}/part-{i:05d}.parquet")
    if commit is None:
        fs.delete(path)
        fs.rename(tmp, path)
    else:
        commit(tmp, path)
    if direct:  # written by pyarrow: nothing to re-encode
        return
    files = [f for f in fs.list_files(path) if f.endswith(".parquet")]
    # small files (a partition of few rows, a Spark-written quarantine) are re-encoded here: a Spark
    # task for one would cost more than the file (a Python worker to start, ~1 s)
    large = []
    for f in files:
        if fs.size(f) <= DRIVER_REENCODE_BYTES:
            _reencode(f)
        else:
            large.append(f)
    if large:
        spark.sparkContext.parallelize(large, len(large)).foreach(_reencode)


def _reencode(uri: str) -> None:
    """Rewrite one Parquet file with pyarrow (deterministic footer), atomically."""
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    opened = arrow_filesystem(uri)
    if opened is None:  # a scheme pyarrow cannot open (e.g. no libhdfs): keep Spark's file
        return
    filesystem, path = opened
    table = pq.read_table(path, filesystem=filesystem)
    tmp = path + ".reencode"
    pq.write_table(table, tmp, filesystem=filesystem, compression="snappy")
    filesystem.move(tmp, path)
    # Hadoop's local filesystem keeps a checksum beside each file: now stale, drop it
    folder, _, name = path.rpartition("/")
    crc = f"{folder}/.{name}.crc"
    if filesystem.get_file_info(crc).type != pafs.FileType.NotFound:
        filesystem.delete_file(crc)
