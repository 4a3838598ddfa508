"""`sharpen mix sft|preferences|tasks`: chat JSONL -> tokenised post-training stages.

A stage is written like a pre-training stage (`StageWriter`: checksummed Arrow shards, a
manifest written last, the stage renamed into place), into the same output layout
(``OUTPUT/tokenizer/tokenizer.json`` beside ``OUTPUT/<stage>/``), so one training plan can
name pre-training and post-training stages of one data root and `StageShards.open` reads
them all. Records are rendered by the one chat template (`mixtures.tokenizer.render_chats`)
and shuffled with a seeded permutation; the manifest records the template's token ids and
what was read and skipped per file, by reason.

SFT rows: ``tokens`` + ``loss_mask`` (1 on assistant content and its END). Preference rows:
``prompt`` (rendered with the generation prompt, so it ends with ASSISTANT), ``chosen`` and
``rejected`` (each reply's tokens + END); a pair's stage-wide row index is its stable
``pair_index``. Task rows (RL and evaluation): ``prompt`` (with the generation prompt) and
the reference ``answer`` or the ``tests`` (the other null); the row index is ``task_index``.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from mixtures.chat import (
    TOO_LONG,
    Conversation,
    MalformedRecordError,
    PreferencePair,
    ReadStats,
    TaskRecord,
    read_conversations,
    read_preferences,
    read_tasks,
)
from mixtures.doc_keys import stage_rng
from mixtures.recipe import RESERVED_STAGE_NAMES
from mixtures.shard_format import PREFERENCES, SFT, TASKS, file_sha256
from mixtures.stage_writer import StageWriter, check_replaceable
from mixtures.tokenizer import (
    CHAT_TEMPLATE,
    chat_token_ids,
    install_tokenizer,
    load_tokenizer,
    render_chats,
    render_replies,
    sha256_file,
    special_token_ids,
    tokenizer_file,
    tokenizer_info,
)

log = logging.getLogger(__name__)

RENDER_BATCH = 1024  # records tokenised per call
WRITE_ROWS = 8192  # rows per StageWriter.write

Record = Conversation | PreferencePair | TaskRecord
# (tokenizer, records) -> per record: its columns and the length --max-tokens limits
Render = Callable[[Any, list[Any]], list[tuple[dict[str, Any], int]]]


def mix_sft(
    inputs: Sequence[str | Path],
    tokenizer: str | Path,
    output: str | Path,
    *,
    stage: str = "sft",
    domain: str = "chat",
    max_tokens: int | None = None,
    seed: int = 0,
    strict: bool = False,
    rows_per_shard: int = 50_000,
) -> dict:
    """Write SFT conversations as OUTPUT/<stage>; returns a summary (`write_chat_stage`)."""
    return write_chat_stage(
        SFT, inputs, tokenizer, output, read_conversations, _render_sft, stage=stage,
        domain=domain, max_tokens=max_tokens, seed=seed, strict=strict,
        rows_per_shard=rows_per_shard,
    )  # fmt: skip


def mix_preferences(
    inputs: Sequence[str | Path],
    tokenizer: str | Path,
    output: str | Path,
    *,
    stage: str = "preferences",
    domain: str = "chat",
    max_tokens: int | None = None,
    seed: int = 0,
    strict: bool = False,
    rows_per_shard: int = 50_000,
) -> dict:
    """Write preference pairs as OUTPUT/<stage>; returns a summary (`write_chat_stage`)."""
    return write_chat_stage(
        PREFERENCES, inputs, tokenizer, output, read_preferences, _render_pairs, stage=stage,
        domain=domain, max_tokens=max_tokens, seed=seed, strict=strict,
        rows_per_shard=rows_per_shard,
    )  # fmt: skip


def mix_tasks(
    inputs: Sequence[str | Path],
    tokenizer: str | Path,
    output: str | Path,
    *,
    stage: str = "tasks",
    domain: str = "chat",
    max_tokens: int | None = None,
    seed: int = 0,
    strict: bool = False,
    rows_per_shard: int = 50_000,
) -> dict:
    """Write RL / evaluation tasks as OUTPUT/<stage>; returns a summary (`write_chat_stage`)."""
    return write_chat_stage(
        TASKS, inputs, tokenizer, output, read_tasks, _render_tasks, stage=stage,
        domain=domain, max_tokens=max_tokens, seed=seed, strict=strict,
        rows_per_shard=rows_per_shard,
    )  # fmt: skip


def _render_sft(tok, records: list[Conversation]) -> list[tuple[dict[str, np.ndarray], int]]:
    rendered = render_chats(tok, [r.messages for r in records])
    return [({"tokens": ids, "loss_mask": mask}, len(ids)) for ids, mask in rendered]


def _render_pairs(tok, records: list[PreferencePair]) -> list[tuple[dict[str, np.ndarray], int]]:
    prompts = render_chats(tok, [r.prompt for r in records], generation_prompt=True)
    chosen = render_replies(tok, [r.chosen for r in records])
    rejected = render_replies(tok, [r.rejected for r in records])
    out = []
    for (prompt, _), c, r in zip(prompts, chosen, rejected, strict=True):
        out.append(
            ({"prompt": prompt, "chosen": c, "rejected": r}, len(prompt) + max(len(c), len(r)))
        )
    return out


def _render_tasks(tok, records: list[TaskRecord]) -> list[tuple[dict[str, Any], int]]:
    prompts = render_chats(tok, [r.prompt for r in records], generation_prompt=True)
    return [
        ({"prompt": prompt, "answer": r.answer, "tests": r.tests}, len(prompt))
        for (prompt, _), r in zip(prompts, records, strict=True)
    ]


def write_chat_stage(
    kind: str,
    inputs: Sequence[str | Path],
    tokenizer: str | Path,
    output: str | Path,
    read: Callable[..., Iterator[Record]],
    render: Render,
    *,
    stage: str,
    domain: str = "chat",
    max_tokens: int | None = None,
    seed: int = 0,
    strict: bool = False,
    rows_per_shard: int = 50_000,
) -> dict:
    """Read, validate, render, shuffle and write one stage; inputs and output are checked
    before anything is written. ``max_tokens`` skips (as "too_long") a conversation, a pair
    whose prompt + longer reply, or a task whose prompt, over that many tokens: one that
    fits a window."""
    if max_tokens is not None and max_tokens < 2:
        raise ValueError(f"--max-tokens must be >= 2, got {max_tokens}")
    if seed < 0 or rows_per_shard < 1 or not domain.strip():
        raise ValueError("--seed must be >= 0, --rows-per-shard >= 1, --domain non-empty")
    tok = _check_inputs(inputs, tokenizer)
    out_dir, stage_dir, tok_dest = _check_output(Path(output), stage, tok, Path(tokenizer))

    columns: dict[str, list] = {"doc_id": [], "domain": [], "source": []}
    files = []
    for path in map(Path, inputs):
        stats = ReadStats(str(path))
        for batch in _batches(read(path, strict=strict, stats=stats), RENDER_BATCH):
            for record, (row, length) in zip(batch, render(tok, batch), strict=True):
                if max_tokens is not None and length > max_tokens:
                    why = f"{length} tokens > --max-tokens {max_tokens}"
                    stats.drop(record.line, MalformedRecordError(TOO_LONG, why))
                    continue
                for key, value in row.items():
                    columns.setdefault(key, []).append(value)
                columns["doc_id"].append(record.id)
                columns["domain"].append(record.domain or domain)
                columns["source"].append(path.name)
        files.append(stats.record())
    n = len(columns["doc_id"])
    skipped = sum((Counter(f["skipped"]) for f in files), Counter())
    if n == 0:
        raise ValueError(
            f"{', '.join(map(str, inputs))}: no valid records (skipped {dict(skipped)})"
        )

    created = not out_dir.exists()
    try:
        install_tokenizer(tokenizer, tok_dest)
        info = tokenizer_info(tok, tok_dest, os.path.relpath(tok_dest, stage_dir))
        extra = {
            "records": {"kept": n, "skipped": dict(sorted(skipped.items())), "files": files},
            "chat_template": {
                "template": CHAT_TEMPLATE,
                "token_ids": chat_token_ids(tok),
                "pad_id": special_token_ids(tok)["pad"],
            },
        }
        settings = {"kind": kind, "domain": domain, "max_tokens": max_tokens}
        lineage = {
            "inputs": [{"path": str(Path(p).resolve()), "sha256": file_sha256(p)} for p in inputs]
        }
        order = stage_rng(seed, stage, "shuffle").permutation(n)
        with StageWriter(
            stage_dir,
            stage=stage,
            tokenizer=info,
            recipe=settings,
            seed=seed,
            lineage=lineage,
            rows_per_shard=rows_per_shard,
            kind=kind,
            extra=extra,
        ) as writer:
            for start in range(0, n, WRITE_ROWS):
                idx = order[start : start + WRITE_ROWS]
                writer.write({key: _column(values, idx) for key, values in columns.items()})
        manifest = writer.close()
    except BaseException:
        if created:
            shutil.rmtree(out_dir, ignore_errors=True)
        raise
    return {
        "stage": stage,
        "kind": kind,
        "dir": str(stage_dir),
        "rows": manifest["total_rows"],
        "tokens": manifest["total_tokens"],
        "trainable_tokens": manifest.get("trainable_tokens"),
        "shards": len(manifest["shards"]),
        "records": extra["records"],
    }


def _check_inputs(inputs: Sequence[str | Path], tokenizer: str | Path):
    """The tokenizer must have the chat tokens, every input must be a file."""
    if not inputs:
        raise ValueError("no --input files")
    for p in inputs:
        if not Path(p).is_file():
            raise FileNotFoundError(errno.ENOENT, "input file not found", str(p))
    tok = load_tokenizer(tokenizer)
    chat_token_ids(tok, tokenizer)
    return tok


def _check_output(out_dir: Path, stage: str, tok, tokenizer: Path) -> tuple[Path, Path, Path]:
    """A plain stage name, a replaceable stage directory, and no other tokenizer already in
    the output (its stages and this one must share one vocabulary and special tokens)."""
    if (
        not stage
        or stage.startswith(".")
        or Path(stage).name != stage
        or stage in RESERVED_STAGE_NAMES
    ):
        reserved = sorted(RESERVED_STAGE_NAMES)
        raise ValueError(f"--stage {stage!r}: not a plain directory name (nor one of {reserved})")
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"{out_dir}: output exists and is not a directory")
    dest = out_dir / "tokenizer" / "tokenizer.json"
    if dest.exists() and (
        not dest.is_file()
        or sha256_file(dest) != sha256_file(tokenizer_file(tokenizer))
        or special_token_ids(load_tokenizer(dest)) != special_token_ids(tok)
    ):
        raise ValueError(
            f"{dest}: the output already holds another tokenizer; its stages must share one "
            f"(pass --tokenizer {dest}, or another --output)"
        )
    check_replaceable(out_dir / stage)
    return out_dir, out_dir / stage, dest


def _batches(items: Iterable[Record], size: int) -> Iterator[list[Record]]:
    batch: list[Record] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _column(values: list, idx: np.ndarray) -> pa.Array:
    """Rows `idx` of a column: token arrays become a list<uint32>/<uint8> array, text (None
    where a task has no answer or no tests) a string array."""
    picked = [values[int(i)] for i in idx]
    if picked and isinstance(picked[0], np.ndarray):
        return pa.array(picked, type=pa.list_(pa.from_numpy_dtype(picked[0].dtype)))
    return pa.array(picked, type=pa.string())
