"""Mixture recipe: the typed, validated YAML that says what each training stage sees.

A recipe is a list of stages (each a token budget split into domain shares, with a
repetition policy and quality filters) plus the tokenizer and the seed. Everything the
planner and materialiser do is a function of this file, the curated table and the seed.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

SHARE_TOLERANCE = 1e-6
_STAGE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# Names `sharpen mix` itself writes next to the stage directories.
RESERVED_STAGE_NAMES = frozenset({"tokenizer", "plan.json"})


class RecipeError(ValueError):
    """A recipe file is missing, not YAML, or fails validation (message names file and field)."""


class TokenizerSpec(BaseModel):
    """Either a local tokenizer to load, or the settings to train a byte-level BPE."""

    model_config = ConfigDict(extra="forbid")

    path: str | None = Field(
        default=None,
        description="Local tokenizer.json, or HF tokenizer directory holding one, to load; "
        "when set, no tokenizer is trained.",
    )
    vocab_size: int = Field(
        default=8192,
        ge=300,
        le=1 << 20,
        description="BPE vocabulary size including the 256 byte tokens and 3 special tokens.",
    )
    sample_bytes: int = Field(
        default=8_000_000,
        gt=0,
        description="Cap on UTF-8 bytes of curated text (a seeded sample of documents) used "
        "to train the tokenizer.",
    )
    min_frequency: int = Field(
        default=2, ge=1, description="A pair must occur this often to become a merge."
    )


class StageSpec(BaseModel):
    """One training stage: budget, domain shares, repetition policy and document filters."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Stage name; also its output directory name.")
    token_budget: int = Field(gt=0, description="Tokens (including EOS) the stage should hold.")
    share_rule: Literal["explicit", "temperature", "unimax"] = Field(
        default="explicit",
        description="How the budget is split across domains: `explicit` (domain_shares), "
        "`temperature` (share_d proportional to available_d ** (1 / temperature): "
        "Arivazhagan et al. 2019, Conneau et al. 2020) or `unimax` (a uniform budget per "
        "domain, capped at unimax_max_epochs passes over its available tokens, the rest "
        "spread over the larger domains: Chung et al. 2023). `available` is the tokens of "
        "a domain's documents that pass the stage's filters.",
    )
    domain_shares: dict[str, float] | None = Field(
        default=None,
        description="explicit rule: target share of the budget per domain; non-negative, "
        "sums to 1. Domains of the curated table that are not listed are excluded.",
    )
    domains: list[str] | None = Field(
        default=None,
        description="temperature/unimax rules: the domains that take part (default: every "
        "domain of the curated table).",
    )
    temperature: float | None = Field(
        default=None,
        gt=0,
        description="temperature rule: 1 keeps the natural proportions, larger values "
        "flatten them towards uniform (mT5 and XLM-R use 1/0.3).",
    )
    unimax_max_epochs: float | None = Field(
        default=None,
        gt=0,
        description="unimax rule: most passes over a domain's available tokens (at most "
        "repeat_cap takes effect).",
    )
    repeat_cap: int = Field(
        default=4,
        ge=1,
        description="Most copies of one document in this stage (~4 epochs is nearly as good "
        "as fresh data, Muennighoff et al. 2023).",
    )
    min_quality_bucket: int | dict[str, int] | None = Field(
        default=None,
        description="Documents with a lower quality_bucket are excluded: one bucket for "
        "every domain, or a bucket per domain (domains not listed are not filtered).",
    )
    cluster_size_weight: float = Field(
        default=0.5,
        ge=0.0,
        description="Frequency-awareness exponent: weight *= clip(cluster_size, 1, "
        "cluster_size_cap) ** this. 0 ignores how often the web repeated a document.",
    )
    cluster_size_cap: int = Field(
        default=16,
        ge=1,
        description="cluster_size is clipped to this before weighting, so spam clusters "
        "are not amplified.",
    )
    quality_bucket_weights: dict[int, float] | None = Field(
        default=None,
        description="Repeat weight per quality_bucket (buckets not listed weigh 1.0; 0 "
        "excludes a bucket).",
    )
    max_doc_tokens: int | None = Field(
        default=None,
        ge=2,
        description="Longer documents are truncated to this many tokens (the last one EOS).",
    )
    min_doc_tokens: int | None = Field(
        default=None,
        ge=1,
        description="Shorter documents are excluded (e.g. long-context stages).",
    )
    length_weight: float = Field(
        default=0.0,
        ge=0.0,
        description="Length exponent: weight *= doc_tokens ** this, to up-weight long "
        "documents within a domain (long-context stages).",
    )
    allow_shortfall: bool = Field(
        default=False,
        description="When every domain is at repeat_cap and the budget still cannot be "
        "met, `sharpen mix` fails naming the stage (false) or writes what fits and reports "
        "the unfilled tokens (true). A single domain's shortfall is always redistributed "
        "to the others by share and reported.",
    )

    @field_validator("name")
    @classmethod
    def _name_is_a_dir_name(cls, v: str) -> str:
        if not _STAGE_NAME.match(v):
            raise ValueError(f"stage name {v!r} must match {_STAGE_NAME.pattern}")
        if v in RESERVED_STAGE_NAMES:
            raise ValueError(f"stage name {v!r} is reserved for the mix output's own files")
        return v

    @field_validator("domain_shares")
    @classmethod
    def _shares_sum_to_one(cls, v: dict[str, float] | None) -> dict[str, float] | None:
        if v is None:
            return v
        if not v:
            raise ValueError("domain_shares is empty")
        bad = {d: s for d, s in v.items() if not (math.isfinite(s) and s >= 0)}
        if bad:
            raise ValueError(f"shares must be finite and >= 0, got {bad}")
        total = sum(v.values())
        if abs(total - 1.0) > SHARE_TOLERANCE:
            raise ValueError(f"domain_shares sum to {total:.9g}, not 1 (tolerance 1e-6)")
        return v

    @field_validator("quality_bucket_weights")
    @classmethod
    def _weights_non_negative(cls, v: dict[int, float] | None) -> dict[int, float] | None:
        if v is not None:
            bad = {b: w for b, w in v.items() if not (math.isfinite(w) and w >= 0)}
            if bad:
                raise ValueError(f"quality_bucket_weights must be finite and >= 0, got {bad}")
        return v

    @field_validator("domains")
    @classmethod
    def _domains_listed_once(cls, v: list[str] | None) -> list[str] | None:
        if v is not None:
            if not v:
                raise ValueError("domains is empty")
            dupes = sorted({d for d in v if v.count(d) > 1})
            if dupes:
                raise ValueError(f"domains lists {dupes} more than once")
        return v

    @model_validator(mode="after")
    def _rule_fields(self) -> StageSpec:
        rule_fields = {
            "explicit": {"domain_shares"},
            "temperature": {"temperature", "domains"},
            "unimax": {"unimax_max_epochs", "domains"},
        }
        required = {"explicit": "domain_shares", "temperature": "temperature",
                    "unimax": "unimax_max_epochs"}[self.share_rule]
        if getattr(self, required) is None:
            raise ValueError(f"share_rule {self.share_rule} needs {required}")
        stray = sorted(
            f for f in ("domain_shares", "domains", "temperature", "unimax_max_epochs")
            if getattr(self, f) is not None and f not in rule_fields[self.share_rule]
        )
        if stray:
            raise ValueError(f"share_rule {self.share_rule} does not use {stray}")
        return self

    @model_validator(mode="after")
    def _doc_token_bounds(self) -> StageSpec:
        if (
            self.min_doc_tokens
            and self.max_doc_tokens
            and self.min_doc_tokens > self.max_doc_tokens
        ):
            raise ValueError(
                f"min_doc_tokens {self.min_doc_tokens} > max_doc_tokens {self.max_doc_tokens}"
            )
        return self

    def named_domains(self) -> list[str]:
        """Domains the recipe names for this stage (shares, rule domains, per-domain
        filters): each must exist in the curated table."""
        named = set(self.domain_shares or {}) | set(self.domains or [])
        if isinstance(self.min_quality_bucket, dict):
            named |= set(self.min_quality_bucket)
        return sorted(named)


