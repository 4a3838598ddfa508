"""Run one `run_curation(mode="dedup")` in a fresh Python process (so a fresh Spark
session with its own master), sampling the process tree's memory while it runs.

`job_seconds` is the `run_curation` call alone; `process_seconds` adds the interpreter and
JVM start-up; `session_seconds` is the SparkSession build.

Child mode: python -m benchmarks.spark_dedup_run --docs D --out O --master local[1] [--dedup-json J]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.process_tree_memory import TreeSampler

REPO = Path(__file__).resolve().parents[1]


def run_dedup_subprocess(docs: Path, out: Path, master: str, dedup_overrides: dict | None = None,
                         shuffle_partitions: int | None = None, timeout_s: float = 3600) -> dict:
    """Spawn the child, sample its memory every 0.2 s, return its timings + peaks."""
    cmd = [sys.executable, "-m", "benchmarks.spark_dedup_run", "--docs", str(docs), "--out", str(out),
           "--master", master, "--dedup-json", json.dumps(dedup_overrides or {})]
    if shuffle_partitions is not None:
        cmd += ["--shuffle-partitions", str(shuffle_partitions)]
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    with TreeSampler(proc.pid) as sampler:
        try:
            stdout, stderr = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
            raise RuntimeError(f"dedup run on {master} timed out after {timeout_s} s") from None
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"dedup run on {master} failed (rc {proc.returncode}):\n{stderr[-3000:]}")
    result = json.loads(stdout.strip().splitlines()[-1])
    result.update(process_seconds=round(wall, 2), memory=sampler.result.as_mib())
    return result


def _child(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--master", required=True)
    ap.add_argument("--dedup-json", default="{}")
    ap.add_argument("--shuffle-partitions", type=int, default=None)
    args = ap.parse_args(argv)
    from curation.config import CurationConfig
    from curation.pipeline import run_curation
    from curation.spark_session import get_spark

    data = CurationConfig().model_dump()
    data["dedup"].update(json.loads(args.dedup_json))
    if args.shuffle_partitions is not None:
        data["shuffle_partitions"] = args.shuffle_partitions
    cfg = CurationConfig.model_validate(data)
    t0 = time.perf_counter()
    spark = get_spark(args.master, conf={"spark.sql.shuffle.partitions": str(cfg.shuffle_partitions)})
    t1 = time.perf_counter()
    stats = run_curation([args.docs], args.out, cfg, master=args.master, mode="dedup")
    t2 = time.perf_counter()
    spark.stop()
    print(json.dumps({"master": args.master, "session_seconds": round(t1 - t0, 2),
                      "job_seconds": round(t2 - t1, 2), "documents": stats["counts"]["input"],
                      "kept": stats["counts"]["kept"], "removed": stats["counts"]["removed"],
                      "stage_seconds": stats["stages"]["seconds"]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(_child(sys.argv[1:]))
