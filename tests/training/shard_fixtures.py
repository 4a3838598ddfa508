"""Tiny but learnable stage shards written with the real `mixtures.shards.StageWriter`.

Documents come from a sparse random bigram chain (each token has two possible
successors), so a small model's loss falls fast and visibly within a few steps.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mixtures.shard_format import SHARD_PATTERN as SHARD_NAME
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
    stage_dir: Path,
    docs: list[list[int]],
    *,
    vocab: int,
    rows_per_shard: int = 40,
    domains: list[str] | None = None,
    tokenizer: dict | None = None,
) -> Path:
    """Write docs in order as one stage; `domains` (one per doc) defaults to all "web";
    `tokenizer` (the manifest entry) defaults to one whose file does not exist."""
    tokenizer = tokenizer or {
        "path": "tokenizer.json",
        "sha256": "0" * 64,
        "vocab_size": vocab,
        "bos_id": 0,
        "eos_id": EOS,
    }
    n = len(docs)
    domains = ["web"] * n if domains is None else domains
    if len(domains) != n:
        raise ValueError(f"write_stage: {len(domains)} domains for {n} docs")
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
                "domain": domains,
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


def write_tokenized_mixture(root: Path) -> Path:
    """`write_mixture` with a real tokenizer file (so the stage-end passkey probe runs: a
    byte-level BPE trained on the probe's own sentences) and three domains."""
    from mixtures.tokenizer import save_tokenizer, sha256_file, train_bpe
    from training.eval.passkey import FILLER, NEEDLE, QUESTION

    texts = [" ".join(FILLER), QUESTION] + [NEEDLE.format(key=k) for k in range(100, 999, 7)]
    path = save_tokenizer(
        train_bpe(texts * 3, vocab_size=320, min_frequency=1), root / "tokenizer" / "tokenizer.json"
    )
    from mixtures.tokenizer import load_tokenizer

    vocab = load_tokenizer(path).get_vocab_size()
    info = {
        "path": "../tokenizer/tokenizer.json",
        "sha256": sha256_file(path),
        "vocab_size": vocab,
        "bos_id": 0,
        "eos_id": EOS,
    }
    for name, n, seed in (("broad", 400, 1), ("anneal", 200, 2)):
        domains = [("code", "math", "web")[i % 3] for i in range(n)]
        docs = markov_docs(n, seed=seed, vocab=vocab)
        write_stage(root / name, docs, vocab=vocab, domains=domains, tokenizer=info)
    return root


def corrupt_token(stage_dir: Path, shard: int) -> Path:
    """Flip the low bit of the first token of a shard's first document, in place.

    The file keeps its size, Arrow footer and list offsets (the cheap checks at open
    pass) and the token stays inside the vocab; only its sha256 can tell.
    """
    from mixtures.shards import StageShards

    values, _ = StageShards.open(stage_dir, verify=False).tokens(shard)
    path = stage_dir / SHARD_NAME.format(shard)
    data = bytearray(path.read_bytes())
    at = data.find(values[:8].tobytes())
    assert at >= 0 and data.find(values[:8].tobytes(), at + 1) < 0, "token run is not unique"
    data[at] ^= 1
    path.write_bytes(bytes(data))
    return path
