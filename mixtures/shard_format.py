"""The stage shard format: Arrow schema, manifest.json, and the checks that need no shard data.

A manifest is a promise about the shards beside it. Every total it states must follow
from its shard entries, so an edited, truncated or mixed-up manifest fails when the stage
is opened (before a trainer launches ranks), not hours into training on the wrong data.
Checks against the shard files themselves are in `mixtures.shards.StageShards`.

Version 2 adds per-shard ``tokens_by_domain`` and ``tokens_by_quality_bucket`` so the
stage-level breakdowns can be checked exactly; version 1 manifests are still read, and
their breakdowns are checked only against ``total_tokens``.

Version 3 adds ``kind``, for post-training stages: ``sft`` (conversations: ``tokens`` and an
aligned ``loss_mask``, per-shard and total ``trainable_tokens``), ``preferences``
(``prompt``/``chosen``/``rejected`` token lists; ``tokens`` counts all three) and ``tasks``
(RL and evaluation prompts: a ``prompt`` token list and nullable ``answer`` and ``tests``
strings, exactly one of them set per row; ``tokens`` counts the prompts). They record
``tokens_by_domain`` only. Pre-training stages stay version 2 (no ``kind``: "pretrain"), so
a reader that predates post-training refuses these stages instead of misreading them (and
one that predates a kind refuses that kind).

The tokenizer record's ``special_tokens`` (role -> id or null: bos, eos, pad and the chat
roles) needs no new version: older readers ignore it, and manifests written before it are
read as they were (``bos_id`` and ``eos_id`` stay).

Pure pyarrow + numpy: the trainer imports this through `mixtures.shards`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

FORMAT_VERSION = 2  # pre-training stages
KIND_FORMAT_VERSION = 3  # post-training stages, which carry a `kind`
READABLE_VERSIONS = (1, 2, 3)
PRETRAIN, SFT, PREFERENCES, TASKS = "pretrain", "sft", "preferences", "tasks"
MANIFEST_NAME = "manifest.json"
SHARD_PATTERN = "shard-{:05d}.arrow"
TOKENIZER_KEYS = ("path", "sha256", "vocab_size", "bos_id", "eos_id")
SHARD_KEYS = ("path", "sha256", "rows", "tokens")
BREAKDOWNS = ("tokens_by_domain", "tokens_by_quality_bucket")

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
_META = [
    pa.field("doc_id", pa.string(), nullable=False),  # the record's id, or <file>:<line>
    pa.field("domain", pa.dictionary(pa.int32(), pa.string()), nullable=False),
    pa.field("source", pa.string(), nullable=False),  # the input file's name
]
SFT_SCHEMA = pa.schema(
    [
        pa.field("tokens", pa.list_(pa.uint32()), nullable=False),
        pa.field("loss_mask", pa.list_(pa.uint8()), nullable=False),  # 1: token is a target
        *_META,
    ]
)
PREFERENCE_SCHEMA = pa.schema(
    [
        pa.field("prompt", pa.list_(pa.uint32()), nullable=False),  # ends with <|assistant|>
        pa.field("chosen", pa.list_(pa.uint32()), nullable=False),  # reply + <|end|>
        pa.field("rejected", pa.list_(pa.uint32()), nullable=False),
        *_META,
    ]
)
TASK_SCHEMA = pa.schema(
    [
        pa.field("prompt", pa.list_(pa.uint32()), nullable=False),  # ends with <|assistant|>
        pa.field("answer", pa.string()),  # reference final answer (math reward), or null
        pa.field("tests", pa.string()),  # test code (code reward), or null; one of the two
        *_META,
    ]
)
SCHEMAS = {
    PRETRAIN: SCHEMA,
    SFT: SFT_SCHEMA,
    PREFERENCES: PREFERENCE_SCHEMA,
    TASKS: TASK_SCHEMA,
}
TOKEN_COLUMNS = {
    PRETRAIN: ("tokens",),
    SFT: ("tokens",),
    PREFERENCES: ("prompt", "chosen", "rejected"),
    TASKS: ("prompt",),
}
SUMMED = {SFT: ("trainable_tokens",)}  # per-shard counts whose sum the manifest states
# Arrow list offsets are int32: keep a shard well below 2**31 tokens even for 128k-token docs.
DEFAULT_MAX_SHARD_TOKENS = 1 << 28


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


def token_lengths(tokens: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Tokens per row (document copy)."""
    return pc.list_value_length(tokens).to_numpy(zero_copy_only=False).astype(np.int64)


