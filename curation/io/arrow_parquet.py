"""Parquet files written by pyarrow inside Spark tasks, one file per task.

Where a stage's rows are produced in Python anyway (a `mapInArrow` body), or reach Python
as Arrow batches, writing them with pyarrow there skips the JVM's side entirely: no
Arrow-to-row conversion, no parquet-mr encoding (half the CPU of the `validated` stage
at 1 GB), and pyarrow's bytes are reproducible, so outputs need no second pass. Files
are named by the task's partition, written under a dot-name and moved into place when
whole, so a retried task replaces its file and a failed one leaves nothing a reader
lists. The executors write where the driver reads: a filesystem they share, as for
Spark's own writers; where pyarrow cannot open the URI, callers let Spark write.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import pyarrow as pa
from pyspark.sql import DataFrame

ARROW_ROW_GROUP_ROWS = 8192
SUMMARY_DDL = "part long, rows long"


def arrow_filesystem(uri: str):
    """(pyarrow filesystem, path) for `uri`, or None where pyarrow cannot open it (e.g. a
    scheme without its library): such outputs are written by Spark."""
    import pyarrow.fs as pafs

    try:
        return pafs.FileSystem.from_uri(uri)
    except Exception:  # noqa: BLE001 - any failure means: let Spark write it
        return None


def write_file(batches: Iterable[pa.RecordBatch], uri: str, name: str,
               row_group_rows: int | None = None) -> int:
    """Write `batches` to `<uri>/<name>` (nothing when they hold no rows); returns the rows.
    Row groups: each batch as it comes (`row_group_rows` None), or exactly
    `row_group_rows` rows each (the last fewer), whatever the batch sizes."""
    import pyarrow.parquet as pq

    filesystem, base = arrow_filesystem(uri)
    path, partial = f"{base}/{name}", f"{base}/.{name}.writing"
    writer, pending, held, rows = None, [], 0, 0
    for batch in batches:
        if batch.num_rows == 0:
            continue
        if writer is None:
            filesystem.create_dir(base, recursive=True)
            writer = pq.ParquetWriter(partial, batch.schema, filesystem=filesystem,
                                      compression="snappy")
        rows += batch.num_rows
        if row_group_rows is None:
            writer.write_batch(batch)
            continue
        pending.append(batch)
        held += batch.num_rows
        if held >= row_group_rows:
            table = pa.Table.from_batches(pending)
            full = held - held % row_group_rows
            writer.write_table(table.slice(0, full), row_group_size=row_group_rows)
            rest = table.slice(full)
            pending, held = rest.to_batches(), rest.num_rows
    if writer is not None:
        if held:
            writer.write_table(pa.Table.from_batches(pending), row_group_size=row_group_rows)
        writer.close()
        filesystem.move(partial, path)  # a retried task replaces it whole
    return rows


def writing(body: Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]], uri: str,
            tag: str, row_group_rows: int | None = None):
    """A mapInArrow body that writes what `body` yields to `part-<partition>-<tag>.parquet`
    under `uri` and yields one (part, rows) summary row: use with `SUMMARY_DDL`."""
    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from pyspark import TaskContext

        part = TaskContext.get().partitionId()
        rows = write_file(body(batches), uri, f"part-{part:05d}-{tag}.parquet", row_group_rows)
        yield pa.RecordBatch.from_pydict({"part": [part], "rows": [rows]})

    return run


def read_files(paths: Iterable[pa.RecordBatch], columns: list[str],
               batch_rows: int = 1000) -> Iterator[pa.RecordBatch]:
    """mapInArrow helper: the rows of the Parquet files named in the `path` column of
    `paths`, read by pyarrow in this task (the texts never pass through the JVM), in
    batches of up to `batch_rows` rows."""
    import pyarrow.parquet as pq

    for batch in paths:
        for uri in batch.column("path").to_pylist():
            filesystem, path = arrow_filesystem(uri)
            with filesystem.open_input_file(path) as f:
                yield from pq.ParquetFile(f).iter_batches(batch_size=batch_rows, columns=columns)


def write_with_arrow(df: DataFrame, uri: str) -> None:
    """Write each partition of `df` (already partitioned and sorted) as one Parquet file
    `part-<partition>-arrow.parquet` under `uri`, row groups of exactly
    `ARROW_ROW_GROUP_ROWS` rows, so the bytes depend on the rows only. A job that yields no
    rows writes one empty file with the schema, as Spark does."""
    from pyspark.sql.pandas.types import to_arrow_schema

    summary = df.mapInArrow(writing(lambda it: it, uri, "arrow", ARROW_ROW_GROUP_ROWS),
                            SUMMARY_DDL).collect()
    if not any(r["rows"] for r in summary):
        import pyarrow.parquet as pq

        filesystem, base = arrow_filesystem(uri)
        filesystem.create_dir(base, recursive=True)
        pq.write_table(to_arrow_schema(df.schema).empty_table(), f"{base}/part-00000-arrow.parquet",
                       filesystem=filesystem, compression="snappy")
