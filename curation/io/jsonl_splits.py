"""Read JSONL(.gz) input in Python on the executors, one byte-range split at a time.

Why not Spark's text source: it holds each line whole in the JVM heap (a 500 MB line is
an OutOfMemoryError that loses every record of the job) and a truncated gzip kills the
task. Here a line is read in bounded pieces: a record longer than
`validation.max_record_bytes` is skipped to its newline while only a preview is kept,
and quarantined as `text_too_large` without ever being decoded. A read error (truncated
gzip, plain text named `.gz`, a file that vanished) keeps every record read before it
and adds one file-level quarantine row, `corrupt_file`, naming the file and the error.

Splits follow Hadoop's rule, so records are never lost or read twice at a boundary: a
split owns every line that starts in `[start, end)`; a split that does not begin the file
skips the partial line it starts in. Gzip is not splittable: one split per file, read by
one task; a large one has its raw lines repartitioned before parsing
(`reader.read_documents`), so the parsing and every later stage run in parallel.

Each split also yields one summary row (`kind = "split"`) with the number of records it
read, counted from the raw input: the job checks those counts against the rows it
committed, so a lost record cannot pass reconciliation.
"""

from __future__ import annotations

import gzip
import io
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa

from curation.config import CurationConfig
from curation.io.paths import local_path
from curation.io.record_parser import PARSED_DDL, PARSED_SCHEMA, RecordParser

SPLIT_DDL = "file string, start long, end long"
READ_SCHEMA = PARSED_SCHEMA.append(pa.field("kind", pa.string()))  # "doc" or "split"
READ_DDL = PARSED_DDL + ", kind string"
_CHUNK = 1 << 20
_ID_PREFIX = re.compile(rb'^\s*\{\s*"id"\s*:\s*("(?:[^"\\]|\\.){1,200}"|-?\d{1,30})')
BATCH_ROWS = 1000


@dataclass(frozen=True)
class Split:
    file: str
    start: int
    end: int


def is_gzip(path: str) -> bool:
    return path.endswith(".gz")


def plan_splits(files: list[tuple[str, int]], split_bytes: int) -> list[Split]:
    """Byte-range splits of (path, size) files; fixed by sizes alone, never by parallelism."""
    out = []
    for path, size in files:
        if is_gzip(path) or size <= split_bytes:
            out.append(Split(path, 0, max(size, 1) if is_gzip(path) else size))
            continue
        out.extend(Split(path, s, min(s + split_bytes, size)) for s in range(0, size, split_bytes))
    return out


def open_binary(uri: str) -> io.RawIOBase | io.BufferedIOBase:
    """Open a file by URI: local paths directly, others through pyarrow's filesystems."""
    if uri.startswith("file:") or "://" not in uri:
        return open(local_path(uri), "rb", buffering=_CHUNK)
    import pyarrow.fs as pafs

    fs, path = pafs.FileSystem.from_uri(re.sub(r"^s3a://", "s3://", uri))
    return io.BufferedReader(fs.open_input_file(path), buffer_size=_CHUNK)  # type: ignore[arg-type]


def _skip_line(f, first: bytes) -> int:
    """Consume the rest of a line whose first piece is `first`; return its total bytes."""
    total = len(first)
    while not first.endswith(b"\n"):
        first = f.readline(_CHUNK)
        if not first:
            break
        total += len(first)
    return total


def read_split_lines(split: Split, max_bytes: int) -> Iterator[tuple[str, bytes | int, int]]:
    """Yield ("line", bytes, offset), ("oversized", preview, size) and at most one final
    ("error", message, offset) for the non-blank lines that start in the split."""
    gz = is_gzip(split.file)
    raw = None
    pos = 0
    try:
        raw = open_binary(split.file)
        f = gzip.GzipFile(fileobj=raw, mode="rb") if gz else raw
        if split.start > 0:
            f.seek(split.start - 1)
            pos = split.start - 1 + _skip_line(f, f.readline(_CHUNK))
        while gz or pos < split.end:
            chunk = f.readline(max_bytes + 1)
            if not chunk:
                return
            line_at = pos
            if len(chunk) > max_bytes and not chunk.endswith(b"\n"):
                size = _skip_line(f, chunk)
                pos += size
                yield "oversized", chunk[:65536], size
                continue
            pos += len(chunk)
            if chunk.strip():
                yield "line", chunk.rstrip(b"\r\n"), line_at
    except (OSError, EOFError, zlib.error) as e:  # truncated gzip, not gzip, I/O error
        what = "decompressed " if gz else ""
        yield "error", f"{type(e).__name__}: {e} (after {pos:,} {what}bytes)", pos
    finally:
        if raw is not None:
            raw.close()


