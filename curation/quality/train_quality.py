"""`sharpen curate train-quality`: a fastText quality classifier from reference sets.

Positive documents (label `hq`: text like what the corpus should keep, e.g. references
of Wikipedia or books, as in GPT-3's and DCLM's classifiers) against negative ones (`lq`:
spam, boilerplate, machine-garbled text). The set a file is named in decides its label;
a record's own `label` is ignored here. The model's P(hq) becomes `quality_fasttext`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from pydantic import Field, field_validator

from curation.config import _Strict
from curation.quality.fasttext_train import (
    FastTextParams,
    TrainResult,
    describe_inputs,
    load_yaml_config,
    train_fasttext,
)
from curation.quality.reference_sets import RefDoc, read_reference_set

HQ, LQ = "hq", "lq"
KIND = "fasttext-quality"


class QualityTrainConfig(_Strict):
    positive: list[str] = Field(min_length=1, description="Paths or globs of JSONL(.gz)/.txt files of the positive (high-quality) reference set.")
    negative: list[str] = Field(min_length=1, description="Paths or globs of the negative (low-quality) reference set.")
    heldout_fraction: float = Field(0.2, ge=0, lt=1, description="About this fraction of each label's documents is held out, by whole sources, for the metrics. 0: no held-out split, no metrics.")
    hyperparameters: FastTextParams = Field(default_factory=FastTextParams, description="fastText hyperparameters.")
    seed: int = Field(0, description="Seed of the split, the shuffling and fastText.")
    min_chars: int = Field(100, ge=1, description="Shorter documents are skipped.")
    max_docs_per_source: int | None = Field(None, ge=1, description="At most this many documents per source (a seeded choice), so that one large source does not dominate.")
    output: str = Field("models/quality-fasttext", description="Model directory to write (model.bin + provenance.json).")

    @field_validator("positive", "negative", mode="before")
    @classmethod
    def _one_or_many(cls, v: object) -> object:
        return [v] if isinstance(v, str) else v

    @classmethod
    def load(cls, path: str | Path) -> QualityTrainConfig:
        return load_yaml_config(cls, path)


def _read(patterns: list[str], label: str, what: str, min_chars: int) -> list[RefDoc]:
    return [replace(d, label=label)
            for d in read_reference_set(patterns, label, what=what, min_chars=min_chars)]


def train_quality(cfg: QualityTrainConfig, log: Callable[[str], None] = lambda s: None
                  ) -> TrainResult:
    """Train and save the quality classifier; returns its directory and provenance."""
    docs = (_read(cfg.positive, HQ, "positive reference set", cfg.min_chars)
            + _read(cfg.negative, LQ, "negative reference set", cfg.min_chars))
    log(f"{sum(d.label == HQ for d in docs)} positive, {sum(d.label == LQ for d in docs)} "
        f"negative documents")
    return train_fasttext(
        docs, kind=KIND, output=cfg.output, params=cfg.hyperparameters,
        heldout_fraction=cfg.heldout_fraction, seed=cfg.seed, positive=HQ, allowed=[HQ, LQ],
        what=f"reference sets (positive {cfg.positive}, negative {cfg.negative})",
        max_docs_per_source=cfg.max_docs_per_source, log=log,
        inputs={"positive": describe_inputs(cfg.positive, "positive reference set"),
                "negative": describe_inputs(cfg.negative, "negative reference set")})
