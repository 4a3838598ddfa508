"""Mixture recipe: the typed, validated YAML that says what each training stage sees.

A recipe is a list of stages (each a token budget split into domain shares, with a
repetition policy and quality filters) plus the tokenizer and the seed. Everything the
planner and materialiser do is a function of this file, the curated table and the seed.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

SHARE_TOLERANCE = 1e-6
_STAGE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# Names `sharpen mix` itself writes next to the stage directories.
RESERVED_STAGE_NAMES = frozenset({"tokenizer", "plan.json"})


class RecipeError(ValueError):
    """A recipe file is missing, not YAML, or fails validation (message names file and field)."""


class TokenizerSpec(BaseModel):
    """Either a local tokenizer.json to load, or the settings to train a byte-level BPE."""

    model_config = ConfigDict(extra="forbid")

    path: str | None = Field(
        default=None,
        description="Local tokenizer.json to load; when set, no tokenizer is trained.",
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
    domain_shares: dict[str, float] = Field(
        description="Target share of the budget per domain; non-negative, sums to 1. Domains "
        "of the curated table that are not listed are excluded from the stage.",
    )
    repeat_cap: int = Field(
        default=4,
        ge=1,
        description="Most copies of one document in this stage (~4 epochs is nearly as good "
        "as fresh data, Muennighoff et al. 2023).",
    )
    min_quality_bucket: int | None = Field(
        default=None, description="Documents with a lower quality_bucket are excluded."
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
    def _shares_sum_to_one(cls, v: dict[str, float]) -> dict[str, float]:
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


class Recipe(BaseModel):
    """A whole mixture: seed, tokenizer, shard size and the ordered stages."""

    model_config = ConfigDict(extra="forbid")

    description: str = Field(default="", description="Free text: what this recipe is for.")
    seed: int = Field(default=0, ge=0, description="Seed for sampling, rounding and shuffles.")
    tokenizer: TokenizerSpec = Field(
        default_factory=TokenizerSpec, description="Tokenizer to load or train."
    )
    rows_per_shard: int = Field(
        default=50_000, gt=0, description="Document copies per Arrow shard file."
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
    for stage in recipe.stages:
        used = set(stage.quality_bucket_weights or {})
        if stage.min_quality_bucket is not None:
            used.add(stage.min_quality_bucket)
        bad = sorted(b for b in used if not 0 <= b <= top)
        if bad:
            raise RecipeError(
                f"{where}: stage {stage.name!r} uses quality bucket(s) {bad}, but the curated "
                f"table {table} has buckets 0..{top}")


def recipe_to_dict(recipe: Recipe) -> dict:
    """JSON-able form for manifests (int keys of quality weights become strings)."""
    return recipe.model_dump(mode="json")
