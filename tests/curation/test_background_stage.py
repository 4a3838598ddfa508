"""A stage run on a second driver thread (curation/background_stage.py): it runs beside the
main thread's stage in its own fair-scheduler pool, each stage's profile counts its own
work, its errors reach the main thread, and `cancel()` stops its Spark jobs."""

from __future__ import annotations

import threading
import time

import pyarrow as pa
import pytest

from curation.background_stage import POOL, BackgroundStage
from curation.stage_profile import python_timed
from curation.stage_store import StageStore


def _busy(seconds: float):
    """mapInArrow body: burns `seconds` of CPU per task, says which pool ran the task."""
    def body(batches):
        from pyspark import TaskContext

        for _ in batches:
            pass
        end = time.process_time() + seconds
        while time.process_time() < end:
            pass
        pool = TaskContext.get().getLocalProperty("spark.scheduler.pool") or "default"
        yield pa.RecordBatch.from_pylist([{"pool": pool}])

    return body


def _stage(spark, n: int, seconds: float):
    return spark.range(0, n, 1, n).mapInArrow(python_timed(_busy(seconds)), "pool string")


def test_background_stage_runs_beside_the_main_one_in_its_own_pool(spark, tmp_path):
    store = StageStore(spark, str(tmp_path / "_stages"), "fp", lock=None)
    started = threading.Event()

    def background():
        started.set()
        return store.stage("bg", lambda: _stage(spark, 4, 0.5), min_read_tasks=6)

    bg = BackgroundStage(spark.sparkContext, store.profiler.group("bg"), background)
    started.wait(30)
    main = store.stage("main", lambda: _stage(spark, 3, 0.5), min_read_tasks=4)
    assert {r["pool"] for r in main.collect()} == {"default"}
    assert {r["pool"] for r in bg.result().collect()} == {POOL}
    # each stage's profile counts its own tasks and its own Python CPU (1.5 and 2.0 s
    # burnt, plus a worker's start-up), not the other's (3.5 s in all)
    assert store.profiles["main"]["tasks"] == 3 and store.profiles["bg"]["tasks"] == 4
    assert 1.5 <= store.profiles["main"]["python_cpu_s"] < 3.0
    assert 2.0 <= store.profiles["bg"]["python_cpu_s"] < 3.5
    # the shared read setting is back to what it was once both ended
    assert spark.conf.get("spark.sql.files.minPartitionNum", None) is None


def test_shared_read_setting_is_the_largest_asked_until_the_last_stage_ends(spark, tmp_path):
    store = StageStore(spark, str(tmp_path / "_stages"), "fp", lock=None)
    key = "spark.sql.files.minPartitionNum"
    with store._read_tasks(4):
        assert spark.conf.get(key) == "4"
        with store._read_tasks(16):  # as from a stage on another thread
            assert spark.conf.get(key) == "16"
            with store._read_tasks(None):
                assert spark.conf.get(key) == "16"
        assert spark.conf.get(key) == "4"
    assert spark.conf.get(key, None) is None


def test_background_failure_is_raised_in_the_main_thread_and_nothing_commits(spark, tmp_path):
    store = StageStore(spark, str(tmp_path / "_stages"), "fp", lock=None)

    def broken(batches):
        for _ in batches:
            raise ValueError("scorer exploded")
        yield from ()

    bg = BackgroundStage(spark.sparkContext, store.profiler.group("bad"), lambda: store.stage(
        "bad", lambda: spark.range(0, 2, 1, 2).mapInArrow(broken, "x long")))
    with pytest.raises(Exception, match="scorer exploded"):
        bg.result()
    assert not store.is_done("bad")


def test_cancel_stops_the_background_stage_jobs(spark, tmp_path):
    store = StageStore(spark, str(tmp_path / "_stages"), "fp", lock=None)

    def sleepy(batches):
        for _ in batches:
            pass
        time.sleep(120)
        yield pa.RecordBatch.from_pylist([{"x": 1}])

    bg = BackgroundStage(spark.sparkContext, store.profiler.group("slow"), lambda: store.stage(
        "slow", lambda: spark.range(0, 2, 1, 2).mapInArrow(sleepy, "x long")))
    tracker = spark.sparkContext.statusTracker()
    deadline = time.monotonic() + 60
    while not tracker.getJobIdsForGroup(store.profiler.group("slow")):
        assert time.monotonic() < deadline, "the background stage never started a job"
        time.sleep(0.1)
    started = time.monotonic()
    bg.cancel()
    assert time.monotonic() - started < 60
    assert not store.is_done("slow")
    with pytest.raises(Exception, match="(?i)cancel"):
        bg.result()
