"""Dedup quality on the labelled set: pair recall, removal precision, wrong removals.

Runs `run_curation(mode="dedup")` for a few configs (default: threshold 0.7, 256 perms,
verification on; verification off; threshold 0.8) and scores each against exact Jaccard:
- recall at J >= 0.8 (and >= 0.7): a truth pair is found when both ends share a cluster_id;
- wrong removals: a removed document whose best exact Jaccard to a KEPT member of its
  cluster is below 0.5, as a fraction of removed documents (acceptance: <= 0.5%);
- removal precision: removed documents whose best Jaccard to a kept member reaches the
  configured threshold.
The named peer is the exact-Jaccard truth itself (recall/precision are ratios against it).

Run: .venv/bin/python -m benchmarks.dedup_quality [--labelled benchmarks/out/labelled]
(build the set first with `python -m benchmarks.dedup_labelled_set`).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from benchmarks.dedup_labelled_set import REPO, jaccard, shingle_sets
from curation.config import CurationConfig
from curation.dedup.minhash import ShingleSpec

log = logging.getLogger(__name__)

VARIANTS: dict[str, dict] = {
    "default (t=0.7, verify on)": {},
    "t=0.7, verify off": {"verify": False},
    "t=0.8, verify on": {"threshold": 0.8},
}
WRONG_BELOW = 0.5


def read_docs(path: Path) -> tuple[list[str], list[str]]:
    ids, texts = [], []
    with path.open(encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            ids.append(rec["id"])
            texts.append(rec["text"])
    return ids, texts


def _set_jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Exact Jaccard; two empty sets (same empty normalised text) count as identical."""
    return 1.0 if a.size == 0 and b.size == 0 else jaccard(a, b)


def score(dedup: dict[str, list], truth: dict[str, list], sets: dict[str, np.ndarray],
          threshold: float) -> dict:
    """Metrics of one dedup output (columns id, cluster_id, keep, reason) against the truth."""
    cluster = dict(zip(dedup["id"], dedup["cluster_id"], strict=True))
    kept_by_cluster: dict[int, list[str]] = {}
    removed: list[tuple[str, int, str]] = []
    for i, c, keep, reason in zip(dedup["id"], dedup["cluster_id"], dedup["keep"], dedup["reason"],
                                  strict=True):
        if c is None:
            continue  # quarantined: not part of dedup
        if keep:
            kept_by_cluster.setdefault(c, []).append(i)
        else:
            removed.append((i, c, reason))
    missing = set(sets) - set(cluster)
    if missing:
        raise ValueError(f"dedup output lacks {len(missing)} input ids, e.g. {sorted(missing)[:3]}")

    out: dict = {"documents": len(cluster), "removed": len(removed),
                 "removed_exact": sum(r == "exact_dup" for _, _, r in removed),
                 "removed_near": sum(r == "near_dup" for _, _, r in removed)}
    sizes: dict[int, int] = {}
    for c in cluster.values():
        sizes[c] = sizes.get(c, 0) + 1
    out["multi_member_clusters"] = sum(1 for n in sizes.values() if n > 1)
    out["largest_cluster"] = max(sizes.values()) if sizes else 0

    js = np.asarray(truth["jaccard"], dtype=float)
    same = np.array([cluster.get(a) is not None and cluster.get(a) == cluster.get(b)
                     for a, b in zip(truth["id_a"], truth["id_b"], strict=True)], dtype=bool)
    near = (js >= 0.8) & (js < 1.0)  # the set is rich in exact copies: score near ones apart
    out["truth_pairs_0.8_to_1"] = int(near.sum())
    out["recall_0.8_to_1"] = float(same[near].mean()) if near.any() else 1.0
    for t in (0.8, 0.7):
        sel = js >= t
        out[f"truth_pairs_ge_{t}"] = int(sel.sum())
        out[f"recall_ge_{t}"] = float(same[sel].mean()) if sel.any() else 1.0
        out[f"missed_pairs_ge_{t}"] = int((~same[sel]).sum())
    missed = [(a, b, j) for a, b, j, s in zip(truth["id_a"], truth["id_b"], js, same, strict=True)
              if j >= 0.8 and not s]
    out["missed_examples_ge_0.8"] = [f"{a} ~ {b} (J={j:.3f})" for a, b, j in
                                     sorted(missed, key=lambda m: -m[2])[:5]]

    best = np.array([max(_set_jaccard(sets[i], sets[k]) for k in kept_by_cluster.get(c, []))
                     if kept_by_cluster.get(c) else 0.0 for i, c, _ in removed])
    n_rm = max(len(removed), 1)
    out["wrong_removals"] = int((best < WRONG_BELOW).sum())
    out["wrong_removal_rate"] = float((best < WRONG_BELOW).sum() / n_rm)
    out["removal_precision_at_threshold"] = float((best >= threshold).sum() / n_rm)
    out["removed_best_j_hist"] = {f"[{lo:.1f},{lo + 0.1:.1f})": int(((best >= lo) & (best < lo + 0.1)).sum())
                                  for lo in np.arange(0.0, 1.0, 0.1).round(1)} | {
                                      "1.0": int((best >= 1.0).sum())}
    worst = sorted(zip(best, removed, strict=True), key=lambda x: x[0])[:5]
    out["wrong_examples"] = [f"{r[0]} kept={kept_by_cluster.get(r[1], ['?'])[0]} J={b:.3f}"
                             for b, r in worst if b < WRONG_BELOW]
    return out


