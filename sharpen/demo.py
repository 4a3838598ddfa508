"""`sharpen demo`: the whole platform on the bundled sample corpus, at small scale.

curate (Spark, local) -> mix (tokenizer + two stages of Arrow shards) -> train (two
pre-training stages, FSDP2 under torchrun, 2 CPU ranks) -> summary printed and written
to `runs/demo/summary.json`.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parent.parent


def register(sub) -> None:
    p = sub.add_parser("demo", help="run curate -> mix -> train on data/sample")
    p.add_argument("--input", default=str(ROOT / "data" / "sample"), help="raw corpus")
    p.add_argument("--output", default="runs/demo", help="where every stage writes")
    p.add_argument("--recipe", default=str(ROOT / "mixtures" / "recipes" / "demo.yaml"))
    p.add_argument("--plan", default=str(ROOT / "training" / "recipes" / "demo.yaml"))
    p.add_argument("--nproc", type=int, default=2, help="torchrun ranks")
    p.add_argument("--master", help="Spark master URL (default local[*])")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    summary = run_demo(args.input, args.output, args.recipe, args.plan, args.nproc, args.master)
    print(format_summary(summary))
    return 0


def run_demo(input_path: str, output: str, recipe: str, plan: str, nproc: int = 2,
             master: str | None = None) -> dict:
    from curation.config import CurationConfig
    from curation.pipeline import run_curation
    from mixtures.materialize import run_mix
    from training.cli import run_training

    out = Path(output).resolve()
    out.mkdir(parents=True, exist_ok=True)
    timings = {}
    t = time.perf_counter()
    stats = run_curation([str(Path(input_path).resolve())], str(out / "curate"), CurationConfig(), master)
    timings["curate_s"] = round(time.perf_counter() - t, 1)
    _stop_spark()
    t = time.perf_counter()
    mix = run_mix(str(out / "curate"), recipe, str(out / "mix"))
    timings["mix_s"] = round(time.perf_counter() - t, 1)
    t = time.perf_counter()
    # a rerun (or a killed demo) continues from the latest checkpoint rather than being
    # refused: same data, same plan, so resuming is what the user wants here
    if (out / "train" / "checkpoints" / "latest.json").is_file():
        log.info("%s holds checkpoints: resuming from the latest", out / "train")
    train = run_training(plan, str(out / "mix"), str(out / "train"), nproc=nproc, resume=True)
    timings["train_s"] = round(time.perf_counter() - t, 1)
    summary = {
        "documents": stats["counts"],
        "quarantined_by_reason": stats["quarantined_by_reason"],
        "removed": {"filters": sum(stats["removed_by_filter"].values()),
                    "exact_dup": stats["removed_exact_dup"], "near_dup": stats["removed_near_dup"]},
        "quality_buckets_by_domain": stats.get("quality", {}).get("docs_by_domain_and_bucket", {}),
        "tokens_by_domain": {name: st.get("tokens_by_domain", {})
                             for name, st in mix.get("stages", {}).items()},
        "loss": train.get("stages", train),
        "outputs": {"curated": str(out / "curate" / "curated"),
                    "stats": str(out / "curate" / "stats.json"),
                    "shards": str(out / "mix"), "train": str(out / "train"),
                    "metrics": str(out / "train" / "metrics.jsonl")},
        "seconds": timings,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _stop_spark() -> None:
    """Free the JVM's memory and cores before training starts."""
    from pyspark.sql import SparkSession

    s = SparkSession.getActiveSession()
    if s is not None:
        s.stop()


def format_summary(s: dict) -> str:
    c = s["documents"]
    lines = ["", "sharpen demo summary", "=" * 20,
             f"documents: in {c['input']}  kept {c['kept']}  removed {c['removed']}  "
             f"quarantined {c['quarantined']}",
             f"removed: {s['removed']}"]
    buckets = s.get("quality_buckets_by_domain", {})
    if buckets:
        top = max(int(b) for by in buckets.values() for b in by)
        lines.append("quality buckets (0 = worst) per domain: " + "; ".join(
            f"{d} " + "/".join(str(by.get(str(b), 0)) for b in range(top + 1))
            for d, by in sorted(buckets.items())))
    for stage, doms in s["tokens_by_domain"].items():
        lines.append(f"stage {stage} tokens: " + ", ".join(f"{d} {n:,}" for d, n in sorted(doms.items())))
    for stage, info in s["loss"].items():
        if isinstance(info, dict) and "first_loss" in info:
            lines.append(f"stage {stage} loss: {info['first_loss']:.3f} -> {info['last_loss']:.3f}")
    lines.append("outputs: " + ", ".join(f"{k}={v}" for k, v in s["outputs"].items()))
    lines.append(f"seconds: {s['seconds']}")
    return "\n".join(lines)
