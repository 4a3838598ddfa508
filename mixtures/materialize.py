"""Materialise a recipe: curated table -> tokenizer -> per-stage plans -> shuffled Arrow shards.

`run_mix` checks every input, plans every stage, and only then writes: a bad recipe, table,
tokenizer or budget leaves nothing behind. Two engines write the same bytes:

- pyarrow (this module): one process, the table in memory; for notebooks and small tables.
- spark (`mixtures.spark_mix`): tokenises, expands copies and writes shards on the
  executors; the driver holds no text and no tokens.

Both are deterministic and independent of input row order: plans and shuffles are keyed by
document id (`doc_keys`), and a stage's shards are cut by those keys (`stage_copies`).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from mixtures.curated_table import (
    CuratedTableError,
    load_stats,
    read_curated,
    resolve_curated,
    top_bucket,
)
from mixtures.doc_keys import id_hashes
from mixtures.planner import PlanInputs, StagePlan, plan_stage
from mixtures.recipe import (
    Recipe,
    RecipeError,
    StageSpec,
    check_domains,
    check_quality_buckets,
    load_recipe,
    recipe_to_dict,
)
from mixtures.shards import StageWriter, canonical_sha256, check_replaceable
from mixtures.stage_copies import expand_copies, n_shards, shard_slices
from mixtures.stage_writer import write_error
from mixtures.token_bytes import to_binary, to_token_lists, truncate
from mixtures.tokenizer import (
    encode_documents,
    install_tokenizer,
    load_tokenizer,
    sample_for_training,
    save_tokenizer,
    special_token_ids,
    tokenizer_info,
    train_bpe,
)

__all__ = ["CuratedTableError", "MixOutputError", "run_mix"]

log = logging.getLogger(__name__)

ENGINES = ("auto", "pyarrow", "spark")
# `--engine auto` picks Spark above this much curated Parquet (compressed bytes on disk).
SPARK_ABOVE_BYTES = 256 << 20


class MixOutputError(ValueError):
    """The output directory cannot hold the mix without overwriting something else."""


@dataclass
class MixInputs:
    """Everything checked before a mix writes anything."""

    recipe: Recipe
    recipe_path: str
    seed: int
    out_dir: Path
    table_path: Path
    stats: dict | None
    tokenizer_source: str | None

    @property
    def lineage(self) -> dict:
        return {"curated_path": str(self.table_path.resolve()), "curated_stats": self.stats}


def check_mix_inputs(curated: str, recipe_path: str, output: str, tokenizer_path: str | None,
                     seed: int | None, overwrite: bool) -> MixInputs:
    """Recipe, seed, output directory and tokenizer: every check that reads no table data."""
    recipe = load_recipe(recipe_path)
    seed = recipe.seed if seed is None else int(seed)
    if seed < 0:
        raise ValueError(f"--seed must be >= 0, got {seed}")
    out_dir = Path(output)
    check_output(out_dir, recipe, seed, overwrite)
    table_path, stats_path = resolve_curated(curated)
    source = tokenizer_path or recipe.tokenizer.path
    if source:
        load_tokenizer(source)
    return MixInputs(recipe, str(recipe_path), seed, out_dir, table_path, load_stats(stats_path),
                     source)


def check_table_against_recipe(inputs: MixInputs, domains: list[str], quality_top: int) -> None:
    """The recipe's domains and quality buckets must exist in the table."""
    check_domains(inputs.recipe, domains, inputs.recipe_path, str(inputs.table_path))
    check_quality_buckets(inputs.recipe, quality_top, inputs.recipe_path, str(inputs.table_path))


