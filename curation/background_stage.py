"""Run a pipeline stage on a second driver thread, beside the stages of the main thread.

Most stages depend on the one before, but some do not: `keeper_quality` needs only the
exact groups and the LSH buckets, not the verified edges or the components. Run on the
main thread it waited for them, and the edges' driver gaps (~200 ms of planning between
each of its ~30 Spark jobs) and single-task verification rounds left cores idle that its
per-document Python could have used. Submitted from a second thread, its tasks fill
them: Spark schedules concurrent jobs, and with `spark.scheduler.mode=FAIR`
(`spark_session.DEFAULT_CONF`) the background stage's jobs go to their own pool, so the
two share the task slots instead of the earlier-submitted job taking all of them.

The stage commits as any other (`StageStore.stage`): a killed job resumes it, or reuses
it, on its own. A failure in either thread is raised in the main one; `cancel()` stops
the background stage's Spark jobs when the main thread fails first.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Generic, TypeVar

from pyspark import InheritableThread, SparkContext

log = logging.getLogger(__name__)

T = TypeVar("T")
POOL = "background"  # the fair-scheduler pool of background stages


class BackgroundStage(Generic[T]):
    """`BackgroundStage(sc, group, run)` starts `run()` on a new driver thread; `result()`
    waits for it and returns its value or raises its error. `group`: the Spark job group
    the stage's jobs run under (`StageProfiler.group`), so `cancel()` can stop them."""

    def __init__(self, sc: SparkContext, group: str, run: Callable[[], T]):
        self.sc, self.group = sc, group
        self._value: T | None = None
        self._error: BaseException | None = None

        def body() -> None:
            sc.setLocalProperty("spark.scheduler.pool", POOL)
            try:
                self._value = run()
            except BaseException as e:  # handed to the main thread by result()
                self._error = e

        self._thread = InheritableThread(target=body, name=f"sharpen-{group}", daemon=True)
        self._thread.start()

    def result(self) -> T:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]

    def cancel(self) -> None:
        """Stop the stage's running Spark jobs and wait for the thread (its error, most
        likely the cancellation, is dropped: the main thread's error is the one raised)."""
        while self._thread.is_alive():  # again for each job the thread submits meanwhile
            log.info("cancelling background stage %s", self.group)
            self.sc.cancelJobGroup(self.group)
            self._thread.join(timeout=1.0)