class Recipe(BaseModel):
    """A whole mixture: seed, tokenizer, shard size and the ordered stages."""

    model_config = ConfigDict(extra="forbid")

    description: str = Field(default="", description="Free text: what this recipe is for.")
    seed: int = Field(default=0, ge=0, description="Seed for sampling, rounding and shuffles.")
    tokenizer: TokenizerSpec = Field(
        default_factory=TokenizerSpec, description="Tokenizer to load or train."
    )
    shard_tokens: int = Field(
        default=1 << 26,
        gt=0,
        le=1 << 30,
        description="Target tokens per Arrow shard file (~4 bytes each). A stage of T "
        "tokens is cut into ceil(T / shard_tokens) shards by each copy's hashed key, so "
        "every engine and partitioning cuts them alike; sizes vary a little around T / "
        "ceil(T / shard_tokens).",
    )
    stages: list[StageSpec] = Field(min_length=1, description="Stages in training order.")

    @field_validator("stages")
    @classmethod
    def _unique_names(cls, v: list[StageSpec]) -> list[StageSpec]:
        names = [s.name for s in v]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"stage names must be unique, repeated: {dupes}")
        return v

    @model_validator(mode="before")
    @classmethod
    def _renamed_fields(cls, data: object) -> object:
        if isinstance(data, dict) and "rows_per_shard" in data:
            raise ValueError(
                "rows_per_shard was replaced by shard_tokens (target tokens per shard): "
                "shards are cut by hashed keys so that every engine cuts them alike"
            )
        return data


