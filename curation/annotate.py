"""One Python pass per valid document: heuristic filters, exact-dedup hash, quality score.

Grouping the per-document Python work into a single `mapInArrow` keeps the text from
crossing the JVM/Python boundary more than once for these signals.
"""

from __future__ import annotations

import hashlib

import pyarrow as pa

from curation.config import CurationConfig
from curation.dedup.minhash import normalize_for_hashing
from curation.filters.runner import evaluate
from curation.quality.heuristic_score import heuristic_quality

ANNOTATION_DDL = (
    "id string, source string, domain string, text string, meta string, n_chars long, "
    "removed_by string, heuristic_flags array<string>, norm_hash binary, quality_score double"
)
_SCHEMA = pa.schema([
    ("id", pa.string()), ("source", pa.string()), ("domain", pa.string()), ("text", pa.string()),
    ("meta", pa.string()), ("n_chars", pa.int64()), ("removed_by", pa.string()),
    ("heuristic_flags", pa.list_(pa.string())), ("norm_hash", pa.binary()),
    ("quality_score", pa.float64()),
])


def norm_hash(text: str) -> bytes:
    """128-bit hash of the normalised text: the exact-duplicate key."""
    return hashlib.blake2b(normalize_for_hashing(text).encode(), digest_size=16).digest()


def annotate_batches(batches, cfg: CurationConfig):
    """mapInArrow body: documents in, the same documents plus their signals out (the
    text passes through, replaced only when a filter is configured to rewrite it)."""
    for batch in batches:
        texts = batch.column("text").to_pylist()
        domains = batch.column("domain").to_pylist()
        results = evaluate(texts, domains, cfg.filters)
        final = [r.text if r.text is not None else t for r, t in zip(results, texts, strict=True)]
        yield pa.RecordBatch.from_pydict({
            "id": batch.column("id"),
            "source": batch.column("source"),
            "domain": batch.column("domain"),
            "text": final,
            "meta": batch.column("meta"),
            "n_chars": [len(t) for t in final],
            "removed_by": [r.removed_by for r in results],
            "heuristic_flags": [r.flags for r in results],
            "norm_hash": [norm_hash(t) for t in final],
            "quality_score": [heuristic_quality(t) for t in final],
        }, schema=_SCHEMA)