def total_tokens(tokens: pa.ChunkedArray) -> int:
    """Token count from the list offsets alone (two values per chunk: no data is read)."""
    total = 0
    for chunk in tokens.chunks:
        if len(chunk):
            offsets = chunk.offsets
            total += offsets[len(offsets) - 1].as_py() - offsets[0].as_py()
    return total


def manifest_kind(manifest: dict[str, Any]) -> str:
    """A stage's kind; manifests before version 3 are pre-training stages."""
    return str(manifest.get("kind", PRETRAIN))


def kind_breakdowns(kind: str) -> tuple[str, ...]:
    """Per-domain (and, for pre-training, per-bucket) token counts a manifest records."""
    return BREAKDOWNS if kind == PRETRAIN else BREAKDOWNS[:1]


def row_tokens(table: pa.Table, kind: str = PRETRAIN) -> np.ndarray:
    """Tokens per row: a document copy, a conversation, or a pair's prompt+chosen+rejected."""
    return sum(token_lengths(table.column(c)) for c in TOKEN_COLUMNS[kind])


def table_tokens(table: pa.Table, kind: str = PRETRAIN) -> int:
    """A shard's tokens from its list offsets alone (no data read)."""
    return sum(total_tokens(table.column(c)) for c in TOKEN_COLUMNS[kind])


def _tokens_by(keys: pa.Array | pa.ChunkedArray, lengths: np.ndarray) -> dict[str, int]:
    """Tokens per distinct key (domain, or quality bucket), in key order, keys as strings."""
    stats = pa.table({"k": keys, "n": lengths}).group_by("k").aggregate([("n", "sum")])
    pairs = zip(stats.column("k").to_pylist(), stats.column("n_sum").to_pylist(), strict=True)
    return {str(k): int(n) for k, n in sorted(pairs)}


def shard_breakdowns(table: pa.Table, kind: str = PRETRAIN) -> dict[str, Any]:
    """What a shard's manifest entry records beyond path, sha256, rows and tokens: tokens by
    domain (and quality bucket), and an SFT shard's trainable tokens."""
    lengths = row_tokens(table, kind)
    out: dict[str, Any] = {
        "tokens_by_domain": _tokens_by(table.column("domain").cast(pa.string()), lengths)
    }
    if kind == PRETRAIN:
        out["tokens_by_quality_bucket"] = _tokens_by(table.column("quality_bucket"), lengths)
    if kind == SFT:
        out["trainable_tokens"] = int(
            pc.sum(pc.list_flatten(table.column("loss_mask"))).as_py() or 0
        )
    return out


