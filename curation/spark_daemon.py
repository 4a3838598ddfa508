"""Spark's Python worker daemon, with a cheap collection at the end of each task.

`spark.python.daemon.module` points here (`spark_session.DEFAULT_CONF`). pyspark's daemon
runs a full `gc.collect()` in a reused worker after every task. A worker that has imported
pyspark, pyarrow and pandas (~850 modules) and filled our per-word caches holds hundreds of
thousands of tracked objects, so that full walk cost 12.8 of the ~96 Python CPU-s of a
1 GB `curate dedup` (py-spy, `benchmarks/RESULTS.md`), about 85 ms per task, on the task
slots' own cores. Here the end of a task collects the young generations only: the task's
cyclic garbage is young, and Python's own thresholds still run full collections as the old
generation grows, as in any Python process. Everything else is pyspark's daemon.

Executors must import `curation` for our UDFs anyway; where they cannot import this
module, `--conf spark.python.daemon.module=pyspark.daemon` restores Spark's own.
"""

from __future__ import annotations

import gc

import pyspark.daemon as _daemon


class _TaskEndCollector:
    """Stands in for the `gc` module inside `pyspark.daemon`: only `collect()` differs."""

    def __getattr__(self, name: str):
        return getattr(gc, name)

    @staticmethod
    def collect(generation: int = 1) -> int:
        return gc.collect(generation)


_daemon.gc = _TaskEndCollector()

if __name__ == "__main__":
    _daemon.manager()
