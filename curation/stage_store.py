"""Stage checkpoints: each pipeline stage writes its output once, then later runs reuse it.

A stage is done when its Parquet output and its `.done.json` marker (written last,
atomically) exist and the marker's fingerprint matches the job's config, inputs and
code version. A job killed mid-way therefore resumes at the last finished stage, and a
changed config or input reruns from the first stage it affects.
"""

from __future__ import annotations

import json
import logging
import time

from pyspark.sql import DataFrame, SparkSession

from curation.io.hadoop_fs import HadoopFS

log = logging.getLogger(__name__)


class StageStore:
    def __init__(self, spark: SparkSession, root: str, fingerprint: str):
        self.spark = spark
        self.root = root.rstrip("/")
        self.fingerprint = fingerprint
        self.fs = HadoopFS(spark)
        self.timings: dict[str, float] = {}
        self.resumed: list[str] = []

    def _marker(self, name: str) -> str:
        return f"{self.root}/{name}.done.json"

    def is_done(self, name: str) -> bool:
        marker = self._marker(name)
        if not self.fs.exists(marker):
            return False
        try:
            meta = json.loads(self.fs.read_text(marker))
        except (ValueError, OSError):
            return False
        return meta.get("fingerprint") == self.fingerprint

    def stage(self, name: str, build, info: dict | None = None) -> DataFrame:
        """Return stage `name`'s output, computing it with `build()` unless already done.

        `info` is a dict the build may fill with statistics; it is saved in the marker
        and restored when the stage is reused, so stats survive a resume.
        """
        path = f"{self.root}/{name}"
        if self.is_done(name):
            log.info("stage %s: done in an earlier run, reusing %s", name, path)
            self.resumed.append(name)
            if info is not None:
                info.update(json.loads(self.fs.read_text(self._marker(name))).get("info", {}))
            return self.spark.read.parquet(path)
        started = time.perf_counter()
        log.info("stage %s: running", name)
        self.fs.delete(self._marker(name))
        build().write.mode("overwrite").parquet(path)
        self.timings[name] = round(time.perf_counter() - started, 2)
        self.fs.write_text(self._marker(name), json.dumps(
            {"fingerprint": self.fingerprint, "seconds": self.timings[name], "info": info or {}}))
        log.info("stage %s: finished in %.1fs", name, self.timings[name])
        return self.spark.read.parquet(path)

    def scratch(self, prefix: str):
        """A checkpoint function for iterative algorithms (materialise, read back)."""
        def checkpoint(name: str, df: DataFrame) -> DataFrame:
            path = f"{self.root}/{prefix}/{name}"
            df.write.mode("overwrite").parquet(path)
            return self.spark.read.parquet(path)

        return checkpoint
