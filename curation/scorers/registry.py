"""The scorer registry: every per-document signal of the curation job, in run order.

One list replaces what used to be kept by hand in three places (the rule sets, the
annotation schema and its Spark DDL): the annotation schema is the pass-through document
columns, `n_chars`, then each entry's declared columns; the DDL is derived from it. All
entries run in one `mapInArrow` pass (`annotate.py`), so the text crosses the JVM/Python
boundary once for all of them: the domain classifier, heuristic filters, language ID,
dedup keys (exact hash and MinHash LSH bands), heuristic quality, fastText quality, KenLM perplexity, the quality ensemble and
decontamination are all entries.
"""

from __future__ import annotations

import time

import pyarrow as pa

from curation.config import CurationConfig
from curation.scorers.base import DocBatch, Scorer
from curation.scorers.decontamination import Decontamination
from curation.scorers.dedup_keys import DedupKeys
from curation.scorers.domain_classifier import DomainClassifier
from curation.scorers.fasttext_quality import FastTextQuality
from curation.scorers.heuristic_filters import HeuristicFilters
from curation.scorers.heuristic_quality import HeuristicQuality
from curation.scorers.kenlm_perplexity import KenLMPerplexity
from curation.scorers.lang_id import LanguageId
from curation.scorers.quality_ensemble import QualityEnsemble

# Run order: the domain first (filters are chosen per domain), the language filter (the
# heuristic rules are English rules: a German page should be removed as German, not for
# lacking English stop words), the filters (which may rewrite the text), the signals on
# the final text, their ensemble, and decontamination.
ENTRIES: tuple[type[Scorer], ...] = (DomainClassifier, LanguageId, HeuristicFilters, DedupKeys,
                                      HeuristicQuality, FastTextQuality, KenLMPerplexity,
                                      QualityEnsemble, Decontamination)
# The quality entries. `sharpen curate dedup` needs quality only to choose the copy a
# cluster keeps, so it defers these to the documents of multi-member clusters
# (`curation/dedup/keeper_quality.py`) instead of scoring every document.
QUALITY_ENTRIES: tuple[type[Scorer], ...] = (HeuristicQuality, FastTextQuality, KenLMPerplexity,
                                              QualityEnsemble)
# Decision columns, owned by the registry: any entry may return them, the first removal
# wins (`removed_by`), flags accumulate (`heuristic_flags`).
DECISION_FIELDS = (pa.field("removed_by", pa.string()),
                   pa.field("heuristic_flags", pa.list_(pa.string())))
DECISIONS = {f.name for f in DECISION_FIELDS}
PASS_THROUGH = (pa.field("id", pa.string()), pa.field("source", pa.string()),
                pa.field("domain", pa.string()), pa.field("text", pa.string()),
                pa.field("meta", pa.string()), pa.field("n_chars", pa.int64()))

_DDL_TYPES = {pa.string(): "string", pa.int64(): "long", pa.int32(): "int",
              pa.float64(): "double", pa.float32(): "float", pa.binary(): "binary",
              pa.bool_(): "boolean"}


def build_scorers(cfg: CurationConfig, check: bool = True,
                  entries: tuple[type[Scorer], ...] | None = None) -> list[Scorer]:
    """The entries for this config, checked: unique column names, reads satisfied by an
    earlier entry, and (`check`, on the driver) each entry's own `check()`: packages
    importable, models and reference files readable. `entries`: only these (in run
    order); all by default."""
    scorers, seen = [], {f.name for f in (*PASS_THROUGH, *DECISION_FIELDS)}
    for entry in ENTRIES:
        if entries is not None and entry not in entries:
            continue
        scorer = entry(cfg)
        missing = [c for c in entry.reads if c not in seen]
        if missing:
            raise ValueError(f"scorer {entry.name} reads {missing}, which no earlier entry adds")
        clash = [f.name for f in entry.columns if f.name in seen]
        if clash:
            raise ValueError(f"scorer {entry.name} adds columns {clash} that already exist")
        if check:
            scorer.check()
        seen |= {f.name for f in entry.columns}
        scorers.append(scorer)
    return scorers


def annotation_schema(scorers: list[Scorer]) -> pa.Schema:
    """The annotated stage's columns. The text is one of them only when an entry may
    rewrite it: otherwise it equals the validated text, and writing it again would cost
    as much as the stage's signals (the job reads it from `validated` instead)."""
    fields = [f for f in PASS_THROUGH
              if f.name != "text" or any(s.rewrites_text for s in scorers)]
    return pa.schema([*fields, *DECISION_FIELDS, *(f for s in scorers for f in s.columns)])


def spark_ddl(schema: pa.Schema) -> str:
    """Spark DDL of an Arrow schema (the types the scorers use)."""
    def ddl(t: pa.DataType) -> str:
        if pa.types.is_list(t):
            return f"array<{ddl(t.value_type)}>"
        if t not in _DDL_TYPES:
            raise TypeError(f"no Spark type for Arrow {t}")
        return _DDL_TYPES[t]

    return ", ".join(f"{f.name} {ddl(f.type)}" for f in schema)


def score_batch(scorers: list[Scorer], batch: pa.RecordBatch, schema: pa.Schema,
                timings: dict[str, float] | None = None) -> pa.RecordBatch:
    """Run every entry on one Arrow batch of documents; returns the annotated batch.
    With `timings`, each entry's seconds are added to `timings[entry name]`."""
    docs = DocBatch(batch.column("text").to_pylist(), batch.column("domain").to_pylist())
    n = batch.num_rows
    docs.columns.update(domain_given=[d is not None for d in docs.domains],
                        removed_by=[None] * n, heuristic_flags=[[] for _ in range(n)])
    for scorer in scorers:
        t = time.perf_counter()
        out = scorer.score(docs)
        if timings is not None:
            timings[scorer.name] = timings.get(scorer.name, 0.0) + time.perf_counter() - t
        if scorer.rewrites_text and "text" in out:
            docs.texts = out.pop("text")
        if scorer.rewrites_domain and "domain" in out:
            docs.domains = out.pop("domain")
        for name in DECISIONS & set(out):
            mine, before = out.pop(name), docs.columns[name]
            docs.columns[name] = ([b if b is not None else m for b, m in zip(before, mine, strict=True)]
                                  if name == "removed_by" else
                                  [b + m for b, m in zip(before, mine, strict=True)])
        docs.columns.update(out)
    cols = {f.name: batch.column(f.name) for f in PASS_THROUGH[:5]
            if f.name not in ("text", "domain")}
    cols["text"] = docs.texts
    cols["domain"] = [d if d is not None else "" for d in docs.domains]
    cols["n_chars"] = [len(t) for t in docs.texts]
    cols.update(docs.columns)
    return pa.RecordBatch.from_pydict({n: cols[n] for n in schema.names}, schema=schema)
