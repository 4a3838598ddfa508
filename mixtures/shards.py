"""Stage shards: the on-disk contract between the mixture materialiser and any trainer.

A stage directory holds Arrow IPC *file*-format shards (memory-mappable, one record batch
per shard, one row per document copy) and a ``manifest.json`` written last, so a stage
without a manifest is by definition incomplete. Readers verify every shard's sha256, row
and token count against the manifest before a single token is trained on.

Pure pyarrow + numpy: the trainer imports this module, so it must never pull in Spark.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
SHARD_PATTERN = "shard-{:05d}.arrow"

SCHEMA = pa.schema(
    [
        pa.field("tokens", pa.list_(pa.uint32()), nullable=False),
        pa.field("doc_id", pa.string(), nullable=False),
        pa.field("domain", pa.dictionary(pa.int32(), pa.string()), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("quality_bucket", pa.int32(), nullable=False),
        pa.field("cluster_size", pa.int64(), nullable=False),
        pa.field("copy", pa.int32(), nullable=False),
    ]
)
# Arrow list offsets are int32: keep a shard well below 2**31 tokens even for 128k-token docs.
DEFAULT_MAX_SHARD_TOKENS = 1 << 28
TOKENIZER_KEYS = ("path", "sha256", "vocab_size", "bos_id", "eos_id")


class ShardError(ValueError):
    """A stage directory or shard is unusable: corrupted, truncated, mismatched or missing."""


def file_sha256(path: str | os.PathLike[str], chunk_bytes: int = 8 << 20) -> str:
    """Hex sha256 of a file, streamed so multi-GB shards do not need to fit in memory."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_bytes):
            h.update(chunk)
    return h.hexdigest()


