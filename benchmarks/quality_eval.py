"""Measured quality (issue 6, point 10): the default pipeline (filters + ensemble) on the
labelled evaluation set `data/quality/eval/labelled.jsonl.gz`, whose sources are used
neither by the sample corpus nor by the reference sets the models learn from.

Each document runs through the registry's scorers exactly as in the Spark pass
(`registry.score_batch`), with its labelled domain. A document is kept when no rule
removed it. Quality buckets use the pipeline's own global cut-offs (`outputs.quality_cutoffs`
logic: percentiles i/5 of `quality_score` over kept documents) measured on the kept,
non-duplicate documents of the sample corpus curated with the same models, so "top bucket"
means what it means in a real run; the cut-offs of the eval set itself are reported too.

Targets: ROC AUC >= 0.90 of the pipeline score (a removed document ranks below every kept
one), >= 90% of good documents kept, <= 5% of bad documents in the top bucket.
Baselines, same filters: the heuristic score before issue 6, and fastText alone.

Run: .venv/bin/python -m benchmarks.quality_eval   (~1 min; trains the bundled models
into benchmarks/out/models on first use)
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa

from benchmarks.baselines.old_heuristic_score import heuristic_quality as old_heuristic
from curation.config import CurationConfig
from curation.outputs import cutoffs_from_counts
from curation.quality.bundled_models import ensure_models, with_models
from curation.quality.fasttext_metrics import roc_auc
from curation.scorers import registry

ROOT = Path(__file__).resolve().parents[1]
EVAL = ROOT / "data" / "quality" / "eval" / "labelled.jsonl.gz"
SAMPLE = ROOT / "data" / "sample"
BUCKETS = 5


def read_jsonl(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def annotate(cfg: CurationConfig, docs: list[dict], batch: int = 256) -> list[dict]:
    """The annotation pass in-process: the same entries, order and code as on executors."""
    scorers = registry.build_scorers(cfg)
    schema = registry.annotation_schema(scorers)
    rows = []
    for i in range(0, len(docs), batch):
        part = docs[i:i + batch]
        rb = pa.RecordBatch.from_pydict({
            "id": [d["id"] for d in part], "source": [d["source"] for d in part],
            "domain": [d.get("domain") for d in part], "text": [d["text"] for d in part],
            "meta": [None] * len(part)})
        rows += registry.score_batch(scorers, rb, schema).to_pylist()
    return rows


def cutoffs(scores: list[float], buckets: int = BUCKETS) -> list[float]:
    """The pipeline's own rule (`curation.outputs.cutoffs_from_counts`) on these scores."""
    return cutoffs_from_counts(list(Counter(round(s, 6) for s in scores).items()), buckets)


def bucket_of(score: float, cuts: list[float]) -> int:
    return sum(score > c for c in cuts)


def sample_docs() -> list[dict]:
    """Non-duplicate sample documents (first copy of each exact text)."""
    seen, docs = set(), []
    for f in sorted(SAMPLE.glob("*.jsonl.gz")):
        for d in read_jsonl(f):
            h = hashlib.sha256(d["text"].encode()).digest()
            if h not in seen:
                seen.add(h)
                docs.append(d)
    return docs


def evaluate(name: str, rows: list[dict], labels: list[dict], score: Callable[[dict], float],
             sample_scores: list[float]) -> dict:
    cut_sample = cutoffs(sample_scores)
    kept_scores = [score(r) for r in rows if r["removed_by"] is None]
    cut_eval = cutoffs(kept_scores)
    result = {"variant": name, "cutoffs_sample": cut_sample, "cutoffs_eval": cut_eval,
              "domains": {}}
    for dom in ["all", *sorted({d["domain"] for d in labels})]:
        idx = [i for i, d in enumerate(labels) if dom == "all" or d["domain"] == dom]
        good = np.array([labels[i]["label"] == "good" for i in idx])
        kept = np.array([rows[i]["removed_by"] is None for i in idx])
        s = np.array([score(rows[i]) for i in idx])
        pipeline = np.where(kept, s, s - 2.0)  # removed ranks below every kept document
        top_s = np.array([k and bucket_of(v, cut_sample) == BUCKETS - 1 for k, v in zip(kept, s, strict=True)])
        top_e = np.array([k and bucket_of(v, cut_eval) == BUCKETS - 1 for k, v in zip(kept, s, strict=True)])
        n_good, n_bad = int(good.sum()), int((~good).sum())
        result["domains"][dom] = {
            "good": n_good, "bad": n_bad,
            "auc": roc_auc(good, pipeline) if n_good and n_bad else None,
            "auc_score_only": roc_auc(good, s) if n_good and n_bad else None,
            "good_kept": float(kept[good].mean()) if n_good else None,
            "bad_kept": float(kept[~good].mean()) if n_bad else None,
            "bad_in_top": float(top_s[~good].mean()) if n_bad else None,
            "bad_share_of_top": float((top_s & ~good).sum() / max(top_s.sum(), 1)),
            "bad_in_top_eval_cuts": float(top_e[~good].mean()) if n_bad else None,
        }
    return result


def fmt(v: float | None, pct: bool = False) -> str:
    if v is None:
        return "-"
    return f"{100 * v:.1f}%" if pct else f"{v:.3f}"


def table(results: list[dict]) -> str:
    lines = ["| variant | domain | good/bad | ROC AUC (pipeline) | AUC (score only) | good kept "
             "| bad kept | bad in top bucket | bad share of top bucket |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        for dom, m in r["domains"].items():
            lines.append(f"| {r['variant']} | {dom} | {m['good']}/{m['bad']} | {fmt(m['auc'])} | "
                         f"{fmt(m['auc_score_only'])} | {fmt(m['good_kept'], True)} | "
                         f"{fmt(m['bad_kept'], True)} | {fmt(m['bad_in_top'], True)} | "
                         f"{fmt(m['bad_share_of_top'], True)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=str(ROOT / "benchmarks" / "out" / "models"))
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "out" / "quality_eval.json"))
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    fields = ensure_models(args.models, log=print)
    cfg = with_models(CurationConfig(), fields)
    labels = read_jsonl(EVAL)
    sample = sample_docs()
    print(f"eval set: {len(labels)} documents; sample: {len(sample)} non-duplicate documents")
    rows = annotate(cfg, labels)
    srows = [r for r in annotate(cfg, sample) if r["removed_by"] is None]
    texts = {d["id"]: d["text"] for d in labels}
    stexts = {d["id"]: d["text"] for d in sample}
    w = cfg.quality.weights
    variants = [
        ("default: filters + ensemble", lambda r: r["quality_score"],
         [r["quality_score"] for r in srows]),
        ("baseline: filters + old heuristic score", lambda r: old_heuristic(texts[r["id"]]),
         [old_heuristic(stexts[r["id"]]) for r in srows]),
        ("baseline: filters + fastText alone", lambda r: r["quality_fasttext"],
         [r["quality_fasttext"] for r in srows]),
    ]
    results = [evaluate(n, rows, labels, f, s) for n, f, s in variants]
    print(f"ensemble weights {w}; lang filter {cfg.language.languages}")
    print(table(results))
    removed: dict[str, int] = {}
    for r, d in zip(rows, labels, strict=True):
        if d["label"] == "good" and r["removed_by"]:
            removed[f"{d['domain']}:{r['removed_by']}"] = removed.get(f"{d['domain']}:{r['removed_by']}", 0) + 1
    print("good documents removed, by domain:rule:", dict(sorted(removed.items())))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"results": results, "good_removed": removed,
                                           "weights": w}, indent=2) + "\n")
    print(f"{time.perf_counter() - t0:.1f} s; written {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
