"""Spark's Python worker daemon, with our modules imported once before it forks workers
and a cheap collection at the end of each task.

`spark.python.daemon.module` points here (`spark_session.DEFAULT_CONF`).

- **Preloading.** pyspark's daemon forks one worker per concurrent task (and again
  whenever a worker cannot be reused, e.g. after `first()` stopped reading its output).
  Each fresh worker imported pyarrow, numpy and the curation modules our UDFs use
  (~0.8-1.3 s of CPU) before its first batch, on the critical path of the stage that
  forked it, and again in every re-forked worker (1 GB `curate dedup`, `local[2]`: job
  ~150 s without, ~145 s with; the first parse wave's other warm-up, the JVM's first
  queries, stays). Here the daemon imports them once and forks
  workers that already have them; `gc.freeze()` then moves those objects out of the
  collector's view, so no worker's collections walk (or copy-on-write) them.
- **Task-end collection.** pyspark's daemon runs a full `gc.collect()` in a reused worker
  after every task. A worker that has imported pyspark, pyarrow and pandas (~850
  modules) and filled our per-word caches holds hundreds of thousands of tracked
  objects, so that full walk cost 12.8 of the ~96 Python CPU-s of a 1 GB `curate dedup`
  (py-spy, `benchmarks/RESULTS.md`), about 85 ms per task, on the task slots' own cores.
  Here the end of a task collects the young generations only: the task's cyclic garbage
  is young, and Python's own thresholds still run full collections as the old generation
  grows, as in any Python process.

Everything else is pyspark's daemon. Executors must import `curation` for our UDFs
anyway; where they cannot import this module, `--conf
spark.python.daemon.module=pyspark.daemon` restores Spark's own.
"""

from __future__ import annotations

import gc
import importlib
import logging

import pyspark.daemon as _daemon

log = logging.getLogger(__name__)

# What the Python workers of a curation job run: the parsing, annotation, dedup and
# output-writing UDFs and the worker loop itself. Native model packages (fastText, KenLM)
# load with their first model, in the worker that needs one.
PRELOAD = (
    "pyspark.worker",
    "curation.io.reader",
    "curation.io.record_parser",
    "curation.io.arrow_parquet",
    "curation.annotate",
    "curation.scorers.registry",
    "curation.dedup.verify",
    "curation.dedup.keeper_quality",
)


def preload(modules: tuple[str, ...] = PRELOAD) -> list[str]:
    """Import `modules` (those that import; a worker imports a missing one itself, as
    before) and freeze the collector's view of them; returns the names imported."""
    done = []
    for name in modules:
        try:
            importlib.import_module(name)
            done.append(name)
        except Exception as e:  # never stop the daemon: the worker pays the import itself
            log.warning("daemon preload of %s failed: %s", name, e)
    gc.collect()
    gc.freeze()
    return done


class _TaskEndCollector:
    """Stands in for the `gc` module inside `pyspark.daemon`: only `collect()` differs."""

    def __getattr__(self, name: str):
        return getattr(gc, name)

    @staticmethod
    def collect(generation: int = 1) -> int:
        return gc.collect(generation)


_daemon.gc = _TaskEndCollector()

if __name__ == "__main__":
    preload()
    _daemon.manager()
