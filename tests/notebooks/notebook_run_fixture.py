"""A small but real run directory in the layout `sharpen demo` writes, built without Spark or torchrun.

- ``curate/``: the mixtures test corpus (stdlib code, docstrings, licences, Debian copyright
  files with real exact-duplicate clusters) run through the real heuristic filters
  (``curation.filters.evaluate``) and quality score; invalid raw lines run through the real
  ``RecordParser``. Written in the curated-output layout (``curation/outputs.py``) with a
  ``stats.json`` whose counts are computed from those rows, as ``curation/stats.py`` does.
- ``mix/``: ``mixtures.materialize.run_mix`` on that curated table with a tiny recipe.
- ``train/``: ``metrics.jsonl`` written by ``training.metrics.MetricsWriter`` and
  ``summary.json`` from ``training.metrics.summarize`` (the trainer's own code). The loss and
  throughput values are a seeded stand-in for a training run: only the format is under test.
"""

from __future__ import annotations

import glob
import hashlib
import json
import math
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import yaml
from mix_corpus_fixture import corpus_rows

from curation.config import CurationConfig
from curation.filters import evaluate, rule_names
from curation.io.record_parser import RecordParser
from curation.quality.heuristic_score import heuristic_quality
from mixtures.materialize import run_mix
from training.metrics import MetricsWriter, read_metrics, summarize

# Raw lines that the real validator quarantines (one per reason, two malformed).
BAD_LINES = [
    b'{"text": "unterminated',
    b'{"id": "m2", "text": ',
    b"[1, 2, 3]",
    b'{"id": "no-text", "source": "web"}',
    b'{"id": "num", "text": 42}',
    b'{"id": "blank", "text": "   \\n "}',
    b'{"id": "bytes", "text": "caf\xe9"}',
    b'{"id": "nul", "text": "a\\u0000b"}',
]

REMOVED_SCHEMA = pa.schema([
    ("id", pa.string()), ("source", pa.string()), ("domain", pa.string()),
    ("reason", pa.string()), ("duplicate_of", pa.string()), ("cluster_id", pa.int64()),
    ("text", pa.string()),
])
QUARANTINE_SCHEMA = pa.schema([
    ("reason", pa.string()), ("detail", pa.string()), ("file", pa.string()),
    ("block", pa.int64()), ("pos", pa.int64()), ("id", pa.string()), ("raw", pa.string()),
])
DEDUP_SCHEMA = pa.schema([
    ("id", pa.string()), ("cluster_id", pa.int64()), ("cluster_size", pa.int64()),
    ("n_sources", pa.int64()), ("exact_dup_count", pa.int64()), ("keep", pa.bool_()),
    ("reason", pa.string()), ("duplicate_of", pa.string()),
])
CURATED_SCHEMA = pa.schema([
    ("id", pa.string()), ("source", pa.string()), ("domain", pa.string()), ("text", pa.string()),
    ("n_chars", pa.int64()), ("lang", pa.string()), ("exact_dup_count", pa.int64()),
    ("cluster_id", pa.int64()), ("cluster_size", pa.int64()), ("n_sources", pa.int64()),
    ("quality_fasttext", pa.float64()), ("quality_kenlm_ppl", pa.float64()),
    ("heuristic_flags", pa.list_(pa.string())), ("quality_score", pa.float64()),
    ("quality_bucket", pa.int32()), ("meta", pa.string()),
])


def copyright_members() -> dict[str, list[str]]:
    """Keeper id -> all member ids of each copyright cluster, grouped as the corpus fixture does."""
    clusters: dict[str, list[str]] = defaultdict(list)
    for path in sorted(glob.glob("/usr/share/doc/*/copyright"))[:400]:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        clusters[hashlib.sha1(text.encode()).hexdigest()].append(Path(path).parent.name)
    return {
        f"copyright:{min(m)}": sorted(f"copyright:{x}" for x in m) for m in clusters.values()
    }


def _write(rows: list[dict], schema: pa.Schema, path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path / "part-00000.parquet")