def run_variant(docs_path: Path, out_dir: Path, overrides: dict, master: str) -> tuple[dict, float]:
    from curation.pipeline import run_curation

    cfg = CurationConfig()
    cfg = cfg.model_copy(update={"dedup": cfg.dedup.model_copy(update=overrides)})
    cfg = CurationConfig.model_validate(cfg.model_dump())  # re-validate the overrides
    started = time.perf_counter()
    stats = run_curation([str(docs_path)], str(out_dir), cfg, master=master, mode="dedup")
    return stats, time.perf_counter() - started


def read_dedup(out_dir: Path) -> dict[str, list]:
    return pq.read_table(out_dir / "dedup", columns=["id", "cluster_id", "keep", "reason"]).to_pydict()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--labelled", type=Path, default=REPO / "benchmarks/out/labelled")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks/out/quality")
    ap.add_argument("--master", default="local[2]")
    ap.add_argument("--score-only", action="store_true",
                    help="re-score existing outputs under --out without running Spark")
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    ids, texts = read_docs(args.labelled / "docs.jsonl")
    sets = dict(zip(ids, shingle_sets(texts, ShingleSpec("word", 5)), strict=True))
    truth = pq.read_table(args.labelled / "truth_pairs.parquet").to_pydict()
    results = {}
    for k, name in enumerate(args.variants):
        out_dir = args.out / f"variant_{k}"
        if args.score_only:
            stats = json.loads((out_dir / "stats.json").read_text())
            seconds = stats["seconds"]
        else:
            stats, seconds = run_variant(args.labelled / "docs.jsonl", out_dir, VARIANTS[name],
                                         args.master)
        threshold = stats["lsh"]["threshold"]
        res = score(read_dedup(out_dir), truth, sets, threshold)
        res.update(seconds=round(seconds, 1), lsh=stats["lsh"]["description"], dedup_stats=stats["dedup"])
        res["meets_acceptance"] = bool(res["recall_ge_0.8"] >= 0.95 and res["wrong_removal_rate"] <= 0.005)
        results[name] = res
        log.info("%s: %s", name, json.dumps({k2: v for k2, v in res.items()
                                                if not isinstance(v, (list, dict))}))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "quality.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"{'variant':32} {'recall@0.8':>10} {'near-only':>9} {'recall@0.7':>10} {'removed':>8} "
          f"{'wrong<0.5':>9} {'wrong %':>8} {'prec@t':>7} {'seconds':>8} meets")
    for name, r in results.items():
        print(f"{name:32} {r['recall_ge_0.8']:10.4f} {r['recall_0.8_to_1']:9.4f} "
              f"{r['recall_ge_0.7']:10.4f} {r['removed']:8d} "
              f"{r['wrong_removals']:9d} {100 * r['wrong_removal_rate']:7.3f}% "
              f"{r['removal_precision_at_threshold']:7.4f} {r['seconds']:8.1f} {r['meets_acceptance']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
