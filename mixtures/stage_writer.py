"""Writing a stage: document copies in, checksummed Arrow shards and manifest.json out.

The stage is built in a hidden sibling directory and renamed into place only when its
manifest is written, so an interrupted or failed write (a full disk, a killed process)
never leaves a stage that looks complete, and a rerun starts from nothing.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc

from mixtures.shard_format import (
    DEFAULT_MAX_SHARD_TOKENS,
    FORMAT_VERSION,
    KIND_FORMAT_VERSION,
    MANIFEST_NAME,
    PRETRAIN,
    SCHEMAS,
    SFT,
    SHARD_PATTERN,
    SUMMED,
    TOKEN_COLUMNS,
    TOKENIZER_KEYS,
    ShardError,
    canonical_sha256,
    file_sha256,
    row_tokens,
    shard_breakdowns,
    token_lengths,
)

log = logging.getLogger(__name__)

# reference_logps/: what DPO derives from a preference stage's pairs (keyed by pair_index),
# dropped with the stage it was computed from when a rewrite replaces it.
_STAGE_FILE = re.compile(r"^(shard-\d{5,}\.arrow|manifest\.json)(\.tmp)?$|^reference_logps$")


def _to_table(
    batch: Mapping[str, Any] | pa.Table | pa.RecordBatch, where: str, schema: pa.Schema
) -> pa.Table:
    """Coerce a dict of columns / table / batch to the shard schema (domain as plain strings)."""
    if isinstance(batch, pa.RecordBatch):
        batch = pa.Table.from_batches([batch])
    if not isinstance(batch, pa.Table):
        batch = pa.table(dict(batch))
    missing = [f.name for f in schema if f.name not in batch.column_names]
    if missing:
        raise ValueError(f"{where}: write() is missing column(s) {missing}; needs {schema.names}")
    columns = []
    for field in schema:
        col = batch.column(field.name)
        target = pa.string() if field.name == "domain" else field.type
        if pa.types.is_dictionary(col.type):
            col = col.cast(col.type.value_type)
        if col.null_count and not field.nullable:  # a task's absent answer or tests
            raise ValueError(f"{where}: column {field.name!r} has {col.null_count} null(s)")
        try:
            col = col.cast(target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
            raise ValueError(
                f"{where}: column {field.name!r} ({col.type}) is not {target}: {e}"
            ) from e
        columns.append(col)
    return pa.table(columns, names=schema.names)


def write_shard_file(
    table: pa.Table, final: Path, schema: pa.Schema, kind: str, what: str = "shard"
) -> dict:
    """Write rows as one Arrow IPC file (one record batch, domain dictionary-encoded in
    order of appearance), via a temp file and rename; return its manifest entry sans path.

    Every engine writes shards through this function, so equal rows give equal bytes.
    """
    table = table.combine_chunks()
    domain = table.column("domain").combine_chunks().dictionary_encode()
    domain = domain.cast(pa.dictionary(pa.int32(), pa.string()))
    at = schema.get_field_index("domain")
    table = table.set_column(at, schema.field("domain"), domain).cast(schema)
    table = pa.table([_no_validity(c.combine_chunks()) for c in table.columns], schema=schema)
    breakdowns = shard_breakdowns(table, kind)
    tmp = final.with_name(final.name + ".tmp")
    try:
        with pa.OSFile(str(tmp), "wb") as sink, ipc.new_file(sink, schema) as writer:
            for b in table.to_batches(max_chunksize=None):  # one batch after combine_chunks
                writer.write_batch(b)
        os.replace(tmp, final)
    except OSError as e:
        tmp.unlink(missing_ok=True)  # free the space now, not only on abort()
        raise write_error(e, tmp, what) from e
    return {
        "sha256": file_sha256(final),
        "rows": table.num_rows,
        "tokens": sum(breakdowns["tokens_by_domain"].values()),
        **breakdowns,
    }


def _no_validity(arr: pa.Array) -> pa.Array:
    """The same values without an all-valid null bitmap: whether an array carries one
    depends on where it was built (Spark's Arrow batches do), and the IPC file writes it,
    so equal rows would give unequal bytes."""
    if arr.null_count or pa.types.is_dictionary(arr.type):
        return arr
    if pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type):
        return type(arr).from_arrays(arr.offsets, _no_validity(arr.values), type=arr.type)
    if arr.buffers()[0] is None:
        return arr
    return pa.Array.from_buffers(arr.type, len(arr), [None, *arr.buffers()[1:]], 0, arr.offset)


def write_error(e: OSError, path: Path, what: str = "") -> OSError:
    """The same failure as an OSError naming the file (errno kept: ENOSPC stays ENOSPC), so
    the CLI can report it in one line; pyarrow's and write_text's errors name no file."""
    target = str(e.filename or path)
    doing = f"cannot write {what}".rstrip()
    if e.errno:
        return OSError(e.errno, f"{doing}: {os.strerror(e.errno)}", target)
    return OSError(f"{target}: {doing}: {e}")


def check_replaceable(stage_dir: str | os.PathLike[str]) -> None:
    """Refuse to replace a path that is not a stage directory, so a rewrite never deletes
    anything but shards and a manifest (e.g. a stage named like a user's directory)."""
    path = Path(stage_dir)
    if not path.exists():
        return
    if not path.is_dir():
        raise ShardError(f"{path}: exists and is not a stage directory; will not replace it")
    foreign = sorted(c.name for c in path.iterdir() if not _STAGE_FILE.match(c.name))
    if foreign:
        raise ShardError(
            f"{path}: holds {foreign[:3]} besides shards and a manifest; not a stage "
            "directory, will not replace it"
        )


class StageWriter:
    """Appends document copies to a stage, splitting them into checksummed shards.

    Everything goes into a hidden sibling, ``.<stage>.partial/`` (shards, then
    ``manifest.json`` last), which is renamed onto the stage directory only when
    complete; an error removes it. So a reader sees a complete stage or none. A rewrite
    removes the old stage's manifest first: a failed rerun leaves no stale stage that
    still looks current (its shards may belong to another tokenizer or recipe).

    ``kind`` picks the shard schema (`mixtures.shard_format.SCHEMAS`); post-training kinds
    write a version 3 manifest carrying it, plus ``extra`` (e.g. the records skipped).
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
        kind: str = PRETRAIN,
        extra: dict | None = None,
    ) -> None:
        self.stage_dir = Path(stage_dir)
        if kind not in SCHEMAS:
            raise ValueError(f"StageWriter({self.stage_dir}): kind {kind!r} not in {list(SCHEMAS)}")
        self.kind, self.schema, self.extra = kind, SCHEMAS[kind], dict(extra or {})
        missing = [k for k in TOKENIZER_KEYS if k not in tokenizer]
        if missing:
            raise ValueError(f"StageWriter({self.stage_dir}): tokenizer dict lacks {missing}")
        if rows_per_shard < 1 or max_shard_tokens < 1:
            raise ValueError(f"StageWriter({self.stage_dir}): rows_per_shard/max_shard_tokens < 1")
        check_replaceable(self.stage_dir)
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
        self._closed = False
        self._manifest: dict | None = None
        final = Path(os.path.abspath(self.stage_dir))
        self._partial = final.with_name(f".{final.name}.partial")
        self._old = final.with_name(f".{final.name}.old")
        try:
            shutil.rmtree(self._partial, ignore_errors=True)  # left by a killed run
            self._partial.mkdir(parents=True)
            (self.stage_dir / MANIFEST_NAME).unlink(missing_ok=True)
        except OSError as e:
            raise write_error(e, self._partial, f"stage {stage!r}") from e

    def __enter__(self) -> StageWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def abort(self) -> None:
        """Drop everything written so far; the stage stays visibly absent (no manifest)."""
        self._closed = True
        shutil.rmtree(self._partial, ignore_errors=True)

    def write(self, batch: Mapping[str, Any] | pa.Table | pa.RecordBatch) -> None:
        """Append rows (dict of columns, Table or RecordBatch in the shard schema)."""
        if self._closed:
            raise ValueError(f"StageWriter({self.stage_dir}): write() after close()")
        table = _to_table(batch, f"StageWriter({self.stage_dir})", self.schema)
        if table.num_rows == 0:
            return
        for column in TOKEN_COLUMNS[self.kind]:
            values = pc.list_flatten(table.column(column))
            if len(values) and pc.max(values).as_py() >= self._vocab_size:
                raise ValueError(
                    f"StageWriter({self.stage_dir}): token id {pc.max(values).as_py()} >= "
                    f"tokenizer vocab_size {self._vocab_size}"
                )
        if self.kind == SFT:
            self._check_loss_mask(table)
        lengths = row_tokens(table, self.kind)
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

    def _check_loss_mask(self, table: pa.Table) -> None:
        """One 0/1 flag per token, so a mask can never drift against its tokens."""
        mask = table.column("loss_mask")
        if not np.array_equal(token_lengths(mask), token_lengths(table.column("tokens"))):
            raise ValueError(
                f"StageWriter({self.stage_dir}): loss_mask and tokens differ in length"
            )
        flat = pc.list_flatten(mask)
        if len(flat) and pc.max(flat).as_py() > 1:
            raise ValueError(
                f"StageWriter({self.stage_dir}): loss_mask holds values other than 0/1"
            )

    def _append(self, table: pa.Table, n_tokens: int) -> None:
        if table.num_rows:
            self._pending.append(table)
            self._pending_rows += table.num_rows
            self._pending_tokens += n_tokens

    def write_shard(self, batch: Mapping[str, Any] | pa.Table | pa.RecordBatch) -> None:
        """Write these rows as one whole shard (whatever rows_per_shard says): for callers
        that decide the cut themselves, so that every engine cuts a stage alike."""
        if self._closed:
            raise ValueError(f"StageWriter({self.stage_dir}): write_shard() after close()")
        self._flush()
        table = _to_table(batch, f"StageWriter({self.stage_dir})", self.schema)
        if table.num_rows:
            self._append(table, 0)
            self._flush()

    @property
    def partial_dir(self) -> Path:
        """Where shards are written until the stage is complete (for writers on executors)."""
        return self._partial

    def adopt_shard(self, written: Path, entry: dict) -> None:
        """Take a shard file written into `partial_dir` by `write_shard_file` elsewhere (a
        Spark executor) as the next shard, with the entry it returned."""
        if self._closed:
            raise ValueError(f"StageWriter({self.stage_dir}): adopt_shard() after close()")
        if written.parent.resolve() != self._partial.resolve():
            raise ValueError(f"StageWriter({self.stage_dir}): {written} is not in {self._partial}")
        self._flush()
        name = SHARD_PATTERN.format(len(self._shards))
        os.replace(written, self._partial / name)
        self._shards.append({"path": name, **entry})

    def _flush(self) -> None:
        if not self._pending_rows:
            return
        table = pa.concat_tables(self._pending)
        self._pending, self._pending_rows, self._pending_tokens = [], 0, 0
        name = SHARD_PATTERN.format(len(self._shards))
        entry = write_shard_file(table, self._partial / name, self.schema, self.kind,
                                 f"stage {self.stage!r}")
        self._shards.append({"path": name, **entry})
        log.info("stage %s: wrote %s (%d rows, %d tokens)", self.stage, name, entry["rows"],
                 entry["tokens"])

    def _totals(self, key: str) -> dict[str, int]:
        total: dict[str, int] = {}
        for s in self._shards:
            for k, v in s[key].items():
                total[k] = total.get(k, 0) + v
        return total

    def close(self) -> dict:
        """Flush the last shard, write manifest.json last, move the stage into place."""
        if self._manifest is not None:
            return self._manifest
        if self._closed:
            raise ValueError(f"StageWriter({self.stage_dir}): closed after an error; no manifest")
        try:
            self._flush()
            manifest = self._manifest_fields()
            path = self._partial / MANIFEST_NAME
            try:
                path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
            except OSError as e:
                raise write_error(e, path, f"stage {self.stage!r}") from e
            self._move_into_place()
        except BaseException:
            self.abort()
            raise
        self._closed = True
        self._manifest = manifest
        return manifest

    def _manifest_fields(self) -> dict:
        """Pre-training keeps its version 2 manifest; other kinds add kind, totals, extra."""
        shards = self._shards
        manifest = {
            "format_version": FORMAT_VERSION if self.kind == PRETRAIN else KIND_FORMAT_VERSION,
            **({} if self.kind == PRETRAIN else {"kind": self.kind}),
            "stage": self.stage,
            "tokenizer": self.tokenizer,
            "recipe": self.recipe,
            "recipe_sha256": canonical_sha256(self.recipe),
            "seed": self.seed,
            "shards": shards,
            "total_rows": sum(s["rows"] for s in shards),
            "total_tokens": sum(s["tokens"] for s in shards),
            "tokens_by_domain": dict(sorted(self._totals("tokens_by_domain").items())),
        }
        if self.kind == PRETRAIN:
            buckets = self._totals("tokens_by_quality_bucket")
            manifest["tokens_by_quality_bucket"] = {k: buckets[k] for k in sorted(buckets, key=int)}
        for key in SUMMED.get(self.kind, ()):
            manifest[key] = sum(s[key] for s in shards)
        clash = sorted(manifest.keys() & self.extra.keys())
        if clash:
            raise ValueError(f"StageWriter({self.stage_dir}): extra fields {clash} are reserved")
        return {**manifest, **self.extra, "lineage": self.lineage}

    def _move_into_place(self) -> None:
        """Swap the finished .partial directory in by rename (the old stage, if any, out)."""
        shutil.rmtree(self._old, ignore_errors=True)
        if self.stage_dir.exists():
            check_replaceable(self.stage_dir)
            os.replace(self.stage_dir, self._old)
        os.replace(self._partial, self.stage_dir)
        shutil.rmtree(self._old, ignore_errors=True)