def check_output(out_dir: Path, recipe: Recipe, seed: int, overwrite: bool) -> None:
    """Everything the mix will replace must be a mix's output, and (unless `overwrite`) of
    this recipe and seed: a second recipe aimed at the same directory is refused."""
    if out_dir.exists() and not out_dir.is_dir():
        raise MixOutputError(f"{out_dir}: output exists and is not a directory")
    if (out_dir / "tokenizer").exists() and not (out_dir / "tokenizer").is_dir():
        raise MixOutputError(f"{out_dir / 'tokenizer'}: exists and is not a directory")
    for stage in recipe.stages:
        check_replaceable(out_dir / stage.name)
    if overwrite or not out_dir.is_dir():
        return
    sha = canonical_sha256(recipe_to_dict(recipe))
    for path in [out_dir / "plan.json", *sorted(out_dir.glob("*/manifest.json"))]:
        try:
            written = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue  # not a mix file this check can read; check_replaceable guards stages
        if not isinstance(written, dict) or "recipe_sha256" not in written:
            continue
        if (written["recipe_sha256"], written.get("seed")) != (sha, seed):
            raise MixOutputError(
                f"{path}: {out_dir} holds the output of another recipe or seed (recipe "
                f"sha256 {written['recipe_sha256'][:12]}, seed {written.get('seed')}; this "
                f"mix: {sha[:12]}, seed {seed}); choose another --output or pass --overwrite")


def stage_doc_tokens(tokens: np.ndarray, max_doc_tokens: int | None) -> np.ndarray:
    """A stage's document lengths after its truncation."""
    return tokens if max_doc_tokens is None else np.minimum(tokens, max_doc_tokens)


def plan_stages(inputs: MixInputs, stage_docs: Callable[[StageSpec], PlanInputs]
                ) -> list[StagePlan]:
    """Plan every stage (its documents from `stage_docs`); a budget no domain can fill is
    an error naming the recipe field unless the stage allows a shortfall."""
    plans = []
    for i, stage in enumerate(inputs.recipe.stages):
        plan = plan_stage(stage_docs(stage), stage)
        unfilled = plan.report["unfilled"]
        if unfilled and not stage.allow_shortfall:
            raise RecipeError(
                f"{inputs.recipe_path}: stages.{i}.token_budget: stage {stage.name!r} cannot "
                f"plan {unfilled:,} of its {stage.token_budget:,} tokens within repeat_cap "
                f"{stage.repeat_cap} (the table supplies {plan.planned_tokens:,}); lower the "
                "budget, raise repeat_cap, or set allow_shortfall: true")
        plans.append(plan)
    return plans


