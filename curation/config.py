"""Typed configuration of a curation job, validated at load (YAML or Python).

Every field is documented here once; `sharpen curate --config FILE.yaml` takes any subset.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from curation.filters.config import FilterConfig


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ValidationConfig(_Strict):
    max_text_chars: int = Field(2_000_000, gt=0, description="Longer texts are quarantined (`text_too_large`).")
    max_record_bytes: int = Field(32 << 20, gt=0, description="A JSONL line longer than this many bytes is quarantined as `text_too_large` without being decoded: it is skipped in 1 MiB pieces and only `raw_preview_bytes` of it are kept, so no record can exhaust a Python worker or the JVM heap. The default (32 MiB) admits any `max_text_chars` text even with every character escaped.")
    max_control_fraction: float = Field(0.05, ge=0, le=1, description="Texts with a NUL byte or more than this fraction of control characters (other than tab/newline) are quarantined as `binary_text`.")
    raw_preview_bytes: int = Field(2048, ge=0, description="How much of a bad record's raw bytes the quarantine row keeps.")


class DedupConfig(_Strict):
    exact: bool = Field(True, description="Remove exact duplicates of the normalised text (NFKC, lower case, punctuation and whitespace folded).")
    near: bool = Field(True, description="Remove near duplicates with MinHash LSH + connected components.")
    shingle: str = Field("word", pattern="^(word|char)$", description="Shingle unit: `word` n-grams or `char` n-grams (over UTF-8 bytes).")
    ngram: int = Field(5, ge=1, le=64, description="Shingle length in units (datatrove and text-dedup use 5 words; NeMo 24 chars).")
    num_perm: int = Field(256, ge=8, le=1024, description="MinHash permutations.")
    seed: int = Field(42, description="Seed of the MinHash permutations.")
    threshold: float = Field(0.7, gt=0, lt=1, description="Target Jaccard similarity for near duplicates.")
    bands: int | None = Field(None, ge=1, description="Override the LSH bands (with `rows`); default: chosen from `threshold`.")
    rows: int | None = Field(None, ge=1, description="Override the LSH rows per band (with `bands`).")
    false_positive_weight: float = Field(0.05, ge=0, description="Weight of the false-positive area when choosing bands/rows. Far lower than the false-negative weight by default because verification removes false positives afterwards (they cost only checks): at threshold 0.7 and 256 perms this picks 36 bands x 7 rows, P(candidate | J=0.7) = 0.955, recall >= 0.99 on the planted pairs of the 1 GB benchmark corpus (0.3/0.7 picked 28 x 9: 0.68 and 0.976). Set 0.5/0.5 with `verify: false`.")
    false_negative_weight: float = Field(0.95, ge=0, description="Weight of the false-negative area when choosing bands/rows (missed duplicates cannot be recovered later).")
    verify: bool = Field(True, description="Check candidate edges with exact Jaccard of the shingle sets; drop those under `threshold`.")
    verify_max_pairs: int = Field(50_000_000, ge=0, description="Budget of exact-Jaccard checks; beyond it a deterministic hash-chosen subset is checked and the rest kept unverified (counted in stats).")
    verify_rounds: int = Field(3, ge=1, le=10, description="Rounds of re-starring: bucket members that fail verification against the bucket's smallest id are starred again among themselves.")
    max_cc_iterations: int = Field(60, ge=1, description="Safety limit on large-star/small-star rounds (each round at least halves long chains; convergence is checked).")

    @model_validator(mode="after")
    def _bands_rows_together(self) -> DedupConfig:
        if (self.bands is None) != (self.rows is None):
            raise ValueError("dedup.bands and dedup.rows must be given together")
        if self.bands and self.rows and self.bands * self.rows > self.num_perm:
            raise ValueError(f"dedup.bands*rows ({self.bands * self.rows}) exceeds num_perm ({self.num_perm})")
        return self


DEFAULT_DOMAINS = ["web", "code", "math", "books", "reference", "academic", "conversation"]


class DomainRule(_Strict):
    match: Literal["source", "path", "url"] = Field(description="What the pattern is matched against: the record's source, its input file path, or its `url` field.")
    pattern: str = Field(min_length=1, description="A Python regular expression, searched (not anchored) in that value.")
    domain: str = Field(min_length=1, description="The domain of a record this rule matches.")

    @model_validator(mode="after")
    def _compiles(self) -> DomainRule:
        try:
            re.compile(self.pattern)
        except re.error as e:
            raise ValueError(f"pattern {self.pattern!r} is not a regular expression: {e}") from None
        return self


class DecontaminationConfig(_Strict):
    eval_sets: dict[str, str] = Field(default_factory=dict, description="Evaluation set name -> JSONL(.gz) path (readable by every executor). Empty: no decontamination.")
    fields: list[str] = Field(["text"], min_length=1, description="Fields of an evaluation record whose text is matched (e.g. [question, answer]).")
    ngram: int = Field(13, ge=1, le=100, description="Word n-gram length (13: the GPT-3 report's test). Evaluation items shorter than this match as a whole.")
    min_matches: int = Field(1, ge=1, description="A document is contaminated by a set when it shares at least this many n-grams with it.")
    min_item_words: int = Field(8, ge=1, description="Evaluation items shorter than `ngram` words are matched whole, if they have at least this many words; shorter ones (too generic to mean contamination) are skipped.")
    action: Literal["remove", "flag"] = Field("remove", description="`remove`: removed_by = decontamination; `flag`: kept, with `decontamination:<set>` in heuristic_flags.")


QUALITY_SIGNALS = ("fasttext", "kenlm", "heuristic")


class QualityConfig(_Strict):
    buckets: int = Field(5, ge=1, le=100, description="Number of quality buckets. `quality_bucket` (0 = worst) is cut at global percentiles i/buckets of `quality_score` over every kept document of every domain, computed by Spark over the whole table, so a bucket means the same quality in every domain (a domain of worse text gets fewer top-bucket documents). The cut-offs and a bucket x domain table go into stats.json.")
    fasttext_model: str | None = Field(None, description="Model directory written by `sharpen curate train-quality` (model.bin + provenance.json). Adds `quality_fasttext`, the classifier's probability that the document is like the positive reference set. null: no fastText signal.")
    kenlm_model: str | None = Field(None, description="Model directory written by `sharpen curate train-kenlm` (model.binary + provenance.json). Adds `quality_kenlm_ppl`, CCNet's length-weighted per-document perplexity. null: no KenLM signal.")
    weights: dict[str, float] = Field(default_factory=lambda: {"fasttext": 0.6, "kenlm": 0.3, "heuristic": 0.1}, description="Weights of the ensemble `quality_score` = sum(w_s * q_s) / sum(w_s) over the signals s present (fasttext, kenlm, heuristic), each q_s in [0, 1]; see curation/quality/ensemble.py for how each signal is mapped to [0, 1]. A signal whose model is not configured drops out of both sums.")

    @model_validator(mode="after")
    def _known_signals(self) -> QualityConfig:
        bad = sorted(set(self.weights) - set(QUALITY_SIGNALS))
        if bad:
            raise ValueError(f"quality.weights: unknown signals {bad}; known: {list(QUALITY_SIGNALS)}")
        if any(w < 0 for w in self.weights.values()) or not any(self.weights.values()):
            raise ValueError("quality.weights: weights must be >= 0 and not all 0")
        return self


class LanguageConfig(_Strict):
    model: str | None = Field(None, description="Language-ID model directory written by `sharpen curate train-langid` (a fastText model; labels are language codes). Adds `lang` and `lang_score`. null: no language ID (`lang` stays null, nothing is removed).")
    languages: list[str] | None = Field(default_factory=lambda: ["en"], description="Languages to keep: a document identified as another language with `lang_score` >= `min_score` is removed with reason `filter:lang`. A document whose top language scores below `min_score` is kept (the model is unsure: short, technical or mixed text) and flagged `lang_uncertain` in heuristic_flags. null keeps every language (lang is still recorded).")
    min_score: float = Field(0.5, ge=0, le=1, description="Smallest `lang_score` (the model's probability of the top language) for a document to count as that language.")
    apply_to_domains: list[str] | None = Field(default_factory=lambda: ["web", "books", "reference", "academic", "conversation"], description="Domains whose documents are language-identified and filtered. Code and LaTeX are not natural language: a language-ID model reads identifiers and markup as some language, so by default their `lang` is null and they are not filtered. null: every domain.")


class DomainClassifierConfig(_Strict):
    model: str | None = Field(None, description="Domain classifier directory written by `sharpen curate train-domain` (fastText; labels are domains of the taxonomy). Used only for records whose domain neither the record, a rule nor `domain_by_source` gives; then `domain` is the predicted label. null: such records get `default_domain`.")
    min_score: float = Field(0.5, ge=0, le=1, description="Below this probability of the top label, the record gets `default_domain` instead of the prediction.")


class CurationConfig(_Strict):
    source_by_path: dict[str, str] = Field(default_factory=dict, description="Substring of an input file path -> source name, for records without `source`; otherwise the file name without extensions.")
    domains: list[str] = Field(default_factory=lambda: list(DEFAULT_DOMAINS), min_length=1, description="The domain taxonomy. A record whose own `domain` is outside it is quarantined (`unknown_domain`); every rule and mapping below must name one of these.")
    domain_rules: list[DomainRule] = Field(default_factory=list, description="For records without `domain`: the first rule whose pattern matches (source, input path or `url`) gives the domain, e.g. `{match: url, pattern: 'arxiv\\.org', domain: academic}`.")
    domain_by_source: dict[str, str] = Field(default_factory=dict, description="Source -> domain, for records without `domain` that no rule matched.")
    default_domain: str = Field("web", description="Domain of records with neither `domain`, a matching rule nor a mapped source.")
    source_priority: list[str] = Field(default_factory=list, description="Preferred sources first: a cluster keeps the best quality document, then the highest-priority source, then the smallest id.")
    validation: ValidationConfig = Field(default_factory=ValidationConfig, description="Record validation and quarantine.")
    filters: FilterConfig = Field(default_factory=FilterConfig, description="Heuristic filters (Gopher, C4, FineWeb rule sets).")
    dedup: DedupConfig = Field(default_factory=DedupConfig, description="Exact and near-duplicate removal.")
    quality: QualityConfig = Field(default_factory=QualityConfig, description="Quality bucketing.")
    language: LanguageConfig = Field(default_factory=LanguageConfig, description="Language identification and the language filter.")
    domain_classifier: DomainClassifierConfig = Field(default_factory=DomainClassifierConfig, description="The fastText domain classifier, the last resort of domain assignment.")
    decontamination: DecontaminationConfig = Field(default_factory=DecontaminationConfig, description="Removal or flagging of documents that overlap evaluation sets.")
    shuffle_partitions: int | None = Field(None, ge=1, description="Spark shuffle width. Unset: from the input files' total size (`shuffle_width`): 2 under 64 MiB, 4 under 128 MiB, else 8. Either way a rule of the config and the data, never of the cluster, so outputs are byte-identical run to run and across masters; set it (e.g. 2-4 per core) for inputs of many GB (docs/scaling.md).")
    output_files_per_domain: int = Field(1, ge=1, description="Parquet files per domain in the curated table.")
    input_split_mb: int = Field(64, ge=1, description="Uncompressed JSONL files are read in byte-range splits of this size, gzip files whole; a parsing task reads about this many bytes (smaller files share one, so fewer when the input is small enough to leave cores idle).")
    spark: dict[str, str] = Field(default_factory=dict, description="Any `spark.*` setting, e.g. `spark.driver.memory: 8g`; `--conf KEY=VALUE` on the command line wins. Each is checked to have reached the running JVM (see curation/spark_session.py for the defaults and what they mean for input size).")

    @model_validator(mode="after")
    def _domains_in_taxonomy(self) -> CurationConfig:
        named = {"default_domain": [self.default_domain],
                 "domain_by_source": list(self.domain_by_source.values()),
                 "domain_rules": [r.domain for r in self.domain_rules],
                 "filters.by_domain": list(self.filters.by_domain)}
        for field, values in named.items():
            bad = sorted({v for v in values if v not in self.domains})
            if bad:
                raise ValueError(f"{field}: {bad} not in domains {self.domains}")
        return self

    @model_validator(mode="after")
    def _spark_keys(self) -> CurationConfig:
        bad = [k for k in self.spark if not k.startswith("spark.")]
        if bad:
            raise ValueError(f"spark: keys must start with 'spark.', got {bad}")
        return self

    def shuffle_width(self, input_bytes: int) -> int:
        """`shuffle_partitions`, or from the input's size when unset. A 60-record sample
        paid 8 tasks for each of its ~100 shuffle stages: ~10% of its run time (36 -> 32 s
        of a `curate dedup` at width 2); 128 MiB and up keeps the width the benchmarks ran."""
        if self.shuffle_partitions is not None:
            return self.shuffle_partitions
        return 2 if input_bytes < 64 << 20 else 4 if input_bytes < 128 << 20 else 8

    @classmethod
    def load(cls, path: str | Path | None) -> CurationConfig:
        if path is None:
            return cls()
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"curation config not found: {path}")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise ValueError(f"{path}:{yaml_line(e)}: invalid YAML: {yaml_problem(e)}") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping at top level")
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            raise ValueError(f"{path}: {_one_line(e)}") from None


def yaml_line(e: yaml.YAMLError) -> str:
    """1-based line of a YAML error ('?' when PyYAML gives none)."""
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    return str(mark.line + 1) if mark is not None else "?"


def yaml_problem(e: yaml.YAMLError) -> str:
    return " ".join(str(getattr(e, "problem", None) or e).split())


def _one_line(e: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in err['loc']) or 'config'}: {err['msg']}"
                     for err in e.errors())
