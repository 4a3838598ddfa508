"""Stage shards: the on-disk contract between the mixture materialiser and any trainer.

A stage directory holds Arrow IPC *file*-format shards (memory-mappable, one record batch
per shard, one row per document copy) and a ``manifest.json`` written last, so a stage
without a manifest is by definition incomplete (`mixtures.stage_writer` builds a stage
aside and renames it into place only when complete). Opening a stage always checks the
manifest's totals and that every listed shard exists with the rows and tokens it states
(cheap: the Arrow footer and list offsets, no data read). Each shard's sha256 (and its
per-domain token counts) is checked either up front (``verify=True``, for tools that
validate a stage), or on first read (``verify="on_read"``, the trainer): a shard is hashed
by one background thread when a reader first asks for it or prefetches it, and
`StageShards.tokens` / `StageShards.rows` block until that shard is verified, so no token
of an unverified shard is ever returned, yet no rank hashes a whole stage before step 1.

Post-training stages (``kind`` in the manifest) use the same directory and checks with
their own schema: an SFT stage adds `loss_mask`, a preference stage is read by `pairs`, a
task stage (RL and evaluation prompts) by `tasks`.

Pure pyarrow + numpy: the trainer imports this module, so it must never pull in Spark.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

from mixtures.shard_format import (
    FORMAT_VERSION,
    MANIFEST_NAME,
    PREFERENCES,
    SCHEMA,
    SCHEMAS,
    SFT,
    TASKS,
    ShardError,
    canonical_sha256,
    file_sha256,
    load_manifest,
    manifest_kind,
    shard_breakdowns,
    table_tokens,
)
from mixtures.stage_writer import StageWriter, check_replaceable

__all__ = [
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "ON_READ",
    "PairArrays",
    "SCHEMA",
    "ShardError",
    "StageShards",
    "StageWriter",
    "TaskArrays",
    "canonical_sha256",
    "check_replaceable",
    "file_sha256",
]


ON_READ = "on_read"
Verify = bool | Literal["on_read"]

_hasher: tuple[int, ThreadPoolExecutor] | None = None  # (owning pid, executor)
_hasher_lock = threading.Lock()


def background_hasher() -> ThreadPoolExecutor:
    """The process's one shard-hashing thread, shared by every stage. One worker is enough
    (file reads and hashlib release the GIL, and hashing is far faster than training
    consumes a shard) and keeps verification off the cores that feed the model. A forked
    child gets its own (the parent's thread does not exist there)."""
    global _hasher
    with _hasher_lock:
        if _hasher is None or _hasher[0] != os.getpid():
            pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shard-sha256")
            _hasher = (os.getpid(), pool)
        return _hasher[1]


class PairArrays(NamedTuple):
    """A preference shard's columns as (uint32 values, int64 offsets), like `tokens`."""

    prompt: tuple[np.ndarray, np.ndarray]
    chosen: tuple[np.ndarray, np.ndarray]
    rejected: tuple[np.ndarray, np.ndarray]
    domains: np.ndarray  # int64 index into `StageShards.domains`, per pair
    first_index: int  # the stage-wide index of the shard's first pair (manifest order)


class TaskArrays(NamedTuple):
    """A task shard's prompts as (uint32 values, int64 offsets), and each task's reference
    answer or tests (exactly one is set per task, the other None)."""

    prompt: tuple[np.ndarray, np.ndarray]
    answers: list[str | None]
    tests: list[str | None]
    domains: np.ndarray  # int64 index into `StageShards.domains`, per task
    first_index: int  # the stage-wide index of the shard's first task (its `task_index`)


class StageShards:
    """Read side of a stage directory: manifest, memory-mapped shards, zero-copy token views.

    ``domains`` is the stage's domain list, sorted names from the manifest's
    ``tokens_by_domain``, so every rank and every resume maps a domain to the same index.
    Hash statistics (``hash_requests``: shards whose check was started, in order;
    ``hashes_completed``: shard files hashed) let callers and tests see what was hashed.
    ``kind`` is "pretrain", "sft", "preferences" or "tasks"; ``row_starts[i]`` is shard i's
    first row as a stage-wide index (a pair's stable ``pair_index``, a task's ``task_index``).
    """

    def __init__(self, stage_dir: Path, manifest: dict, *, on_read: bool = False) -> None:
        self.stage_dir = stage_dir
        self.manifest_path = stage_dir / MANIFEST_NAME
        self.manifest = manifest
        self.num_shards = len(manifest["shards"])
        self.total_tokens = int(sum(s["tokens"] for s in manifest["shards"]))
        self.total_rows = int(sum(s["rows"] for s in manifest["shards"]))
        self.kind = manifest_kind(manifest)
        self.schema = SCHEMAS[self.kind]
        self.row_starts = np.cumsum([0] + [int(s["rows"]) for s in manifest["shards"]])
        self.domains: list[str] = sorted(str(d) for d in manifest["tokens_by_domain"])
        self._domain_index = {d: i for i, d in enumerate(self.domains)}
        self.verifies_on_read = on_read
        self.hash_requests: list[int] = []
        self.hashes_completed = 0
        self._checks: dict[int, Future[None]] = {}
        self._lock = threading.Lock()

    @classmethod
    def open(cls, stage_dir: str | os.PathLike[str], verify: Verify = True) -> StageShards:
        """Check the manifest's totals and every shard: always that it exists with the rows
        and tokens listed (cheap); ``verify=True`` adds each shard's sha256 and per-domain
        tokens now, ``verify="on_read"`` the same checks in the background on first read."""
        if verify not in (True, False, ON_READ):
            raise ValueError(f"verify must be True, False or {ON_READ!r}, got {verify!r}")
        stage_dir = Path(stage_dir)
        on_read = verify == ON_READ
        shards = cls(stage_dir, load_manifest(stage_dir / MANIFEST_NAME), on_read=on_read)
        shards.check_tokenizer()
        for i in range(shards.num_shards):
            if verify and not on_read:
                shards.verify_shard(i)
            else:
                shards.check_shard(i)
        return shards

    def __len__(self) -> int:
        return self.num_shards

    def shard_path(self, i: int) -> Path:
        if not 0 <= i < self.num_shards:
            raise IndexError(f"{self.stage_dir}: shard {i} out of range [0, {self.num_shards})")
        return self.stage_dir / self.manifest["shards"][i]["path"]

    def check_tokenizer(self) -> None:
        """If the manifest's tokenizer file is present, it must be the one the stage used
        (a failed rerun with a new tokenizer must not pair it with older stages)."""
        tok = self.manifest["tokenizer"]
        path = self.stage_dir / str(tok["path"])
        if path.is_file() and file_sha256(path) != tok["sha256"]:
            raise ShardError(
                f"{path}: sha256 differs from tokenizer.sha256 in {self.manifest_path}; the "
                "stage was tokenised with another tokenizer (rerun sharpen mix)"
            )

    def check_shard(self, i: int) -> pa.Table:
        """Shard i exists and its Arrow footer, schema, rows and tokens match the manifest.

        Reads only metadata and two list offsets of the memory map, so opening a stage of
        thousands of shards stays cheap without ``verify``.
        """
        entry = self.manifest["shards"][i]
        path = self.shard_path(i)
        if not path.is_file():
            raise ShardError(f"{path}: shard listed in {self.manifest_path} is missing")
        table = self.shard(i)
        tokens = table_tokens(table, self.kind)
        if table.num_rows != entry["rows"] or tokens != entry["tokens"]:
            raise ShardError(
                f"{path}: {table.num_rows} rows / {tokens} tokens, {self.manifest_path} says "
                f"{entry['rows']} / {entry['tokens']}"
            )
        return table

    def verify_shard(self, i: int) -> None:
        """Check shard i's checksum first (cheap to explain), then counts and breakdowns."""
        entry = self.manifest["shards"][i]
        path = self.shard_path(i)
        if not path.is_file():
            raise ShardError(f"{path}: shard listed in {self.manifest_path} is missing")
        digest = file_sha256(path)
        with self._lock:
            self.hashes_completed += 1
        if digest != entry["sha256"]:
            raise ShardError(
                f"{path}: checksum mismatch: sha256 is {digest}, {self.manifest_path} expects "
                f"{entry['sha256']}; the shard is corrupted or truncated"
            )
        table = self.check_shard(i)
        if "tokens_by_domain" in entry:  # format_version >= 2
            for key, counts in shard_breakdowns(table, self.kind).items():
                if counts != entry[key]:
                    raise ShardError(
                        f"{path}: {key} {counts}, {self.manifest_path} says {entry[key]}"
                    )

    # ---- verification on first read (verify="on_read") -------------------------------
    def prefetch(self, i: int) -> None:
        """Start verifying shard i in the background, once; a no-op unless verifying on read."""
        if not self.verifies_on_read:
            return
        self.shard_path(i)  # range check, in the caller's thread
        with self._lock:
            if i not in self._checks:
                self._checks[i] = background_hasher().submit(self._verify_in_background, i)
                self.hash_requests.append(i)

    def wait_verified(self, i: int) -> None:
        """Block until shard i's sha256 and counts are checked; raise if they do not match."""
        if not self.verifies_on_read:
            return
        self.prefetch(i)
        error = self._checks[i].exception()
        if isinstance(error, ShardError):
            raise ShardError(str(error)) from error  # a fresh error each time it is asked
        if error is not None:
            raise error

    def _verify_in_background(self, i: int) -> None:
        try:
            self.verify_shard(i)
        except OSError as e:  # e.g. the file vanished or became unreadable after open()
            raise ShardError(f"{self.shard_path(i)}: cannot read it to verify it: {e}") from e

    # ---- reading --------------------------------------------------------------------
    def shard(self, i: int) -> pa.Table:
        """Shard i as a Table backed by a memory map (no read into process memory).

        Raw access: never waits for verification (the background check itself reads
        through here); readers of token data use `tokens`, `rows` or `iter_tables`.
        """
        path = self.shard_path(i)
        try:
            source = pa.memory_map(str(path), "r")
            table = ipc.open_file(source).read_all()
        except (OSError, pa.ArrowInvalid) as e:
            raise ShardError(f"{path}: not a readable Arrow IPC file (truncated?): {e}") from e
        if not table.schema.equals(self.schema):
            raise ShardError(
                f"{path}: schema {table.schema} differs from the {self.kind} shard schema"
            )
        return table

    def tokens(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(uint32 token values, int64 document offsets) of shard i, once it is verified.

        Values are a zero-copy view of the memory map; offsets (8 bytes per document)
        are widened from Arrow's int32 and rebased so ``offsets[0] == 0``.
        """
        self.wait_verified(i)
        return _list_arrays(self._stream_table(i).column("tokens"))

    def _stream_table(self, i: int) -> pa.Table:
        if self.kind == PREFERENCES:
            raise ShardError(
                f"{self.stage_dir}: a preferences stage holds pairs, not a token stream "
                "(read it with pairs(), train it with a PreferenceLoader)"
            )
        if self.kind == TASKS:
            raise ShardError(
                f"{self.stage_dir}: a tasks stage holds prompts, not a token stream "
                "(read it with tasks(), a TaskLoader or iter_tasks)"
            )
        return self.shard(i)

    def rows(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`tokens(i)` plus each row's domain as an int64 index into ``self.domains``.

        Shards dictionary-encode the domain each with its own dictionary; this maps them
        onto the stage's sorted list (4 bytes per row read, not per token).
        """
        self.wait_verified(i)
        table = self._stream_table(i)
        values, offsets = _list_arrays(table.column("tokens"))
        return values, offsets, self._domain_codes(i, table)

    def loss_mask(self, i: int) -> np.ndarray:
        """An SFT shard's uint8 loss mask, aligned with `tokens(i)` values (1: a target)."""
        if self.kind != SFT:
            raise ShardError(f"{self.stage_dir}: a {self.kind} stage has no loss_mask")
        self.wait_verified(i)
        return _list_arrays(self.shard(i).column("loss_mask"), np.uint8)[0]

    def pairs(self, i: int) -> PairArrays:
        """A preference shard's prompt, chosen and rejected tokens, once it is verified."""
        if self.kind != PREFERENCES:
            raise ShardError(f"{self.stage_dir}: a {self.kind} stage has no preference pairs")
        self.wait_verified(i)
        table = self.shard(i)
        cols = [_list_arrays(table.column(c)) for c in ("prompt", "chosen", "rejected")]
        return PairArrays(*cols, self._domain_codes(i, table), int(self.row_starts[i]))

    def tasks(self, i: int) -> TaskArrays:
        """A task shard's prompts, answers and tests, once it is verified; a row with both
        or neither of answer and tests is refused (no reward could score it)."""
        if self.kind != TASKS:
            raise ShardError(f"{self.stage_dir}: a {self.kind} stage has no tasks")
        self.wait_verified(i)
        table = self.shard(i)
        answers = table.column("answer").to_pylist()
        tests = table.column("tests").to_pylist()
        for row, (a, t) in enumerate(zip(answers, tests, strict=True)):
            if (a is None) == (t is None):
                doc = table.column("doc_id")[row].as_py()
                raise ShardError(
                    f"{self.shard_path(i)}: task {doc!r} (row {row}) has "
                    f"{'both' if a is not None else 'neither'} of answer and tests"
                )
        prompt = _list_arrays(table.column("prompt"))
        codes = self._domain_codes(i, table)
        return TaskArrays(prompt, answers, tests, codes, int(self.row_starts[i]))

    def _domain_codes(self, i: int, table: pa.Table) -> np.ndarray:
        parts = []
        for chunk in table.column("domain").chunks:
            names = chunk.dictionary.to_pylist()
            lut = np.array([self._domain_index.get(str(n), -1) for n in names], dtype=np.int64)
            parts.append(lut[chunk.indices.to_numpy(zero_copy_only=False)])
        codes = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        if len(codes) and codes.min() < 0:
            unknown = sorted(
                {str(n) for c in table.column("domain").chunks for n in c.dictionary.to_pylist()}
                - set(self.domains)
            )
            raise ShardError(
                f"{self.shard_path(i)}: domain(s) {unknown} are not in tokens_by_domain of "
                f"{self.manifest_path}"
            )
        return codes

    def iter_tables(self):
        """Yield each shard's Table in order, each verified first when verifying on read."""
        for i in range(self.num_shards):
            self.prefetch(i)  # in order: the one worker hashes shard i first
            if i + 1 < self.num_shards:
                self.prefetch(i + 1)
            self.wait_verified(i)
            yield self.shard(i)


def _list_arrays(
    column: pa.ChunkedArray, dtype: type[np.generic] = np.uint32
) -> tuple[np.ndarray, np.ndarray]:
    """Zero-copy values and rebased int64 offsets of a list<uint32> (or list<uint8>) column."""
    arr = column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
    offsets32 = np.frombuffer(arr.buffers()[1], dtype=np.int32)
    offsets32 = offsets32[arr.offset : arr.offset + len(arr) + 1]
    base = int(offsets32[0]) if len(offsets32) else 0
    offsets = offsets32.astype(np.int64) - base
    child = arr.values
    values = np.frombuffer(child.buffers()[1], dtype=dtype)
    values = values[
        child.offset + base : child.offset + base + int(offsets[-1] if len(offsets) else 0)
    ]
    return values, offsets
