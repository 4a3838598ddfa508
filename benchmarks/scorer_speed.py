"""Scorer speed (issue 6, point 11): each registry entry's docs/s per core inside the Spark
annotation pass and as a plain Python loop over the same models and documents.

- Plain loop: `registry.score_batch` over Arrow batches of 256 documents in this process,
  every entry timed on its own (`timings=`).
- Spark pass: the same `annotate_batches` body under `mapInArrow` on local[1] over a
  cached DataFrame of the same documents (the read is not timed), written to the `noop`
  sink. Each Python worker times every entry the same way and writes its totals to a file,
  so the per-entry numbers inside Spark are comparable with the loop's. The whole pass is
  also timed end to end, wall and CPU seconds of every process involved (driver, JVM,
  Python workers), which is the fair "per core" cost: Spark moves the text through Arrow
  on a JVM thread besides the worker.

Target: the Spark pass costs at most 1.3x the plain loop per core (CPU seconds). Model
loading happens once per process (a test asserts it); here load time is outside the
timed region on both sides (a warm-up batch loads the models first).

Run: .venv/bin/python -m benchmarks.scorer_speed [--docs 1500]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pyarrow as pa

from benchmarks.quality_eval import sample_docs
from curation.config import CurationConfig
from curation.quality.bundled_models import MODELS, ensure_models, with_models
from curation.scorers import registry

ROOT = Path(__file__).resolve().parents[1]
BATCH = 256


def _batches(docs: list[dict]) -> list[pa.RecordBatch]:
    out = []
    for i in range(0, len(docs), BATCH):
        part = docs[i:i + BATCH]
        out.append(pa.RecordBatch.from_pydict({
            "id": [d["id"] for d in part], "source": [d["source"] for d in part],
            "domain": pa.array([d["domain"] for d in part], pa.string()),
            "text": [d["text"] for d in part],
            "meta": [None] * len(part)}))
    return out


def plain_loop(cfg: CurationConfig, docs: list[dict]) -> dict:
    scorers = registry.build_scorers(cfg)
    schema = registry.annotation_schema(scorers)
    batches = _batches(docs)
    registry.score_batch(scorers, batches[0], schema)  # loads the models
    timings: dict[str, float] = {}
    cpu, t = time.process_time(), time.perf_counter()
    for b in batches:
        registry.score_batch(scorers, b, schema, timings)
    return {"wall_s": time.perf_counter() - t, "cpu_s": time.process_time() - cpu,
            "entries": timings}


def _timed_annotate(cfg: CurationConfig, out_dir: str, shipped: dict[str, str]):
    """mapInArrow body: annotate_batches with per-entry timings written to out_dir."""
    def run(batches):
        from curation.scorers.model_shipping import resolve_models

        c = resolve_models(cfg, shipped)
        scorers = registry.build_scorers(c, check=False)
        schema = registry.annotation_schema(scorers)
        timings: dict[str, float] = {}
        n = 0
        for b in batches:
            n += b.num_rows
            yield registry.score_batch(scorers, b, schema, timings)
        path = Path(out_dir) / f"t-{os.getpid()}-{time.time_ns()}.json"
        path.write_text(json.dumps({"docs": n, "entries": timings}))
    return run


def _tree_cpu(root: psutil.Process) -> float:
    total = 0.0
    for p in [root, *root.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def spark_pass(cfg: CurationConfig, docs: list[dict]) -> dict:
    from pyspark.sql import SparkSession

    from curation.scorers.model_shipping import ship_models

    spark = (SparkSession.builder.master("local[1]").appName("scorer-speed")
             .config("spark.sql.execution.arrow.maxRecordsPerBatch", str(BATCH))
             .config("spark.ui.enabled", "false").getOrCreate())
    try:
        shipped = ship_models(spark.sparkContext, cfg)
        table = pa.Table.from_batches(_batches(docs))
        df = spark.createDataFrame(table.to_pandas()).repartition(1).cache()
        df.count()
        ddl = registry.spark_ddl(registry.annotation_schema(registry.build_scorers(cfg)))
        me = psutil.Process()
        with tempfile.TemporaryDirectory() as warm, tempfile.TemporaryDirectory() as tdir:
            # warm-up on a few rows: starts the Python worker and loads the models there
            df.limit(BATCH).mapInArrow(_timed_annotate(cfg, warm, shipped), ddl).write.format(
                "noop").mode("overwrite").save()
            cpu, t = _tree_cpu(me), time.perf_counter()
            df.mapInArrow(_timed_annotate(cfg, tdir, shipped), ddl).write.format("noop").mode(
                "overwrite").save()
            wall, cpu = time.perf_counter() - t, _tree_cpu(me) - cpu
            entries: dict[str, float] = {}
            n = 0
            for f in Path(tdir).glob("t-*.json"):
                r = json.loads(f.read_text())
                n += r["docs"]
                for k, v in r["entries"].items():
                    entries[k] = entries.get(k, 0.0) + v
        assert n == len(docs), (n, len(docs))
        return {"wall_s": wall, "cpu_s": cpu, "entries": entries}
    finally:
        spark.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=1500)
    ap.add_argument("--models", default=str(ROOT / "benchmarks" / "out" / "models"))
    args = ap.parse_args(argv)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    # every entry does real work: all four models, documents without a domain (the
    # classifier decides it), and the labelled evaluation set as a decontamination set
    cfg = with_models(CurationConfig(decontamination={"eval_sets": {"labelled": str(
        ROOT / "data" / "quality" / "eval" / "labelled.jsonl.gz")}}),
        ensure_models(args.models, names=tuple(MODELS), log=print))
    docs = [{**d, "domain": None} for d in sample_docs()[:args.docs]]
    mb = sum(len(d["text"].encode()) for d in docs) / 1e6
    print(f"{len(docs)} sample documents, {mb:.1f} MB; batches of {BATCH}")
    loop = plain_loop(cfg, docs)
    spark = spark_pass(cfg, docs)
    n = len(docs)
    print("| entry | plain loop docs/s | in Spark pass docs/s | Spark / loop cost |")
    print("|---|---:|---:|---:|")
    for name in loop["entries"]:
        a, b = loop["entries"][name], spark["entries"].get(name, float("nan"))
        print(f"| {name} | {n / a:,.0f} | {n / b:,.0f} | {b / a:.2f}x |")
    print(f"| **whole pass, wall (1 core)** | {n / loop['wall_s']:,.0f} | "
          f"{n / spark['wall_s']:,.0f} | {spark['wall_s'] / loop['wall_s']:.2f}x |")
    print(f"| **whole pass, per CPU second** | {n / loop['cpu_s']:,.0f} | "
          f"{n / spark['cpu_s']:,.0f} | {spark['cpu_s'] / loop['cpu_s']:.2f}x |")
    out = ROOT / "benchmarks" / "out" / "scorer_speed.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"docs": n, "mb": mb, "loop": loop, "spark": spark}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
