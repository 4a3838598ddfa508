"""Stage shards: the on-disk contract between the mixture materialiser and any trainer.

A stage directory holds Arrow IPC *file*-format shards (memory-mappable, one record batch
per shard, one row per document copy) and a ``manifest.json`` written last, so a stage
without a manifest is by definition incomplete (`mixtures.stage_writer` builds a stage
aside and renames it into place only when complete). Opening a stage always checks the
manifest's totals and that every listed shard exists with the rows and tokens it states
(cheap: the Arrow footer and list offsets, no data read); ``verify`` adds each shard's
sha256, before a single token is trained on.

Pure pyarrow + numpy: the trainer imports this module, so it must never pull in Spark.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

from mixtures.shard_format import (
    FORMAT_VERSION,
    MANIFEST_NAME,
    SCHEMA,
    ShardError,
    canonical_sha256,
    file_sha256,
    load_manifest,
    shard_breakdowns,
    total_tokens,
)
from mixtures.stage_writer import StageWriter, check_replaceable

__all__ = [
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "SCHEMA",
    "ShardError",
    "StageShards",
    "StageWriter",
    "canonical_sha256",
    "check_replaceable",
    "file_sha256",
]


class StageShards:
    """Read side of a stage directory: manifest, memory-mapped shards, zero-copy token views."""

    def __init__(self, stage_dir: Path, manifest: dict) -> None:
        self.stage_dir = stage_dir
        self.manifest_path = stage_dir / MANIFEST_NAME
        self.manifest = manifest
        self.num_shards = len(manifest["shards"])
        self.total_tokens = int(sum(s["tokens"] for s in manifest["shards"]))
        self.total_rows = int(sum(s["rows"] for s in manifest["shards"]))

    @classmethod
    def open(cls, stage_dir: str | os.PathLike[str], verify: bool = True) -> StageShards:
        """Check the manifest's totals and every shard: always that it exists with the rows
        and tokens listed (cheap), and with ``verify`` its sha256 and per-domain tokens."""
        stage_dir = Path(stage_dir)
        shards = cls(stage_dir, load_manifest(stage_dir / MANIFEST_NAME))
        shards.check_tokenizer()
        for i in range(shards.num_shards):
            if verify:
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
        tokens = total_tokens(table.column("tokens"))
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
        if digest != entry["sha256"]:
            raise ShardError(
                f"{path}: checksum mismatch (sha256 {digest}, manifest says {entry['sha256']}); "
                "the shard is corrupted or truncated"
            )
        table = self.check_shard(i)
        if "tokens_by_domain" in entry:  # format_version >= 2
            for key, counts in shard_breakdowns(table).items():
                if counts != entry[key]:
                    raise ShardError(
                        f"{path}: {key} {counts}, {self.manifest_path} says {entry[key]}"
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
