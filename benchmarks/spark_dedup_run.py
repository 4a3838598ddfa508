"""Run one `run_curation(mode="dedup")` in a fresh Python process (so a fresh Spark
session with its own master), sampling the process tree's memory while it runs.

`job_seconds` is the `run_curation` call alone; `process_seconds` adds the interpreter and
JVM start-up; `session_seconds` is the SparkSession build; `cpu_seconds` is the CPU time of
every process of the tree (driver, JVM, Python workers) as of its last 0.2 s sample.
The parent also reads the run's stats.json: `profile` (per-stage wall s, tasks, CPU s,
Python CPU s, bytes and shuffle bytes; in the order the stages ran), `resumed` stages (should be empty: pass a fresh
`out`), `lsh`, and `dedup_path` (the `dedup/` Parquet: id, cluster_id, keep, reason, ...).

Child mode: python -m benchmarks.spark_dedup_run --docs D [D ...] --out O --master local[1]
[--dedup-json J] (each D a file, directory or glob, as `run_curation` takes them)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks.process_tree_memory import TreeSampler

REPO = Path(__file__).resolve().parents[1]


def run_dedup_subprocess(docs: Path | str | Sequence[Path | str], out: Path, master: str,
                         dedup_overrides: dict | None = None, shuffle_partitions: int | None = None,
                         timeout_s: float = 3600) -> dict:
    """Spawn the child, sample its memory every 0.2 s, return its timings + peaks + profile.

    `docs`: one path or glob, or a list of them."""
    paths = [docs] if isinstance(docs, (str, Path)) else list(docs)
    cmd = [sys.executable, "-m", "benchmarks.spark_dedup_run", "--docs", *map(str, paths),
           "--out", str(out), "--master", master, "--dedup-json", json.dumps(dedup_overrides or {})]
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
    result.update(process_seconds=round(wall, 2), memory=sampler.result.as_mib(),
                  cpu_seconds=round(sampler.result.cpu_seconds, 2))
    stats_path = Path(out) / "stats.json"
    if stats_path.is_file():
        stats = json.loads(stats_path.read_text())
        profile = stats["stages"].get("profile", {})  # stats.json sorts keys: run order back
        order = [k for k in result.get("stage_order", []) if k in profile]
        result.update(profile={k: profile[k] for k in order + sorted(set(profile) - set(order))},
                      resumed=stats["stages"].get("resumed", []), lsh=stats.get("lsh"))
    result["dedup_path"] = str(Path(out) / "dedup")
    return result


def _child(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", required=True, nargs="+")
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
    spark = get_spark(args.master)  # the job sets its shuffle width
    t1 = time.perf_counter()
    stats = run_curation(args.docs, args.out, cfg, master=args.master, mode="dedup")
    t2 = time.perf_counter()
    spark.stop()
    print(json.dumps({"master": args.master, "session_seconds": round(t1 - t0, 2),
                      "job_seconds": round(t2 - t1, 2), "documents": stats["counts"]["input"],
                      "kept": stats["counts"]["kept"], "removed": stats["counts"]["removed"],
                      "stage_seconds": stats["stages"]["seconds"],
                      "stage_order": list(stats["stages"].get("profile", {}))}))
    return 0


if __name__ == "__main__":
    raise SystemExit(_child(sys.argv[1:]))