def _format_errors(e: ValidationError) -> str:
    parts = []
    for err in e.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "<root>"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def parse_recipe(data: object, where: str = "<recipe>") -> Recipe:
    """Validate an already-loaded mapping (e.g. from a notebook) into a Recipe."""
    if not isinstance(data, dict):
        raise RecipeError(f"{where}: a recipe must be a mapping, got {type(data).__name__}")
    try:
        return Recipe.model_validate(data)
    except ValidationError as e:
        raise RecipeError(f"{where}: {_format_errors(e)}") from e


def load_recipe(path: str | Path) -> Recipe:
    """Read and validate a YAML recipe; every failure is a RecipeError naming the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise RecipeError(f"{path}: recipe file not found") from e
    except (OSError, UnicodeDecodeError) as e:
        raise RecipeError(f"{path}: cannot read recipe: {e}") from e
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise RecipeError(f"{path}: {yaml_error_line(e, text)}") from e
    return parse_recipe(data, str(path))


def yaml_error_line(e: yaml.YAMLError, text: str) -> str:
    """One line with the 1-based line number, instead of PyYAML's multi-line report."""
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    problem = getattr(e, "problem", None) or getattr(e, "context", None)
    if mark is not None:
        where = f" at line {mark.line + 1}, column {mark.column + 1}"
    elif isinstance(e, yaml.reader.ReaderError):  # bad characters carry a position only
        where = f" at line {text.count(chr(10), 0, e.position) + 1}"
        problem = e.reason
    else:
        where = ""
    return " ".join(f"not valid YAML{where}: {problem or e}".split())


def check_quality_buckets(recipe: Recipe, top: int, where: str, table: str) -> None:
    """Every bucket a stage weights or filters on must exist in the curated table (0..top):
    a weight on a bucket curation never produces silently does nothing."""
    for i, stage in enumerate(recipe.stages):
        used = {f"quality_bucket_weights.{b}": b for b in stage.quality_bucket_weights or {}}
        mqb = stage.min_quality_bucket
        if isinstance(mqb, dict):
            used |= {f"min_quality_bucket.{d}": b for d, b in mqb.items()}
        elif mqb is not None:
            used["min_quality_bucket"] = mqb
        bad = {f: b for f, b in used.items() if not 0 <= b <= top}
        if bad:
            fields = ", ".join(f"stages.{i}.{f}" for f in sorted(bad))
            raise RecipeError(
                f"{where}: stage {stage.name!r} uses quality bucket(s) "
                f"{sorted(set(bad.values()))} ({fields}), but the curated table {table} has "
                f"buckets 0..{top}")


def check_domains(recipe: Recipe, available: list[str], where: str, table: str) -> None:
    """Every domain a stage names must be in the curated table: a typo would otherwise
    plan a stage without that domain."""
    for i, stage in enumerate(recipe.stages):
        absent = [d for d in stage.named_domains() if d not in available]
        if absent:
            field = ("domain_shares" if stage.domain_shares and absent[0] in stage.domain_shares
                     else "domains" if stage.domains and absent[0] in stage.domains
                     else "min_quality_bucket")
            raise RecipeError(
                f"{where}: stages.{i}.{field}: stage {stage.name!r} names domain(s) {absent} "
                f"that the curated table {table} does not have (it has {sorted(available)})")


def recipe_to_dict(recipe: Recipe) -> dict:
    """JSON-able form for manifests (int keys of quality weights become strings)."""
    return recipe.model_dump(mode="json")