def _oversized_row(cfg: CurationConfig, preview: bytes, size: int) -> dict:
    m = _ID_PREFIX.match(preview)
    doc_id = m.group(1).decode("utf-8", "replace").strip('"') if m else None
    n = cfg.validation.raw_preview_bytes
    return {"q_reason": "text_too_large", "id": doc_id,
            "q_detail": f"record of {size:,} bytes > validation.max_record_bytes "
                        f"({cfg.validation.max_record_bytes:,}); not decoded",
            "q_raw": preview[:n].decode("utf-8", errors="replace")}


RAW_SCHEMA = pa.schema([("file", pa.string()), ("block", pa.int64()), ("pos", pa.int64()),
                        ("kind", pa.string()), ("raw", pa.binary()), ("id", pa.string()),
                        ("q_reason", pa.string()), ("q_detail", pa.string()),
                        ("q_raw", pa.string())])
RAW_DDL = ("file string, block long, pos long, kind string, raw binary, id string, "
           "q_reason string, q_detail string, q_raw string")


def _split_rows(batches, cfg: CurationConfig) -> Iterator[dict]:
    """Each record of the splits as a row: its raw line (`raw`), or its quarantine row when
    it cannot be read (oversized, corrupt file); then one summary row per split."""
    for batch in batches:
        for s in batch.to_pylist():
            split = Split(s["file"], s["start"], s["end"])
            n, error = 0, None
            for kind, value, at in read_split_lines(split, cfg.validation.max_record_bytes):
                if kind == "error":
                    error = value
                    row = {"q_reason": "corrupt_file", "q_detail": f"{value}; the rest of the "
                           "file is unreadable, the records before it are kept"}
                elif kind == "oversized":
                    row = _oversized_row(cfg, value, at)
                else:
                    row = {"raw": value}
                yield {**row, "file": split.file, "block": split.start, "pos": n, "kind": "doc"}
                n += 1
            yield {"file": split.file, "block": split.start, "pos": n, "kind": "split",
                   "q_detail": error}


def _parsed_rows(rows: Iterator[dict], parser: RecordParser) -> Iterator[dict]:
    """Raw lines parsed and validated; the other rows (quarantined while reading, split
    summaries) passed through."""
    for r in rows:
        raw = r.get("raw")
        row = parser.parse(raw, r["file"]) if raw is not None else {
            k: r.get(k) for k in ("id", "q_reason", "q_detail", "q_raw")}
        yield {**row, "file": r["file"], "block": r["block"], "pos": r["pos"], "kind": r["kind"]}


def _batched(rows: Iterator[dict], schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    batch: list[dict] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= BATCH_ROWS:
            yield pa.RecordBatch.from_pylist(batch, schema=schema)
            batch = []
    if batch:
        yield pa.RecordBatch.from_pylist(batch, schema=schema)


def read_split_records(batches, cfg: CurationConfig) -> Iterator[pa.RecordBatch]:
    """mapInArrow body: (file, start, end) rows -> RAW_SCHEMA batches (`_split_rows`), for
    `parse_records` after a repartition (`reader.read_documents`)."""
    return _batched(_split_rows(batches, cfg), RAW_SCHEMA)


def parse_records(batches, cfg: CurationConfig) -> Iterator[pa.RecordBatch]:
    """mapInArrow body: RAW_SCHEMA -> READ_SCHEMA batches."""
    rows = (r for b in batches for r in b.to_pylist())
    return _batched(_parsed_rows(rows, RecordParser(cfg)), READ_SCHEMA)


def read_splits(batches, cfg: CurationConfig) -> Iterator[pa.RecordBatch]:
    """mapInArrow body: (file, start, end) rows -> READ_SCHEMA batches, read and parsed in
    one task (no Arrow batches in between)."""
    return _batched(_parsed_rows(_split_rows(batches, cfg), RecordParser(cfg)), READ_SCHEMA)