def load_manifest(path: Path) -> dict[str, Any]:
    """Read manifest.json and check it is self-consistent; every failure names the file."""
    if not path.is_file():
        raise ShardError(f"{path}: missing manifest (stage not written or not finished)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ShardError(f"{path}: unreadable manifest: {e}") from e
    if not isinstance(manifest, dict):
        raise ShardError(f"{path}: manifest is not a JSON object")
    check_manifest(manifest, str(path))
    return manifest


def check_manifest(manifest: dict[str, Any], where: str) -> None:
    """Version, required fields, shard entries, and every total against the shard entries."""
    version = manifest.get("format_version")
    if version not in READABLE_VERSIONS:
        raise ShardError(
            f"{where}: format_version {version!r}, this reader reads {list(READABLE_VERSIONS)}"
        )
    kind = manifest_kind(manifest)
    if (version >= KIND_FORMAT_VERSION) != ("kind" in manifest) or kind not in SCHEMAS:
        raise ShardError(
            f"{where}: kind {manifest.get('kind')!r} with format_version {version}; version "
            f"{KIND_FORMAT_VERSION} manifests need a kind, one of {sorted(SCHEMAS)}"
        )
    breakdowns, summed = kind_breakdowns(kind), SUMMED.get(kind, ())
    required = ("stage", "tokenizer", "shards", "seed", "total_rows", "total_tokens")
    for key in required + breakdowns + summed:
        if key not in manifest:
            raise ShardError(f"{where}: manifest lacks {key!r}")
    tok = manifest["tokenizer"]
    if not isinstance(tok, dict) or not set(TOKENIZER_KEYS) <= tok.keys():
        raise ShardError(f"{where}: manifest field 'tokenizer' needs {list(TOKENIZER_KEYS)}")
    _check_special_tokens(tok, where)
    shards = manifest["shards"]
    if not isinstance(shards, list):
        raise ShardError(f"{where}: manifest field 'shards' is not a list")
    keys = SHARD_KEYS + (breakdowns if version >= 2 else ()) + summed
    for i, s in enumerate(shards):
        if not isinstance(s, dict) or not set(keys) <= s.keys():
            raise ShardError(f"{where}: shards[{i}] needs {', '.join(keys)}")
        rel = Path(str(s["path"]))
        if rel.is_absolute() or ".." in rel.parts:
            raise ShardError(f"{where}: shards[{i}].path {s['path']!r} must be relative")
        for key in ("rows", "tokens", *summed):
            _count(s[key], where, f"shards[{i}].{key}")
        for key in breakdowns if version >= 2 else ():
            got = sum(_counts(s[key], where, f"shards[{i}].{key}").values())
            if got != s["tokens"]:
                raise ShardError(
                    f"{where}: shards[{i}].{key} sums to {got}, but shards[{i}].tokens is "
                    f"{s['tokens']}"
                )
    _check_total(manifest, where, "total_rows", sum(s["rows"] for s in shards))
    _check_total(manifest, where, "total_tokens", sum(s["tokens"] for s in shards))
    for key in summed:
        _check_total(manifest, where, key, sum(s[key] for s in shards))
    for key in breakdowns:
        stated = _counts(manifest[key], where, key)
        if version >= 2:
            derived = _sum_counts(s[key] for s in shards)
            diff = sorted(
                k for k in stated.keys() | derived.keys() if stated.get(k) != derived.get(k)
            )
            if diff:
                k = diff[0]
                raise ShardError(
                    f"{where}: manifest field {key!r} does not match its shard entries: "
                    f"{k!r} is {stated.get(k, 0)}, the shards hold {derived.get(k, 0)}"
                )
        elif sum(stated.values()) != manifest["total_tokens"]:
            raise ShardError(
                f"{where}: manifest field {key!r} sums to {sum(stated.values())}, but "
                f"'total_tokens' is {manifest['total_tokens']}"
            )


def _check_special_tokens(tok: dict[str, Any], where: str) -> None:
    """`tokenizer.special_tokens` (role -> id or null; manifests before it lack it) must hold
    ids of the vocabulary and agree with bos_id/eos_id, which older readers use."""
    if "special_tokens" not in tok:
        return
    ids = tok["special_tokens"]
    if not isinstance(ids, dict):
        raise ShardError(f"{where}: tokenizer.special_tokens is not an object")
    vocab = _count(tok["vocab_size"], where, "tokenizer.vocab_size")
    for role, i in ids.items():
        if i is not None and (isinstance(i, bool) or not isinstance(i, int)
                              or not 0 <= i < vocab):
            raise ShardError(f"{where}: tokenizer.special_tokens.{role} must be a token id "
                             f"below vocab_size {vocab} or null, got {i!r}")
    for role in ("bos", "eos"):
        if ids.get(role) != tok[f"{role}_id"]:
            raise ShardError(f"{where}: tokenizer.special_tokens.{role} is {ids.get(role)!r}, "
                             f"but tokenizer.{role}_id is {tok[f'{role}_id']!r}")


def _count(value: object, where: str, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ShardError(f"{where}: {field} must be a non-negative integer, got {value!r}")
    return value


def _counts(value: object, where: str, field: str) -> dict[str, int]:
    if not isinstance(value, dict):
        raise ShardError(f"{where}: {field} must be an object of token counts")
    return {str(k): _count(v, where, f"{field}[{k!r}]") for k, v in value.items()}


def _sum_counts(dicts: Iterable[dict[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for d in dicts:
        for k, v in d.items():
            total[str(k)] = total.get(str(k), 0) + v
    return total


def _check_total(manifest: dict[str, Any], where: str, field: str, derived: int) -> None:
    stated = _count(manifest[field], where, field)
    if stated != derived:
        raise ShardError(
            f"{where}: manifest field {field!r} is {stated}, but its shard entries sum to {derived}"
        )
