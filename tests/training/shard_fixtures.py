"""Tiny but learnable stage shards written with the real `mixtures.shards.StageWriter`.

Documents come from a sparse random bigram chain (each token has two possible
successors), so a small model's loss falls fast and visibly within a few steps.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mixtures.shards import StageWriter

EOS = 1


def markov_docs(n_docs: int, seed: int, vocab: int, min_len: int = 5, max_len: int = 120) -> list:
    rng = np.random.default_rng(seed)
    successors = np.random.default_rng(0).integers(2, vocab, size=(vocab, 2))
    docs = []
    for _ in range(n_docs):
        doc = [int(rng.integers(2, vocab))]
        for choice in rng.integers(0, 2, size=int(rng.integers(min_len, max_len))):
            doc.append(int(successors[doc[-1], choice]))
        docs.append(doc + [EOS])
    return docs


def write_stage(
    stage_dir: Path, docs: list[list[int]], *, vocab: int, rows_per_shard: int = 40
) -> Path:
    tokenizer = {
        "path": "tokenizer.json",
        "sha256": "0" * 64,
        "vocab_size": vocab,
        "bos_id": 0,
        "eos_id": EOS,
    }
    n = len(docs)
    with StageWriter(
        stage_dir,
        stage=stage_dir.name,
        tokenizer=tokenizer,
        recipe={"test": True},
        seed=0,
        lineage={},
        rows_per_shard=rows_per_shard,
    ) as writer:
        writer.write(
            {
                "tokens": docs,
                "doc_id": [f"d{i}" for i in range(n)],
                "domain": ["web"] * n,
                "source": ["test"] * n,
                "quality_bucket": [1] * n,
                "cluster_size": [1] * n,
                "copy": [0] * n,
            }
        )
    return stage_dir


def write_mixture(root: Path, vocab: int = 256) -> Path:
    """Two stages, `broad` and `anneal`, laid out like `sharpen mix` output."""
    write_stage(root / "broad", markov_docs(400, seed=1, vocab=vocab), vocab=vocab)
    write_stage(root / "anneal", markov_docs(200, seed=2, vocab=vocab), vocab=vocab)
    return root
