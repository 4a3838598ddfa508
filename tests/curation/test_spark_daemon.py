"""The Python worker daemon our sessions use (curation/spark_daemon.py): Spark's own,
with our modules imported before it forks workers and a young-generation collection
after each task instead of a full one."""

from __future__ import annotations

import gc

import pyarrow as pa

from curation.spark_daemon import _TaskEndCollector


def test_task_end_collection_frees_young_cycles_and_skips_the_old_generation():
    collector = _TaskEndCollector()
    assert collector.get_threshold() == gc.get_threshold()  # the rest is the gc module
    gc.collect()
    old = gc.get_count()
    for _ in range(100):  # cyclic garbage made by a task: young, freed at its end
        a: list = []
        a.append(a)
    del a
    assert collector.collect() >= 100
    gen2 = gc.get_stats()[2]["collections"]
    collector.collect()
    assert gc.get_stats()[2]["collections"] == gen2, "a full collection ran"
    assert gc.get_count()[2] >= old[2]


def test_sessions_run_python_tasks_under_our_daemon(spark):
    def probe(batches):
        import sys

        for _ in batches:
            pass
        collector = getattr(sys.modules.get("pyspark.daemon"), "gc", None)
        yield pa.RecordBatch.from_pylist([{"collector": type(collector).__name__}])

    rows = spark.range(0, 4, 1, 4).mapInArrow(probe, "collector string").collect()
    assert {r["collector"] for r in rows} == {"_TaskEndCollector"}


def test_preload_imports_what_the_workers_run_and_survives_a_missing_module():
    import subprocess
    import sys

    code = ("import gc, sys; import curation.spark_daemon as d; "
            "done = d.preload(d.PRELOAD + ('curation.no_such_module',)); "
            "print(done == list(d.PRELOAD), gc.get_freeze_count() > 0, "
            "'curation.annotate' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "True", "True"], out.stdout + out.stderr


def test_workers_are_forked_from_a_preloaded_daemon(spark):
    def probe(batches):
        import gc

        for _ in batches:
            pass
        # only a worker forked after the daemon's preload (and gc.freeze) starts with
        # frozen objects: nothing else in a worker freezes
        yield pa.RecordBatch.from_pylist([{"frozen": gc.get_freeze_count()}])

    rows = spark.range(0, 4, 1, 4).mapInArrow(probe, "frozen long").collect()
    assert min(r["frozen"] for r in rows) > 10_000, rows