def run_mix(
    curated: str,
    recipe_path: str,
    output: str,
    tokenizer_path: str | None = None,
    seed: int | None = None,
    engine: str = "auto",
    master: str | None = None,
    overwrite: bool = False,
) -> dict:
    """Build every stage of a recipe from a curated table; returns (and writes) plan.json."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    inputs = check_mix_inputs(curated, recipe_path, output, tokenizer_path, seed, overwrite)
    if engine == "auto":
        engine = "spark" if _parquet_bytes(inputs.table_path) > SPARK_ABOVE_BYTES else "pyarrow"
    log.info("mix engine: %s", engine)
    if engine == "spark":
        from mixtures.spark_mix import materialise_spark

        return materialise_spark(inputs, master)
    return _materialise_pyarrow(inputs)


def _parquet_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*.parquet"))


def _materialise_pyarrow(inputs: MixInputs) -> dict:
    recipe, seed = inputs.recipe, inputs.seed
    docs = read_curated(inputs.table_path)
    domain = docs.column("domain").to_numpy(zero_copy_only=False).astype(str)
    check_table_against_recipe(inputs, sorted(set(domain)),
                               top_bucket(docs.column("quality_bucket"), inputs.stats))
    ids = np.asarray(docs.column("id").to_pylist(), dtype=object)
    texts = docs.column("text").to_pylist()
    tok = load_tokenizer(inputs.tokenizer_source) if inputs.tokenizer_source else None
    if tok is None:
        spec = recipe.tokenizer
        sample = sample_for_training(texts, ids, spec.sample_bytes, seed)
        log.info("training BPE (vocab %d) on %d documents", spec.vocab_size, len(sample))
        tok = train_bpe(sample, spec.vocab_size, spec.min_frequency)
    values, offsets = encode_documents(tok, texts)
    del texts
    n_tokens = len(values)
    log.info("tokenised %d documents into %d tokens", len(offsets) - 1, n_tokens)
    doc_tokens = np.diff(offsets)
    tokens = to_binary(values, offsets, large=True)
    del values
    cluster_size = docs.column("cluster_size").to_numpy()
    quality_bucket = docs.column("quality_bucket").to_numpy()
    plans = plan_stages(inputs, lambda stage: PlanInputs(
        id_hashes(ids, seed, stage.name), domain,
        stage_doc_tokens(doc_tokens, stage.max_doc_tokens), cluster_size, quality_bucket,
        ids=ids))
    meta = docs.select(["id", "domain", "source", "quality_bucket", "cluster_size"])
    eos = special_token_ids(tok)["eos"]

    def write_stages(writers: dict[str, StageWriter]) -> None:
        for stage, plan in zip(recipe.stages, plans, strict=True):
            stage_tokens, _ = truncate(tokens, doc_tokens, stage.max_doc_tokens, eos)
            h = id_hashes(ids, seed, stage.name)
            rows, copy, keys = expand_copies(h, plan.repeats)
            with writers[stage.name] as writer:
                for _, start, stop in shard_slices(keys, n_shards(plan.planned_tokens,
                                                                  recipe.shard_tokens)):
                    idx = pa.array(rows[start:stop])
                    part = meta.take(idx)
                    writer.write_shard({
                        "tokens": to_token_lists(stage_tokens.take(idx)),
                        "doc_id": part.column("id"), "domain": part.column("domain"),
                        "source": part.column("source"),
                        "quality_bucket": part.column("quality_bucket"),
                        "cluster_size": part.column("cluster_size"),
                        "copy": pa.array(copy[start:stop]),
                    })

    return write_mix(inputs, tok, plans, docs.num_rows, n_tokens, write_stages)


def write_mix(inputs: MixInputs, tok, plans: list[StagePlan], n_docs: int, n_tokens: int,
              write_stages) -> dict:
    """Create the output: tokenizer, each stage (through `write_stages`), plan.json last.

    plan.json is the mark of a finished mix: removed first, written last. Stage directories
    are swapped in whole by StageWriter, so a killed mix leaves no stage listing missing
    shards, and a rerun starts each stage clean.
    """
    out_dir, recipe = inputs.out_dir, inputs.recipe
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        (out_dir / "plan.json").unlink(missing_ok=True)
        tok_path = out_dir / "tokenizer" / "tokenizer.json"
        if inputs.tokenizer_source:  # the file itself: its sha256 stays the user's
            install_tokenizer(inputs.tokenizer_source, tok_path)
        else:
            save_tokenizer(tok, tok_path)
        recipe_dict = recipe_to_dict(recipe)
        writers = {
            stage.name: StageWriter(
                out_dir / stage.name, stage=stage.name,
                tokenizer=tokenizer_info(tok, tok_path, os.path.relpath(tok_path,
                                                                          out_dir / stage.name)),
                recipe=recipe_dict, seed=inputs.seed, lineage=inputs.lineage)
            for stage in recipe.stages
        }
        try:
            write_stages(writers)
        except BaseException:
            for writer in writers.values():
                writer.abort()
            raise
        summary = {
            "recipe": recipe_dict,
            "recipe_sha256": canonical_sha256(recipe_dict),
            "seed": inputs.seed,
            "curated_docs": n_docs,
            "curated_tokens": int(n_tokens),
            "tokenizer": {**tokenizer_info(tok, tok_path),
                          "path": os.path.relpath(tok_path, out_dir)},
            "stages": {},
        }
        for stage, plan in zip(recipe.stages, plans, strict=True):
            manifest = writers[stage.name].close()
            summary["stages"][stage.name] = {
                "dir": stage.name,
                "shards": len(manifest["shards"]),
                "rows": manifest["total_rows"],
                "tokens": manifest["total_tokens"],
                "tokens_by_domain": manifest["tokens_by_domain"],
                "tokens_by_quality_bucket": manifest["tokens_by_quality_bucket"],
                "report": plan.report,
            }
        _write_json(out_dir / "plan.json", summary)
    except BaseException:
        if created and not any(out_dir.iterdir()):
            out_dir.rmdir()
        raise
    log.info("wrote %s", out_dir / "plan.json")
    return summary


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        tmp.replace(path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise write_error(e, path) from e
