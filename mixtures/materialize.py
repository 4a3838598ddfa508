"""Materialise a recipe: curated table -> tokenizer -> per-stage plans -> shuffled Arrow shards.

This is the pyarrow-only path (a notebook or one machine). It is deterministic end to
end: the table is sorted by (domain, id) after reading, tokenizer training samples with
the seed, and repeats and the global shuffle use per-stage seeded streams, so the same
curated table, recipe and seed give byte-identical shards.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from mixtures.planner import StagePlan, plan_stage, stage_rng
from mixtures.recipe import (
    Recipe,
    StageSpec,
    check_quality_buckets,
    load_recipe,
    recipe_to_dict,
)
from mixtures.shards import StageWriter, canonical_sha256, check_replaceable
from mixtures.stage_writer import write_error
from mixtures.tokenizer import (
    encode_documents,
    install_tokenizer,
    load_tokenizer,
    sample_for_training,
    save_tokenizer,
    tokenizer_info,
    train_bpe,
)

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("id", "domain", "text")
WRITE_ROWS = 8192  # document copies gathered per StageWriter.write call


class CuratedTableError(ValueError):
    """The curated table is missing, empty, or lacks a required column."""


class MixOutputError(ValueError):
    """The output directory cannot hold the mix without overwriting something else."""


def resolve_curated(curated: str | os.PathLike[str]) -> tuple[Path, Path | None]:
    """Accept either the curate output dir (with curated/ and stats.json) or curated/ itself."""
    path = Path(curated)
    if not path.exists():
        raise CuratedTableError(f"{path}: curated table not found")
    if (path / "curated").is_dir():
        path = path / "curated"
    stats = path.parent / "stats.json"
    return path, stats if stats.is_file() else None


def read_curated(path: Path) -> pa.Table:
    """Read the hive-partitioned Parquet table; fill optional columns; sort by (domain, id)."""
    try:
        dataset = ds.dataset(str(path), format="parquet", partitioning="hive")
    except (OSError, pa.ArrowInvalid) as e:
        raise CuratedTableError(f"{path}: cannot read curated Parquet dataset: {e}") from e
    names = set(dataset.schema.names)
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if missing:
        raise CuratedTableError(f"{path}: curated table lacks column(s) {missing}")
    wanted = [
        c
        for c in ("id", "source", "domain", "text", "cluster_size", "quality_bucket")
        if c in names
    ]
    table = dataset.to_table(columns=wanted)
    if table.num_rows == 0:
        raise CuratedTableError(f"{path}: curated table has no rows")
    n = table.num_rows
    cols = {
        "id": table.column("id").cast(pa.string()),
        "domain": _plain(table.column("domain")).cast(pa.string()),
        "text": table.column("text").cast(pa.string()),
        "source": (
            table.column("source").cast(pa.string())
            if "source" in names
            else pa.chunked_array([pa.array(["unknown"] * n)])
        ),
        "cluster_size": (
            table.column("cluster_size").cast(pa.int64()).fill_null(1)
            if "cluster_size" in names
            else pa.chunked_array([pa.array(np.ones(n, dtype=np.int64))])
        ),
        "quality_bucket": (
            table.column("quality_bucket").cast(pa.int32()).fill_null(0)
            if "quality_bucket" in names
            else pa.chunked_array([pa.array(np.zeros(n, dtype=np.int32))])
        ),
    }
    for c in ("id", "domain", "text"):
        nulls = cols[c].null_count
        if nulls:
            raise CuratedTableError(f"{path}: column {c!r} has {nulls} null value(s)")
    cols["source"] = cols["source"].fill_null("unknown")
    table = pa.table(cols)
    table = table.take(pc.sort_indices(table, [("domain", "ascending"), ("id", "ascending")]))
    dupes = n - len(pc.unique(table.column("id")))
    if dupes:
        log.warning(
            "%s: %d duplicate document ids (kept; ordering stays deterministic)", path, dupes
        )
    log.info("read %d curated documents from %s", n, path)
    return table.combine_chunks()


def _plain(col: pa.ChunkedArray) -> pa.ChunkedArray:
    if pa.types.is_dictionary(col.type):
        return col.cast(col.type.value_type)
    return col


def prepare_tokenizer(
    recipe: Recipe, texts: list[str], out_dir: Path, tokenizer_path: str | None, seed: int
):
    """Install the given tokenizer (the --tokenizer flag or the recipe's path) or train one;
    either way it ends up in out_dir/tokenizer."""
    dest = out_dir / "tokenizer" / "tokenizer.json"
    source = tokenizer_path or recipe.tokenizer.path
    if source:
        install_tokenizer(source, dest)
        log.info("using tokenizer %s", source)
    else:
        spec = recipe.tokenizer
        sample = sample_for_training(texts, spec.sample_bytes, seed)
        log.info(
            "training BPE (vocab %d) on %d documents (%d bytes cap)",
            spec.vocab_size,
            len(sample),
            spec.sample_bytes,
        )
        save_tokenizer(train_bpe(sample, spec.vocab_size, spec.min_frequency), dest)
    return load_tokenizer(dest), dest


def _truncate(values: np.ndarray, offsets: np.ndarray, max_tokens: int | None, eos: int):
    """Cut documents longer than max_tokens to their head, keeping EOS as the last token."""
    lengths = np.diff(offsets)
    if max_tokens is None or lengths.max(initial=0) <= max_tokens:
        return values, offsets
    new_len = np.minimum(lengths, max_tokens)
    new_off = np.zeros_like(offsets)
    np.cumsum(new_len, out=new_off[1:])
    starts = np.repeat(offsets[:-1], new_len)
    within = np.arange(new_off[-1]) - np.repeat(new_off[:-1], new_len)
    out = values[starts + within]
    cut = lengths > max_tokens
    out[new_off[1:][cut] - 1] = eos
    return out, new_off


def write_stage(
    stage: StageSpec,
    plan: StagePlan,
    docs: pa.Table,
    values: np.ndarray,
    offsets: np.ndarray,
    writer: StageWriter,
    seed: int,
) -> None:
    """Expand repeats, shuffle all copies with a seeded permutation, and write them."""
    tokens = pa.LargeListArray.from_arrays(pa.array(offsets, pa.int64()), pa.array(values))
    rows = np.repeat(np.arange(len(plan.repeats), dtype=np.int64), plan.repeats)
    first = np.repeat(np.cumsum(plan.repeats, dtype=np.int64) - plan.repeats, plan.repeats)
    copy = (np.arange(len(rows), dtype=np.int64) - first).astype(np.int32)
    perm = stage_rng(seed, stage.name, "shuffle").permutation(len(rows))
    rows, copy = rows[perm], copy[perm]
    meta = docs.select(["id", "domain", "source", "quality_bucket", "cluster_size"])
    for start in range(0, len(rows), WRITE_ROWS):
        idx = pa.array(rows[start : start + WRITE_ROWS])
        part = meta.take(idx)
        writer.write(
            {
                "tokens": tokens.take(idx).cast(pa.list_(pa.uint32())),
                "doc_id": part.column("id"),
                "domain": part.column("domain"),
                "source": part.column("source"),
                "quality_bucket": part.column("quality_bucket"),
                "cluster_size": part.column("cluster_size"),
                "copy": pa.array(copy[start : start + WRITE_ROWS]),
            }
        )


def top_bucket(docs: pa.Table, stats: dict | None) -> int:
    """The curated table's highest quality bucket: from curation's stats (its configured
    bucket count) when present, else the highest bucket in the table."""
    n = ((stats or {}).get("quality") or {}).get("buckets")
    if isinstance(n, int) and n >= 1:
        return n - 1
    return int(pc.max(docs.column("quality_bucket")).as_py() or 0)


def _check_output(out_dir: Path, recipe: Recipe) -> None:
    """Everything the mix will replace must be a previous mix's output (checked up front)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise MixOutputError(f"{out_dir}: output exists and is not a directory")
    if (out_dir / "tokenizer").exists() and not (out_dir / "tokenizer").is_dir():
        raise MixOutputError(f"{out_dir / 'tokenizer'}: exists and is not a directory")
    for stage in recipe.stages:
        check_replaceable(out_dir / stage.name)


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        tmp.replace(path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise write_error(e, path) from e


def run_mix(
    curated: str,
    recipe_path: str,
    output: str,
    tokenizer_path: str | None = None,
    seed: int | None = None,
) -> dict:
    """Build every stage of a recipe from a curated table; returns (and writes) plan.json.

    Every input is checked before the output directory is created, so a bad recipe, table
    or tokenizer leaves nothing behind. plan.json is the mark of a finished mix: it is
    removed first and written last.
    """
    recipe = load_recipe(recipe_path)
    seed = recipe.seed if seed is None else int(seed)
    if seed < 0:
        raise ValueError(f"--seed must be >= 0, got {seed}")
    out_dir = Path(output)
    _check_output(out_dir, recipe)
    table_path, stats_path = resolve_curated(curated)
    docs = read_curated(table_path)
    try:
        stats = json.loads(stats_path.read_text(encoding="utf-8")) if stats_path else None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CuratedTableError(f"{stats_path}: unreadable curate stats: {e}") from e
    check_quality_buckets(recipe, top_bucket(docs, stats), str(recipe_path), str(table_path))
    tok_source = tokenizer_path or recipe.tokenizer.path
    if tok_source:
        load_tokenizer(tok_source)

    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        (out_dir / "plan.json").unlink(missing_ok=True)
        summary = _materialise(recipe, docs, out_dir, tok_source, seed, table_path, stats)
        _write_json(out_dir / "plan.json", summary)
    except BaseException:
        if created and not any(out_dir.iterdir()):
            out_dir.rmdir()
        raise
    log.info("wrote %s", out_dir / "plan.json")
    return summary


def _materialise(
    recipe: Recipe,
    docs: pa.Table,
    out_dir: Path,
    tok_source: str | None,
    seed: int,
    table_path: Path,
    stats: dict | None,
) -> dict:
    """Tokenise once, then plan and write each stage; returns the plan.json content."""
    lineage = {"curated_path": str(table_path.resolve()), "curated_stats": stats}
    texts = docs.column("text").to_pylist()
    tok, tok_path = prepare_tokenizer(recipe, texts, out_dir, tok_source, seed)
    values, offsets = encode_documents(tok, texts)
    del texts
    docs = docs.drop_columns(["text"])
    eos = tok.token_to_id("<|eos|>")
    log.info("tokenised %d documents into %d tokens", len(offsets) - 1, len(values))

    recipe_dict = recipe_to_dict(recipe)
    domain = docs.column("domain").to_numpy(zero_copy_only=False).astype(str)
    cluster_size = docs.column("cluster_size").to_numpy()
    quality_bucket = docs.column("quality_bucket").to_numpy()
    summary: dict = {
        "recipe": recipe_dict,
        "recipe_sha256": canonical_sha256(recipe_dict),
        "seed": seed,
        "curated_docs": docs.num_rows,
        "curated_tokens": int(len(values)),
        "tokenizer": {
            **tokenizer_info(tok, tok_path),
            "path": os.path.relpath(tok_path, out_dir),
        },
        "stages": {},
    }
    for stage in recipe.stages:
        stage_values, stage_offsets = _truncate(values, offsets, stage.max_doc_tokens, eos)
        plan = plan_stage(np.diff(stage_offsets), domain, cluster_size, quality_bucket, stage, seed)
        stage_dir = out_dir / stage.name
        info = tokenizer_info(tok, tok_path, os.path.relpath(tok_path, stage_dir))
        with StageWriter(
            stage_dir,
            stage=stage.name,
            tokenizer=info,
            recipe=recipe_dict,
            seed=seed,
            lineage=lineage,
            rows_per_shard=recipe.rows_per_shard,
        ) as writer:
            write_stage(stage, plan, docs, stage_values, stage_offsets, writer, seed)
        manifest = writer.close()
        summary["stages"][stage.name] = {
            "dir": stage.name,
            "shards": len(manifest["shards"]),
            "rows": manifest["total_rows"],
            "tokens": manifest["total_tokens"],
            "tokens_by_domain": manifest["tokens_by_domain"],
            "tokens_by_quality_bucket": manifest["tokens_by_quality_bucket"],
            "report": plan.report,
        }
    return summary
