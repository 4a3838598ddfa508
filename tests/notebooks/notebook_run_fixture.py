"""A small run directory in the layout `sharpen demo` writes, made by the real stages.

- ``curate/``: ``run_curation`` (Spark, default config: heuristic filters and quality score,
  exact and MinHash dedup) on a subset of ``data/sample``, every domain, plus a file of
  invalid raw lines that validation quarantines.
- ``mix/``: ``run_mix`` on that curated table with a tiny two-stage recipe.
- ``train/``: ``run_training`` (torchrun, one CPU rank) of a tiny model over both stages.

It costs about 35 s on two cores, most of it Spark.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from pathlib import Path

import yaml

from curation.config import CurationConfig
from curation.pipeline import run_curation
from mixtures.materialize import run_mix
from training.cli import run_training

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample"
DOMAINS = ("web", "code", "math", "books", "reference")

# Raw lines that the real validator quarantines (two malformed, the rest one per reason).
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

# A tiny model, a few dozen steps per stage: the curves are real, the run takes seconds.
TRAIN_PLAN = """
model: {dim: 64, n_layers: 2, n_heads: 4, n_kv_heads: 2, ffn_hidden: 128, max_seq_len: 64}
seed: 3
stages:
  - {name: pretrain, data: broad, steps: 30, seq_len: 64, batch_size: 4, lr: 0.01,
     min_lr: 0.001, warmup_steps: 3}
  - {name: anneal, data: anneal, steps: 15, seq_len: 64, batch_size: 4, lr: null,
     min_lr: 0.0005, decay_fraction: 1.0}
"""


def copy_key(doc_id: str) -> str:
    """The file a document came from, without its package or compression suffix: the
    stdlib's two builds and the kernel docs' .rst.txt / .rst.gz twins share it."""
    tail = doc_id.split("/")[-2:]
    tail[-1] = re.sub(r"(\.(gz|txt))+$", "", tail[-1])
    return "/".join(tail)


def write_sample_subset(raw: Path, per_domain: int = 40, max_chars: int = 8000) -> None:
    """`per_domain` short documents per domain of data/sample, chosen by a hash of their id,
    each with its natural copies (same text, or same file in another package), so that
    dedup finds real exact and near duplicates; plus ``bad.jsonl`` for the quarantine."""
    raw.mkdir(parents=True, exist_ok=True)
    for domain in DOMAINS:
        with gzip.open(SAMPLE / f"{domain}.jsonl.gz", "rt", encoding="utf-8") as f:
            records = [json.loads(line) for line in f]
        short = sorted(
            (r for r in records if 300 <= len(r["text"]) <= max_chars),
            key=lambda r: hashlib.sha1(r["id"].encode()).hexdigest(),
        )[:per_domain]
        keys, texts = {copy_key(r["id"]) for r in short}, {r["text"] for r in short}
        picked = [r for r in records if copy_key(r["id"]) in keys or r["text"] in texts]
        (raw / f"{domain}.jsonl").write_text(
            "".join(json.dumps(r) + "\n" for r in picked), encoding="utf-8"
        )
    (raw / "bad.jsonl").write_bytes(b"\n".join(BAD_LINES) + b"\n")


def tiny_recipe(domains: list[str]) -> dict:
    """Two stages (broad, then a sharper anneal) over the domains the curated table has."""
    broad = {d: 1 / len(domains) for d in domains}
    sharp = [d for d in ("code", "math", "reference") if d in domains] or domains
    return {
        "seed": 7,
        "shard_tokens": 20_000,
        "tokenizer": {"vocab_size": 300, "sample_bytes": 200_000},
        "stages": [
            {
                "name": "broad",
                "token_budget": 100_000,
                "domain_shares": broad,
                "quality_bucket_weights": {0: 0.5, 3: 1.5},
                "max_doc_tokens": 512,
            },
            {
                "name": "anneal",
                "token_budget": 60_000,
                "domain_shares": {d: 1 / len(sharp) for d in sharp},
                "min_quality_bucket": 1,
                "repeat_cap": 3,
                "max_doc_tokens": 512,
            },
        ],
    }


def build_run(run: Path) -> Path:
    """curate/, mix/ and train/ under ``run``; Spark runs in the active session if any."""
    write_sample_subset(run / "raw")
    stats = run_curation(
        [str(run / "raw")], str(run / "curate"), CurationConfig(shuffle_partitions=4)
    )
    recipe = run / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe(sorted(stats["kept_by_domain"]))))
    run_mix(str(run / "curate"), str(recipe), str(run / "mix"))
    (run / "plan.yaml").write_text(TRAIN_PLAN)
    run_training(run / "plan.yaml", run / "mix", run / "train", nproc=1)
    return run
