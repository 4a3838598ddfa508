"""Reading the curated table for a mix: the columns a plan needs, checked, in one place.

The table is curation's output (hive-partitioned Parquet, one row per kept document). Only
`id`, `domain` and `text` are required; `source`, `cluster_size`, `quality_bucket` and
`n_chars` default when absent. Ids must be unique: plans and shuffles are keyed by id
(`doc_keys`), which is what makes them independent of row order and partitioning.
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

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("id", "domain", "text")
OPTIONAL_COLUMNS = ("source", "cluster_size", "quality_bucket", "n_chars")


class CuratedTableError(ValueError):
    """The curated table is missing, empty, or lacks a required column."""


def resolve_curated(curated: str | os.PathLike[str]) -> tuple[Path, Path | None]:
    """Accept either the curate output dir (with curated/ and stats.json) or curated/ itself."""
    path = Path(curated)
    if not path.exists():
        raise CuratedTableError(f"{path}: curated table not found")
    if (path / "curated").is_dir():
        path = path / "curated"
    stats = path.parent / "stats.json"
    return path, stats if stats.is_file() else None


def load_stats(stats_path: Path | None) -> dict | None:
    """curate's stats.json beside the table (lineage, quality bucket count), if any."""
    if stats_path is None:
        return None
    try:
        return json.loads(stats_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CuratedTableError(f"{stats_path}: unreadable curate stats: {e}") from e


def curated_dataset(path: Path) -> ds.Dataset:
    """The table as a pyarrow dataset, its required columns checked."""
    try:
        dataset = ds.dataset(str(path), format="parquet", partitioning="hive")
    except (OSError, pa.ArrowInvalid) as e:
        raise CuratedTableError(f"{path}: cannot read curated Parquet dataset: {e}") from e
    missing = [c for c in REQUIRED_COLUMNS if c not in dataset.schema.names]
    if missing:
        raise CuratedTableError(
            f"{path}: curated table lacks column(s) {missing} (has {dataset.schema.names})")
    return dataset


def read_curated(path: Path, with_text: bool = True) -> pa.Table:
    """Read the table with defaults filled; `with_text=False` reads no text, only its
    length in characters (`n_chars`), which is what a plan-only view needs."""
    dataset = curated_dataset(path)
    names = set(dataset.schema.names)
    wanted = ["id", "domain", *(c for c in OPTIONAL_COLUMNS if c in names)]
    if with_text:
        table = dataset.to_table(columns=[*wanted, "text"])
    elif "n_chars" in names:
        table = dataset.to_table(columns=wanted)
    else:  # lengths batch by batch: the texts are never held together
        parts = []
        for batch in dataset.to_batches(columns=[*wanted, "text"]):
            t = pa.Table.from_batches([batch])
            n_chars = pc.utf8_length(t.column("text").cast(pa.string()))
            parts.append(t.drop_columns(["text"]).append_column("n_chars", n_chars))
        table = pa.concat_tables(parts) if parts else dataset.to_table(columns=wanted)
    if table.num_rows == 0:
        raise CuratedTableError(f"{path}: curated table has no rows")
    return _normalise(table, path, with_text)


def _normalise(table: pa.Table, path: Path, with_text: bool) -> pa.Table:
    n = table.num_rows
    names = set(table.column_names)

    def optional(name: str, typ: pa.DataType, default) -> pa.ChunkedArray:
        if name in names:
            return table.column(name).cast(typ).fill_null(default)
        return pa.chunked_array([pa.array(np.full(n, default), typ)])

    cols = {
        "id": table.column("id").cast(pa.string()),
        "domain": _plain(table.column("domain")).cast(pa.string()),
        "source": optional("source", pa.string(), "unknown"),
        "cluster_size": optional("cluster_size", pa.int64(), 1),
        "quality_bucket": optional("quality_bucket", pa.int32(), 0),
    }
    if with_text:
        cols["text"] = table.column("text").cast(pa.string())
        cols["n_chars"] = pc.utf8_length(cols["text"].fill_null("")).cast(pa.int64())
    else:
        cols["n_chars"] = table.column("n_chars").cast(pa.int64()).fill_null(0)
    for c in ("id", "domain", "text"):
        if c in cols and cols[c].null_count:
            raise CuratedTableError(f"{path}: column {c!r} has {cols[c].null_count} null value(s)")
    table = pa.table(cols).combine_chunks()
    check_unique_ids(table.column("id"), path)
    log.info("read %d curated documents from %s", n, path)
    return table


def check_unique_ids(ids: pa.ChunkedArray | pa.Array, path: Path) -> None:
    """Plans are keyed by id: two rows with one id would share their dice."""
    counts = pc.value_counts(ids)
    repeated = counts.filter(pc.greater(counts.field("counts"), 1))
    if len(repeated):
        examples = [v.as_py() for v in repeated.field("values")[:3]]
        raise CuratedTableError(
            f"{path}: column 'id' has {len(repeated)} repeated value(s), e.g. {examples}: "
            "plans are keyed by document id (curation quarantines repeated ids)")


def _plain(col: pa.ChunkedArray) -> pa.ChunkedArray:
    if pa.types.is_dictionary(col.type):
        return col.cast(col.type.value_type)
    return col


def top_bucket(quality_bucket: pa.ChunkedArray | pa.Array, stats: dict | None) -> int:
    """The curated table's highest quality bucket: from curation's stats (its configured
    bucket count) when present, else the highest bucket in the table."""
    n = ((stats or {}).get("quality") or {}).get("buckets")
    if isinstance(n, int) and n >= 1:
        return n - 1
    return int(pc.max(quality_bucket).as_py() or 0)
