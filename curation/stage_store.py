"""Stage checkpoints: each pipeline stage writes its output once, then later runs reuse it.

A stage is written to `_stages/<name>._writing/`, checked, given its marker
(`_SHARPEN_STAGE.json`, inside the directory) and then renamed to `_stages/<name>/` in
one step: output and marker become visible together, so a stage is either whole or
absent. It is reused when its marker's fingerprint matches the job's config, inputs and
code. A job killed mid-way therefore resumes at the last committed stage, and a changed
config, input or code reruns from the first stage it affects.

Commits happen only while the job holds the output lock (`OutputLock.assert_held`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import ArrayType, DataType, MapType, StructField, StructType

from curation.io.hadoop_fs import HadoopFS
from curation.io.output_lock import OutputLock
from curation.stage_profile import StageProfiler

log = logging.getLogger(__name__)

MARKER = "_SHARPEN_STAGE.json"
# Row groups of stage outputs: the unit a later read can split on. Parquet's 128 MB
# default let a 31 MB stage file come back as one task of ten (10k documents: annotation
# ran on one of two cores); 8 MB keeps compression and metadata costs small.
ROW_GROUP_BYTES = str(8 << 20)


def as_read_back(schema: DataType) -> DataType:
    """The schema Spark infers when it reads back Parquet it wrote from `schema`: every
    field nullable (file sources promise nothing about nulls), names, types and field
    metadata as written."""
    if isinstance(schema, StructType):
        return StructType([StructField(f.name, as_read_back(f.dataType), True, f.metadata)
                           for f in schema.fields])
    if isinstance(schema, ArrayType):
        return ArrayType(as_read_back(schema.elementType), True)
    if isinstance(schema, MapType):
        return MapType(as_read_back(schema.keyType), as_read_back(schema.valueType), True)
    return schema


class StageStore:
    def __init__(self, spark: SparkSession, root: str, fingerprint: str,
                 lock: OutputLock | None = None):
        self.spark = spark
        self.root = root.rstrip("/")
        self.fingerprint = fingerprint
        self.lock = lock
        self.fs = HadoopFS(spark)
        self.timings: dict[str, float] = {}
        self.profiles: dict[str, dict] = {}  # Spark task metrics per stage (stage_profile)
        self.resumed: list[str] = []
        self.profiler = StageProfiler(spark)

    def _marker(self, name: str) -> str:
        return f"{self.root}/{name}/{MARKER}"

    def _read_marker(self, name: str) -> dict | None:
        marker = self._marker(name)
        if not self.fs.exists(marker):
            return None
        try:
            meta = json.loads(self.fs.read_text(marker))
        except (ValueError, OSError):
            return None
        return meta if meta.get("fingerprint") == self.fingerprint else None

    def is_done(self, name: str) -> bool:
        return self._read_marker(name) is not None

    def stage(self, name: str, build: Callable[..., DataFrame | int], info: dict | None = None,
              check: Callable[[DataFrame, dict], None] | None = None,
              min_read_tasks: int | None = None, writes_itself: bool = False) -> DataFrame:
        """Return stage `name`'s output, computing it with `build()` unless already done.
        `writes_itself`: `build(directory)` writes the stage's Parquet files there itself
        (e.g. from the tasks, `arrow_parquet.writing`) and returns the rows it wrote,
        instead of returning a DataFrame; the profile counts those rows and files.

        `info` is a dict the build (and `check`) may fill with statistics; it is saved in
        the marker and restored when the stage is reused, so stats survive a resume.
        `check(written, info)` runs on the written output before the commit and raises
        when it is not what the stage should have produced. `min_read_tasks` splits the
        stage's file reads into at least that many tasks (`spark.sql.files.minPartitionNum`
        while it runs): for stages that do per-byte work in Python, where a few large read
        tasks would leave cores idle.
        """
        path = f"{self.root}/{name}"
        meta = self._read_marker(name)
        if meta is not None:
            log.info("stage %s: done in an earlier run, reusing %s", name, path)
            self.resumed.append(name)
            if info is not None:
                info.update(meta.get("info", {}))
            if meta.get("profile"):  # what the stage cost when it ran
                self.profiles[name] = {**meta["profile"], "resumed": True}
            schema = meta.get("schema")
            return self._read(path, schema and StructType.fromJson(schema))
        started = time.perf_counter()
        log.info("stage %s: running", name)
        info = {} if info is None else info
        tmp = f"{path}._writing"
        self.fs.delete(tmp)
        schema = None  # of the rows written, when known without reading them back
        with self.profiler.measure(name) as profile, self._read_tasks(min_read_tasks):
            if writes_itself:
                rows_written = build(tmp)
            else:
                df = build()
                schema = as_read_back(df.schema)
                df.write.mode("overwrite").option("parquet.block.size", ROW_GROUP_BYTES).parquet(tmp)
            if check is not None:
                written = self._read(tmp, schema)
                schema = written.schema
                check(written, info)
        if writes_itself:  # files Spark did not write: not in its task metrics
            profile["records_written"] = profile.get("records_written", 0) + rows_written
            profile["bytes_written"] = profile.get("bytes_written", 0) + self.fs.tree_bytes(tmp)
        self.timings[name] = round(time.perf_counter() - started, 2)
        self.profiles[name] = profile
        if schema is None:  # files the tasks wrote: Spark infers their schema, once
            schema = self.spark.read.parquet(tmp).schema
        self.fs.write_text(f"{tmp}/{MARKER}", json.dumps(
            {"fingerprint": self.fingerprint, "seconds": self.timings[name], "info": info,
             "profile": profile, "schema": schema.jsonValue()}, sort_keys=True))
        self.commit(tmp, path)
        log.info("stage %s: finished in %.1fs", name, self.timings[name])
        return self._read(path, schema)

    def _read(self, path: str, schema: StructType | None) -> DataFrame:
        """Read a stage back. With its schema known, Spark skips inferring it (a job that
        opens a file footer: ~0.15 s of driver time per read, on the critical path)."""
        if schema is None:
            return self.spark.read.parquet(path)
        return self.spark.read.schema(schema).parquet(path)

    @contextmanager
    def _read_tasks(self, n: int | None) -> Iterator[None]:
        key = "spark.sql.files.minPartitionNum"
        if n is None:
            yield
            return
        before = self.spark.conf.get(key, None)
        self.spark.conf.set(key, str(n))
        try:
            yield
        finally:
            if before is None:
                self.spark.conf.unset(key)
            else:
                self.spark.conf.set(key, before)

    def commit(self, tmp: str, path: str) -> None:
        """Replace `path` by the finished `tmp` (a rename), while holding the output lock."""
        if self.lock is not None:
            self.lock.assert_held()
        self.fs.delete(path)
        self.fs.rename(tmp, path)

    def scratch(self, prefix: str):
        """A checkpoint function for iterative algorithms (materialise, read back)."""
        def checkpoint(name: str, df: DataFrame) -> DataFrame:
            path = f"{self.root}/{prefix}/{name}"
            schema = as_read_back(df.schema)
            df.write.mode("overwrite").parquet(path)
            return self._read(path, schema)

        return checkpoint