def canonical_sha256(obj: Any) -> str:
    """sha256 of a JSON-able object in canonical form (sorted keys, no whitespace)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _to_table(batch: Mapping[str, Any] | pa.Table | pa.RecordBatch, where: str) -> pa.Table:
    """Coerce a dict of columns / table / batch to the shard schema (domain as plain strings)."""
    if isinstance(batch, pa.RecordBatch):
        batch = pa.Table.from_batches([batch])
    if not isinstance(batch, pa.Table):
        batch = pa.table(dict(batch))
    missing = [f.name for f in SCHEMA if f.name not in batch.column_names]
    if missing:
        raise ValueError(f"{where}: write() is missing column(s) {missing}; needs {SCHEMA.names}")
    columns = []
    for field in SCHEMA:
        col = batch.column(field.name)
        target = pa.string() if field.name == "domain" else field.type
        if pa.types.is_dictionary(col.type):
            col = col.cast(col.type.value_type)
        if col.null_count:
            raise ValueError(f"{where}: column {field.name!r} has {col.null_count} null(s)")
        try:
            col = col.cast(target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
            raise ValueError(
                f"{where}: column {field.name!r} ({col.type}) is not {target}: {e}"
            ) from e
        columns.append(col)
    names = SCHEMA.names
    return pa.table(columns, names=names)


def _token_lengths(tokens: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return pc.list_value_length(tokens).to_numpy(zero_copy_only=False).astype(np.int64)


class StageWriter:
    """Appends document copies to a stage directory, splitting them into checksummed shards.

    Shards are written to ``*.tmp`` and renamed, and ``manifest.json`` is written last
    (also via rename), so readers never see a half-written stage as complete.
    """

    def __init__(
        self,
        stage_dir: str | os.PathLike[str],
        *,
        stage: str,
        tokenizer: dict,
        recipe: dict,
        seed: int,
        lineage: dict,
        rows_per_shard: int = 50_000,
        max_shard_tokens: int = DEFAULT_MAX_SHARD_TOKENS,
    ) -> None:
        self.stage_dir = Path(stage_dir)
        missing = [k for k in TOKENIZER_KEYS if k not in tokenizer]
        if missing:
            raise ValueError(f"StageWriter({self.stage_dir}): tokenizer dict lacks {missing}")
        if rows_per_shard < 1 or max_shard_tokens < 1:
            raise ValueError(f"StageWriter({self.stage_dir}): rows_per_shard/max_shard_tokens < 1")
        self.stage = stage
        self.tokenizer = dict(tokenizer)
        self.recipe = recipe
        self.seed = int(seed)
        self.lineage = lineage
        self.rows_per_shard = int(rows_per_shard)
        self.max_shard_tokens = int(max_shard_tokens)
        self._vocab_size = int(tokenizer["vocab_size"])
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self._pending_tokens = 0
        self._shards: list[dict] = []
        self._by_domain: dict[str, int] = {}
        self._by_bucket: dict[int, int] = {}
        self._closed = False
        self._manifest: dict | None = None
        self.stage_dir.mkdir(parents=True, exist_ok=True)
        # A previous run's manifest would make a half-rewritten stage look complete.
        stale = [self.stage_dir / MANIFEST_NAME, *self.stage_dir.glob("shard-*.arrow*")]
        for path in stale:
            if path.is_file():
                path.unlink()

    def __enter__(self) -> StageWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self._closed = True  # leave no manifest: the stage stays visibly incomplete

    def write(self, batch: Mapping[str, Any] | pa.Table | pa.RecordBatch) -> None:
        """Append rows (dict of columns, Table or RecordBatch in the shard schema)."""
        if self._closed:
            raise ValueError(f"StageWriter({self.stage_dir}): write() after close()")
        table = _to_table(batch, f"StageWriter({self.stage_dir})")
        if table.num_rows == 0:
            return
        values = pc.list_flatten(table.column("tokens"))
        if len(values) and pc.max(values).as_py() >= self._vocab_size:
            raise ValueError(
                f"StageWriter({self.stage_dir}): token id {pc.max(values).as_py()} >= "
                f"tokenizer vocab_size {self._vocab_size}"
            )
        lengths = _token_lengths(table.column("tokens"))
        cum = np.concatenate([[0], np.cumsum(lengths)])
        start, n_rows = 0, table.num_rows
        # Cut the incoming rows wherever the pending shard fills up (rows or tokens).
        while start < n_rows:
            room_rows = self.rows_per_shard - self._pending_rows
            room_tokens = self.max_shard_tokens - self._pending_tokens
            fit = int(np.searchsorted(cum[start:], cum[start] + room_tokens, side="right")) - 1
            k = min(room_rows, fit, n_rows - start)
            if k == 0:
                if self._pending_rows:
                    self._flush()
                    continue
                k = 1  # one document larger than max_shard_tokens gets a shard of its own
                if lengths[start] >= 2**31:
                    raise ValueError(
                        f"StageWriter({self.stage_dir}): document of "
                        f"{lengths[start]} tokens exceeds Arrow list offsets"
                    )
            self._append(table.slice(start, k), int(cum[start + k] - cum[start]))
            start += k
            if (
                self._pending_rows >= self.rows_per_shard
                or self._pending_tokens >= self.max_shard_tokens
            ):
                self._flush()

    def _append(self, table: pa.Table, n_tokens: int) -> None:
        if table.num_rows:
            self._pending.append(table)
            self._pending_rows += table.num_rows
            self._pending_tokens += n_tokens

    def _flush(self) -> None:
        if not self._pending_rows:
            return
        table = pa.concat_tables(self._pending).combine_chunks()
        self._pending, self._pending_rows, self._pending_tokens = [], 0, 0
        domain = table.column("domain").combine_chunks().dictionary_encode()
        domain = domain.cast(pa.dictionary(pa.int32(), pa.string()))
        table = table.set_column(SCHEMA.get_field_index("domain"), SCHEMA.field("domain"), domain)
        table = table.cast(SCHEMA)
        lengths = _token_lengths(table.column("tokens"))
        n_tokens = int(lengths.sum())
        stats = pa.table(
            {
                "domain": table.column("domain").cast(pa.string()),
                "quality_bucket": table.column("quality_bucket"),
                "n": lengths,
            }
        )
        for row in stats.group_by("domain").aggregate([("n", "sum")]).to_pylist():
            self._by_domain[row["domain"]] = self._by_domain.get(row["domain"], 0) + row["n_sum"]
        for row in stats.group_by("quality_bucket").aggregate([("n", "sum")]).to_pylist():
            b = int(row["quality_bucket"])
            self._by_bucket[b] = self._by_bucket.get(b, 0) + row["n_sum"]

        name = SHARD_PATTERN.format(len(self._shards))
        final = self.stage_dir / name
        tmp = final.with_name(name + ".tmp")
        batch = table.to_batches(max_chunksize=None)
        with pa.OSFile(str(tmp), "wb") as sink, ipc.new_file(sink, SCHEMA) as writer:
            for b in batch:  # one batch after combine_chunks
                writer.write_batch(b)
        os.replace(tmp, final)
        self._shards.append(
            {"path": name, "sha256": file_sha256(final), "rows": table.num_rows, "tokens": n_tokens}
        )
        log.info(
            "stage %s: wrote %s (%d rows, %d tokens)", self.stage, name, table.num_rows, n_tokens
        )

    def close(self) -> dict:
        """Flush the last shard, write manifest.json last (atomically) and return it."""
        if self._manifest is not None:
            return self._manifest
        if self._closed:
            raise ValueError(f"StageWriter({self.stage_dir}): closed after an error; no manifest")
        self._flush()
        self._closed = True
        manifest = {
            "format_version": FORMAT_VERSION,
            "stage": self.stage,
            "tokenizer": self.tokenizer,
            "recipe": self.recipe,
            "recipe_sha256": canonical_sha256(self.recipe),
            "seed": self.seed,
            "shards": self._shards,
            "total_rows": sum(s["rows"] for s in self._shards),
            "total_tokens": sum(s["tokens"] for s in self._shards),
            "tokens_by_domain": dict(sorted(self._by_domain.items())),
            "tokens_by_quality_bucket": {str(k): v for k, v in sorted(self._by_bucket.items())},
            "lineage": self.lineage,
        }
        tmp = self.stage_dir / (MANIFEST_NAME + ".tmp")
        tmp.write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n", encoding="utf-8")
        os.replace(tmp, self.stage_dir / MANIFEST_NAME)
        self._manifest = manifest
        return manifest


class StageShards:
    """Read side of a stage directory: manifest, memory-mapped shards, zero-copy token views."""

    def __init__(self, stage_dir: Path, manifest: dict) -> None:
        self.stage_dir = stage_dir
        self.manifest = manifest
        self.num_shards = len(manifest["shards"])
        self.total_tokens = int(sum(s["tokens"] for s in manifest["shards"]))
        self.total_rows = int(sum(s["rows"] for s in manifest["shards"]))

    @classmethod
    def open(cls, stage_dir: str | os.PathLike[str], verify: bool = True) -> StageShards:
        """Load the manifest; with ``verify`` check every shard's sha256, rows and tokens."""
        stage_dir = Path(stage_dir)
        path = stage_dir / MANIFEST_NAME
        if not path.is_file():
            raise ShardError(f"{path}: missing manifest (stage not written or not finished)")
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ShardError(f"{path}: unreadable manifest: {e}") from e
        if not isinstance(manifest, dict):
            raise ShardError(f"{path}: manifest is not a JSON object")
        version = manifest.get("format_version")
        if version != FORMAT_VERSION:
            raise ShardError(
                f"{path}: format_version {version!r}, this reader needs {FORMAT_VERSION}"
            )
        for key in ("stage", "tokenizer", "shards", "seed"):
            if key not in manifest:
                raise ShardError(f"{path}: manifest lacks {key!r}")
        for i, s in enumerate(manifest["shards"]):
            if not isinstance(s, dict) or not {"path", "sha256", "rows", "tokens"} <= s.keys():
                raise ShardError(f"{path}: shards[{i}] needs path, sha256, rows, tokens")
            if Path(s["path"]).is_absolute() or ".." in Path(s["path"]).parts:
                raise ShardError(f"{path}: shards[{i}].path {s['path']!r} must be relative")
        shards = cls(stage_dir, manifest)
        if verify:
            for i in range(shards.num_shards):
                shards.verify_shard(i)
        return shards

    def __len__(self) -> int:
        return self.num_shards

    def shard_path(self, i: int) -> Path:
        if not 0 <= i < self.num_shards:
            raise IndexError(f"{self.stage_dir}: shard {i} out of range [0, {self.num_shards})")
        return self.stage_dir / self.manifest["shards"][i]["path"]

    def verify_shard(self, i: int) -> None:
        """Check shard i's checksum first (cheap to explain), then its rows and tokens."""
        entry = self.manifest["shards"][i]
        path = self.shard_path(i)
        if not path.is_file():
            raise ShardError(f"{path}: shard listed in the manifest is missing")
        digest = file_sha256(path)
        if digest != entry["sha256"]:
            raise ShardError(
                f"{path}: checksum mismatch (sha256 {digest}, manifest says {entry['sha256']}); "
                "the shard is corrupted or truncated"
            )
        table = self.shard(i)
        tokens = int(_token_lengths(table.column("tokens")).sum())
        if table.num_rows != entry["rows"] or tokens != entry["tokens"]:
            raise ShardError(
                f"{path}: {table.num_rows} rows / {tokens} tokens, manifest says "
                f"{entry['rows']} / {entry['tokens']}"
            )

    def shard(self, i: int) -> pa.Table:
        """Shard i as a Table backed by a memory map (no read into process memory)."""
        path = self.shard_path(i)
        try:
            source = pa.memory_map(str(path), "r")
            table = ipc.open_file(source).read_all()
        except (OSError, pa.ArrowInvalid) as e:
            raise ShardError(f"{path}: not a readable Arrow IPC file (truncated?): {e}") from e
        if not table.schema.equals(SCHEMA):
            raise ShardError(f"{path}: schema {table.schema} differs from the shard schema")
        return table

    def tokens(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(uint32 token values, int64 document offsets) of shard i.

        Values are a zero-copy view of the memory map; offsets (8 bytes per document)
        are widened from Arrow's int32 and rebased so ``offsets[0] == 0``.
        """
        column = self.shard(i).column("tokens")
        arr = column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
        offsets32 = np.frombuffer(arr.buffers()[1], dtype=np.int32)
        offsets32 = offsets32[arr.offset : arr.offset + len(arr) + 1]
        base = int(offsets32[0]) if len(offsets32) else 0
        offsets = offsets32.astype(np.int64) - base
        child = arr.values
        values = np.frombuffer(child.buffers()[1], dtype=np.uint32)
        values = values[
            child.offset + base : child.offset + base + int(offsets[-1] if len(offsets) else 0)
        ]
        return values, offsets

    def iter_tables(self):
        """Yield each shard's Table in order (checksums were checked at open when verify=True)."""
        for i in range(self.num_shards):
            yield self.shard(i)
