"""Independent Spark jobs submitted from several driver threads at once.

A small job is mostly driver time (planning, scheduling, committing files: ~0.1-0.3 s each,
with one task or none running), so jobs that do not depend on each other, such as the
job's four outputs or the counts of stats.json, are run side by side: one job's tasks
fill the cores while another is being planned. Each call's result does not depend on
what runs beside it, so outputs stay byte-identical. Spark's scheduler is thread-safe;
each Python thread talks to its own JVM thread (pyspark's pinned-thread mode).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any


def side_by_side(*calls: Callable[[], Any], at_once: int | None = None) -> list[Any]:
    """Run each call in its own thread, at most `at_once` at a time (default: all), started
    in call order; return their results in order. Every call runs to its end even when
    another fails; then the first failure (in call order) is raised."""
    if len(calls) <= 1:
        return [call() for call in calls]
    width = min(len(calls), at_once or len(calls))
    with ThreadPoolExecutor(max_workers=width, thread_name_prefix="sharpen-job") as pool:
        futures = [pool.submit(call) for call in calls]
    return [f.result() for f in futures]
