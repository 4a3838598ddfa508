"""`sharpen curate train-domain`: a fastText domain classifier from labelled sources.

The last resort of domain assignment: a record's own `domain`, then the config's rules,
then `domain_by_source`, and only then this model (`curation/scorers/domain_classifier.py`).
Labels must be domains of the taxonomy, so a prediction is always a valid domain.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from curation.config import DEFAULT_DOMAINS, _Strict
from curation.quality.fasttext_train import (
    FastTextParams,
    TrainResult,
    describe_inputs,
    load_yaml_config,
    read_labelled_files,
    train_fasttext,
)

KIND = "fasttext-domain"


class DomainTrainConfig(_Strict):
    data: list[str] = Field(min_length=1, description="Paths or globs of JSONL(.gz) files; each record's `label` (else the file name) is its domain.")
    domains: list[str] = Field(default_factory=lambda: list(DEFAULT_DOMAINS), min_length=2, description="The taxonomy: every label must be one of these (the curation config's `domains`).")
    heldout_fraction: float = Field(0.2, ge=0, lt=1, description="About this fraction of each domain's documents is held out, by whole sources. 0: no metrics.")
    hyperparameters: FastTextParams = Field(default_factory=FastTextParams, description="fastText hyperparameters.")
    seed: int = Field(0, description="Seed of the split, the shuffling and fastText.")
    min_chars: int = Field(100, ge=1, description="Shorter documents are skipped.")
    max_docs_per_source: int | None = Field(None, ge=1, description="At most this many documents per (domain, source).")
    single_source: Literal["error", "train_only"] = Field("error", description="A label with a single source cannot be held out by source: `error`, or `train_only` (trained on all of it and left out of the metrics, which the provenance records).")
    output: str = Field("models/domain-fasttext", description="Model directory to write.")

    @field_validator("data", mode="before")
    @classmethod
    def _one_or_many(cls, v: object) -> object:
        return [v] if isinstance(v, str) else v

    @classmethod
    def load(cls, path: str | Path) -> DomainTrainConfig:
        return load_yaml_config(cls, path)


def train_domain(cfg: DomainTrainConfig, log: Callable[[str], None] = lambda s: None
                 ) -> TrainResult:
    """Train and save the domain classifier; returns its directory and provenance."""
    docs = read_labelled_files(cfg.data, "domain data", cfg.min_chars, cfg.domains)
    return train_fasttext(
        docs, kind=KIND, output=cfg.output, params=cfg.hyperparameters,
        heldout_fraction=cfg.heldout_fraction, seed=cfg.seed, allowed=cfg.domains,
        what=f"domain data {cfg.data}", max_docs_per_source=cfg.max_docs_per_source, log=log,
        single_source=cfg.single_source,
        inputs={"data": describe_inputs(cfg.data, "domain data")})
