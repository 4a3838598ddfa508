"""What each pipeline stage cost, from Spark's own task metrics: the profile in stats.json.

Every job a stage runs is tagged with one job group; when the stage ends, the metrics of
that group's Spark stages are summed from the application's status store (the same store
the Spark UI reads, kept even with the UI off): task count, executor CPU and run time,
records and bytes read and written, shuffle bytes written and read, bytes spilled.

Executor CPU is the JVM task threads' CPU. Work done in Python workers (`mapInArrow`
bodies: parsing, scoring, hashing) is not in it: each body is wrapped by `python_timed`,
which adds the worker's CPU seconds to an accumulator of the running stage
(`python_cpu_s`); `cpu_s` is the sum of both. Likewise `bytes_read` counts what Spark's
file sources read (Parquet inputs and the stage checkpoints); JSONL input is read by the
Python workers, and its size is that of the input files.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pyarrow as pa

log = logging.getLogger(__name__)

# The accumulator of the stage being measured on this driver (None outside a stage).
_current: object | None = None


def python_timed(body: Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]
                 ) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """Wrap a mapInArrow body so the Python worker's CPU seconds count towards the stage
    being measured when the DataFrame is built (unchanged outside a measured stage)."""
    acc = _current
    if acc is None:
        return body

    def timed(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        started = time.process_time()
        try:
            yield from body(batches)
        finally:
            acc.add(time.process_time() - started)

    return timed

FIELDS = {  # profile key -> StageData getter, scale
    "task_cpu_s": ("executorCpuTime", 1e-9),
    "task_run_s": ("executorRunTime", 1e-3),
    "records_read": ("inputRecords", 1),
    "bytes_read": ("inputBytes", 1),
    "records_written": ("outputRecords", 1),
    "bytes_written": ("outputBytes", 1),
    "shuffle_bytes_written": ("shuffleWriteBytes", 1),
    "shuffle_bytes_read": ("shuffleReadBytes", 1),
    "shuffle_records_written": ("shuffleWriteRecords", 1),
    "bytes_spilled": ("diskBytesSpilled", 1),
}


class StageProfiler:
    """Tags a pipeline stage's Spark jobs and sums their task metrics when it ends."""

    def __init__(self, spark) -> None:
        self.sc = spark.sparkContext
        self.run_id = uuid.uuid4().hex[:8]

    @contextmanager
    def measure(self, name: str) -> Iterator[dict]:
        """`with profiler.measure("exact") as profile:` ... profile holds the numbers after."""
        global _current
        group = f"sharpen-{self.run_id}-{name}"
        self.sc.setJobGroup(group, f"sharpen stage {name}", False)
        python_cpu = self.sc.accumulator(0.0)
        profile: dict = {}
        started, outer = time.perf_counter(), _current
        _current = python_cpu
        try:
            yield profile
        finally:
            _current = outer
            self.sc._jsc.clearJobGroup()
            profile["wall_s"] = round(time.perf_counter() - started, 3)
            profile.update(self._metrics(group))
            profile["python_cpu_s"] = round(python_cpu.value, 3)
            profile["cpu_s"] = round(profile["task_cpu_s"] + profile["python_cpu_s"], 3)

    def _metrics(self, group: str) -> dict:
        """Summed task metrics of the group's Spark stages. Best effort: the store keeps a
        bounded history (`spark.ui.retainedStages`), so a stage it dropped is counted in
        `stages_missing`, and a failure to read it never fails the job."""
        totals = {k: 0.0 for k in FIELDS}
        stages = tasks = missing = 0
        try:
            jsc = self.sc._jsc.sc()
            jsc.listenerBus().waitUntilEmpty()  # the store is filled by the listener bus
            store = jsc.statusStore()
            for job_id in self.sc.statusTracker().getJobIdsForGroup(group):
                try:
                    ids = store.job(job_id).stageIds().iterator()
                except Exception:  # Py4JJavaError: NoSuchElementException, job dropped
                    missing += 1
                    continue
                while ids.hasNext():
                    try:
                        data = store.lastStageAttempt(ids.next())
                    except Exception:  # Py4JJavaError: stage dropped from the store
                        missing += 1
                        continue
                    if str(data.status()) != "COMPLETE":  # skipped: its output was reused
                        continue
                    stages += 1
                    tasks += data.numCompleteTasks()
                    for key, (getter, scale) in FIELDS.items():
                        totals[key] += getattr(data, getter)() * scale
        except Exception as e:  # never let the profile fail the job
            log.warning("stage profile incomplete: %s", str(e).splitlines()[0][:200])
            missing += 1
        out = {"spark_stages": stages, "tasks": tasks, "stages_missing": missing}
        for key, value in totals.items():
            out[key] = round(value, 3) if key.endswith("_s") else int(value)
        return out
