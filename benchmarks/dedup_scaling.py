"""Scaling of the dedup job from local[1] to local[2], with peak memory per role.

Each run is a fresh process (fresh SparkSession and JVM) running
`run_curation(mode="dedup")` on the same documents; its process tree is sampled every
0.2 s with psutil (JVM = driver + the one local executor; Python workers = pyspark daemon
and its forked workers). The peer is local[1] itself: speed-up = median time on local[1] /
median time on local[2].

Run: .venv/bin/python -m benchmarks.dedup_scaling [--docs benchmarks/out/speed/e2e_docs.jsonl]
(the default document set is written by `python -m benchmarks.minhash_speed`; any JSONL works).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
from pathlib import Path

from benchmarks.dedup_labelled_set import REPO
from benchmarks.machine_info import machine_info
from benchmarks.spark_dedup_run import run_dedup_subprocess

log = logging.getLogger(__name__)


def scaling(docs: Path, out: Path, masters: list[str], repeats: int,
            shuffle_partitions: int | None = None) -> dict:
    """Interleaved runs (m1, m2, m1, m2, ...) so contention hits each master alike."""
    runs: dict[str, list[dict]] = {m: [] for m in masters}
    for k in range(repeats):
        for m in masters:
            tag = m.replace("[", "").replace("]", "").replace("*", "all")
            res = run_dedup_subprocess(docs, out / f"{tag}_{k}", m, shuffle_partitions=shuffle_partitions)
            runs[m].append(res)
            log.info("%s run %d: job %.1f s, JVM peak %.0f MiB", m, k, res["job_seconds"],
                     res["memory"]["peak_sum_mib"].get("jvm", 0))
    summary: dict = {"machine": machine_info(), "documents": None, "masters": {}}
    for m, rs in runs.items():
        n = rs[0]["documents"]
        summary["documents"] = n
        job = statistics.median(r["job_seconds"] for r in rs)
        mem = [r["memory"] for r in rs]
        summary["masters"][m] = {
            "job_seconds_median": job, "job_seconds_all": [r["job_seconds"] for r in rs],
            "process_seconds_median": statistics.median(r["process_seconds"] for r in rs),
            "docs_per_s": round(n / job, 1),
            "peak_jvm_rss_mib": max(x["peak_sum_mib"].get("jvm", 0) for x in mem),
            "peak_python_workers_rss_mib_sum": max(x["peak_sum_mib"].get("python_worker", 0) for x in mem),
            "peak_python_worker_rss_mib_single": max(x["peak_single_mib"].get("python_worker", 0) for x in mem),
            "max_python_workers": max(x["max_processes"].get("python_worker", 0) for x in mem),
            "peak_driver_rss_mib": max(x["peak_sum_mib"].get("driver", 0) for x in mem),
            "kept": rs[0]["kept"], "stage_seconds_first_run": rs[0]["stage_seconds"],
        }
    base = summary["masters"][masters[0]]["job_seconds_median"]
    for m in masters:
        summary["masters"][m]["speedup_vs_" + masters[0]] = round(
            base / summary["masters"][m]["job_seconds_median"], 3)
    kept = {summary["masters"][m]["kept"] for m in masters}
    summary["same_result_all_masters"] = len(kept) == 1
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--docs", type=Path, default=REPO / "benchmarks/out/speed/e2e_docs.jsonl")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks/out/scaling")
    ap.add_argument("--masters", nargs="*", default=["local[1]", "local[2]"])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if not args.docs.is_file():
        raise FileNotFoundError(f"{args.docs} not found: run `python -m benchmarks.minhash_speed` "
                                "first or pass --docs")
    summary = scaling(args.docs, args.out, args.masters, args.repeats)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scaling.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"{summary['documents']} documents, same result on all masters: "
          f"{summary['same_result_all_masters']}")
    print(f"{'master':10} {'job s':>8} {'docs/s':>8} {'speed-up':>8} {'JVM MiB':>8} "
          f"{'py workers MiB (sum/max one/n)':>32} {'driver MiB':>10}")
    for m, r in summary["masters"].items():
        sp = r["speedup_vs_" + args.masters[0]]
        print(f"{m:10} {r['job_seconds_median']:8.1f} {r['docs_per_s']:8.1f} {sp:8.2f} "
              f"{r['peak_jvm_rss_mib']:8.0f} {r['peak_python_workers_rss_mib_sum']:>14.0f} / "
              f"{r['peak_python_worker_rss_mib_single']:.0f} / {r['max_python_workers']:<5} "
              f"{r['peak_driver_rss_mib']:10.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