def write_curate(out: Path) -> dict:
    """Curated table, removed/, quarantine/, dedup/ and a reconciled stats.json under ``out``."""
    cfg = CurationConfig()
    rows = corpus_rows()
    results = evaluate([r["text"] for r in rows], [r["domain"] for r in rows], cfg.filters)
    members = copyright_members()
    keeper_ids = sorted(r["id"] for r in rows)
    cluster_of = {doc_id: k for k, doc_id in enumerate(keeper_ids)}  # dense keys in id order

    curated, removed, dedup = [], [], []
    for row, res in zip(rows, results, strict=True):
        ids = members.get(row["id"], [row["id"]])
        if len(ids) != row["cluster_size"]:
            raise ValueError(f"{row['id']}: {len(ids)} members, cluster_size {row['cluster_size']}")
        if res.removed_by is not None:  # filters run before dedup: every copy is removed
            removed += [
                {"id": i, "source": row["source"], "domain": row["domain"],
                 "reason": f"filter:{res.removed_by}", "duplicate_of": None, "cluster_id": None,
                 "text": row["text"]}
                for i in ids
            ]
            continue
        cid, size = cluster_of[row["id"]], row["cluster_size"]
        for i in ids:
            keep = i == row["id"]
            dedup.append({"id": i, "cluster_id": cid, "cluster_size": size, "n_sources": 1,
                          "exact_dup_count": size, "keep": keep,
                          "reason": None if keep else "exact_dup",
                          "duplicate_of": None if keep else row["id"]})
            if not keep:
                removed.append({"id": i, "source": row["source"], "domain": row["domain"],
                                "reason": "exact_dup", "duplicate_of": row["id"],
                                "cluster_id": cid, "text": row["text"]})
        curated.append({
            "id": row["id"], "source": row["source"], "domain": row["domain"],
            "text": row["text"], "n_chars": row["n_chars"], "lang": None,
            "exact_dup_count": size, "cluster_id": cid, "cluster_size": size, "n_sources": 1,
            "quality_fasttext": None, "quality_kenlm_ppl": None,
            "heuristic_flags": list(res.flags), "quality_score": heuristic_quality(row["text"]),
            "quality_bucket": row["quality_bucket"], "meta": None,
        })

    parser = RecordParser(cfg)
    quarantine = []
    for pos, line in enumerate(BAD_LINES):
        bad = parser.parse(line, "raw/bad.jsonl")
        if bad.get("q_reason") is None:
            raise ValueError(f"BAD_LINES[{pos}] {line!r} passed validation")
        quarantine.append({"reason": bad["q_reason"], "detail": bad["q_detail"],
                           "file": "raw/bad.jsonl", "block": 0, "pos": pos, "id": bad["id"],
                           "raw": bad["q_raw"]})

    ds.write_dataset(
        pa.Table.from_pylist(sorted(curated, key=lambda r: r["id"]), schema=CURATED_SCHEMA),
        out / "curated", format="parquet", basename_template="part-{i}.parquet",
        partitioning=ds.partitioning(pa.schema([("domain", pa.string())]), flavor="hive"),
    )
    _write(sorted(removed, key=lambda r: r["id"]), REMOVED_SCHEMA, out / "removed")
    _write(quarantine, QUARANTINE_SCHEMA, out / "quarantine")
    _write(sorted(dedup, key=lambda r: r["id"]), DEDUP_SCHEMA, out / "dedup")

    by_rule = dict.fromkeys(rule_names(cfg.filters), 0)
    by_rule.update(Counter(r["reason"][len("filter:"):] for r in removed
                           if r["reason"].startswith("filter:")))
    sizes = [r["cluster_size"] for r in curated]
    n_exact = sum(r["reason"] == "exact_dup" for r in removed)
    stats = {
        "mode": "full",
        "inputs": ["fixture:mix_corpus_fixture", "raw/bad.jsonl"],
        "output": str(out),
        "counts": {"input": len(curated) + len(removed) + len(quarantine), "kept": len(curated),
                   "removed": len(removed), "quarantined": len(quarantine), "reconciled": True},
        "quarantined_by_reason": dict(sorted(Counter(q["reason"] for q in quarantine).items())),
        "removed_by_filter": dict(sorted(by_rule.items())),
        "flagged_by_rule": dict(sorted(Counter(f for r in curated
                                               for f in r["heuristic_flags"]).items())),
        "removed_exact_dup": n_exact,
        "removed_near_dup": 0,
        "kept_by_domain": dict(sorted(Counter(r["domain"] for r in curated).items())),
        "clusters": {"largest": max(sizes), "multi_member": sum(s > 1 for s in sizes),
                     "docs_in_multi_member": sum(s for s in sizes if s > 1)},
    }
    (out / "stats.json").write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")
    return stats


def tiny_recipe(domains: list[str]) -> dict:
    """Two stages (broad, then a sharper anneal) over the domains the curated table has."""
    broad = {d: 1 / len(domains) for d in domains}
    sharp = [d for d in ("code", "math", "reference") if d in domains] or domains
    return {
        "seed": 7,
        "rows_per_shard": 96,
        "tokenizer": {"vocab_size": 300, "sample_bytes": 200_000},
        "stages": [
            {"name": "broad", "token_budget": 100_000, "domain_shares": broad,
             "quality_bucket_weights": {0: 0.5, 3: 1.5}, "max_doc_tokens": 512},
            {"name": "anneal", "token_budget": 60_000,
             "domain_shares": {d: 1 / len(sharp) for d in sharp},
             "min_quality_bucket": 1, "repeat_cap": 3, "max_doc_tokens": 512},
        ],
    }


def write_train(out: Path, steps: dict[str, int], seed: int = 0) -> dict:
    """metrics.jsonl + summary.json via the trainer's writer; a warmup-stable-decay LR."""
    rng = np.random.default_rng(seed)
    writer = MetricsWriter(out / "metrics.jsonl", enabled=True)
    step, loss, tokens_per_step = 0, math.log(300), 2 * 4 * 64
    peak, warmup = 3e-3, 3
    for i, (stage, n) in enumerate(steps.items()):
        for s in range(1, n + 1):
            step += 1
            if i == 0:
                lr = peak * min(1.0, s / warmup)
            else:  # anneal: linear decay from the previous stage's LR
                lr = peak + (3e-5 - peak) * s / n
            loss = 0.93 * loss + 0.07 * 2.5 + float(rng.normal(0, 0.02))
            writer.log({"step": step, "stage": stage, "stage_step": s, "loss": loss, "lr": lr,
                        "tokens_per_s": float(tokens_per_step / rng.uniform(0.08, 0.12)),
                        "grad_norm": float(rng.uniform(0.5, 2.0)), "tokens": tokens_per_step})
    writer.close()
    summary = summarize(read_metrics(out / "metrics.jsonl"))
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    for stage in steps:
        (out / "checkpoints" / stage).mkdir(parents=True, exist_ok=True)
    return summary


def build_run(run: Path) -> Path:
    """curate/, mix/ and train/ under ``run`` in the layout `sharpen demo` writes."""
    stats = write_curate(run / "curate")
    recipe = run / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe(sorted(stats["kept_by_domain"]))))
    run_mix(str(run / "curate"), str(recipe), str(run / "mix"))
    write_train(run / "train", {"pretrain": 24, "anneal": 12})
    return run
