"""Turn one raw input line into a valid document or a quarantine reason (pure Python).

Runs inside Spark's `mapInArrow` on batches of raw lines, but has no Spark dependency
so it is tested directly. Every record yields exactly one output row: valid, or
quarantined with a reason, so the job's counts always reconcile.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import PurePosixPath

import pyarrow as pa

from curation.config import CurationConfig

PARSED_SCHEMA = pa.schema([
    ("id", pa.string()),
    ("source", pa.string()),
    ("domain", pa.string()),
    ("text", pa.string()),
    ("meta", pa.string()),
    ("q_reason", pa.string()),
    ("q_detail", pa.string()),
    ("q_raw", pa.string()),
    ("file", pa.string()),
    ("block", pa.int64()),
    ("pos", pa.int64()),
])
PARSED_DDL = (
    "id string, source string, domain string, text string, meta string, q_reason string, "
    "q_detail string, q_raw string, file string, block long, pos long"
)
_RESERVED = {"id", "text", "source", "domain"}
_CONTROL = re.compile(r"[\x01-\x08\x0e-\x1f\x7f]")  # control chars but tab/newlines/ff/vt


def stable_id(source: str, text: str) -> str:
    """Id for a record without one: a hash of source and text (DESIGN contract)."""
    digest = hashlib.blake2b(f"{source}\0{text}".encode(), digest_size=12).hexdigest()
    return f"h-{digest}"


def source_for_path(path: str, mapping: dict[str, str]) -> str:
    for needle, source in mapping.items():
        if needle in path:
            return source
    name = PurePosixPath(path).name
    for ext in (".gz", ".zst", ".jsonl", ".json", ".parquet"):
        if name.endswith(ext):
            name = name[: -len(ext)]
    return name or "unknown"


class RecordParser:
    """Validates raw JSON lines per the raw-document contract."""

    def __init__(self, cfg: CurationConfig):
        self.cfg = cfg
        self.v = cfg.validation
        self._taxonomy = set(cfg.domains)
        self._rules = [(r.match, re.compile(r.pattern), r.domain) for r in cfg.domain_rules]

    def _rule_domain(self, source: str, path: str, url: object) -> str | None:
        """The first domain rule matching the record's source, input path or url."""
        values = {"source": source, "path": path, "url": url if isinstance(url, str) else None}
        for match, pattern, domain in self._rules:
            if values[match] is not None and pattern.search(values[match]):
                return domain
        return None

    def _bad(self, reason: str, detail: str, raw: bytes | str, obj: object = None) -> dict:
        doc_id = obj.get("id") if isinstance(obj, dict) else None
        if isinstance(raw, bytes):
            raw = raw[: self.v.raw_preview_bytes].decode("utf-8", errors="replace")
        else:
            raw = raw[: self.v.raw_preview_bytes]
        return {"q_reason": reason, "q_detail": detail[:500], "q_raw": raw,
                "id": str(doc_id) if isinstance(doc_id, (str, int)) else None}

    def parse(self, raw: bytes, path: str) -> dict:
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            return self._bad("invalid_utf8", f"byte {e.start}: {e.reason}", raw)
        try:
            obj = json.loads(line)
        except (json.JSONDecodeError, RecursionError) as e:
            return self._bad("malformed_json", str(e), raw)
        if not isinstance(obj, dict):
            return self._bad("not_an_object", f"top-level JSON {type(obj).__name__}", raw)
        if "text" not in obj:
            return self._bad("missing_text", "no `text` field", raw, obj)
        text = obj["text"]
        if text is None:
            return self._bad("null_text", "`text` is null", raw, obj)
        if not isinstance(text, str):
            return self._bad("text_not_string", f"`text` is {type(text).__name__}", raw, obj)
        if not text.strip():
            return self._bad("empty_text", "`text` is empty or whitespace", raw, obj)
        if len(text) > self.v.max_text_chars:
            return self._bad("text_too_large", f"{len(text)} chars > {self.v.max_text_chars}", raw, obj)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as e:  # lone surrogates written as \\ud800 escapes
            return self._bad("invalid_unicode", f"char {e.start}: {e.reason}", raw, obj)
        if "\x00" in text:
            return self._bad("binary_text", "text contains NUL", raw, obj)
        n_ctrl = len(_CONTROL.findall(text))
        if n_ctrl > self.v.max_control_fraction * len(text):
            return self._bad("binary_text", f"{n_ctrl} control characters", raw, obj)
        source = obj.get("source")
        if source is not None and not isinstance(source, str):
            return self._bad("bad_source", f"`source` is {type(source).__name__}", raw, obj)
        source = source or source_for_path(path, self.cfg.source_by_path)
        domain = obj.get("domain")
        if domain is not None and not isinstance(domain, str):
            return self._bad("bad_domain", f"`domain` is {type(domain).__name__}", raw, obj)
        if domain and domain not in self._taxonomy:
            return self._bad("unknown_domain", f"`domain` {domain[:100]!r} is not one of "
                             f"{sorted(self._taxonomy)}", raw, obj)
        # with a domain classifier, an unresolved domain stays null here and the classifier
        # (first registry entry of the annotation pass) decides it from the text
        fallback = None if self.cfg.domain_classifier.model else self.cfg.default_domain
        domain = domain or self._rule_domain(source, path, obj.get("url")) or \
            self.cfg.domain_by_source.get(source, fallback)
        doc_id = obj.get("id")
        if isinstance(doc_id, bool) or not isinstance(doc_id, (str, int, type(None))):
            return self._bad("bad_id", f"`id` is {type(doc_id).__name__}", raw, obj)
        if isinstance(doc_id, str) and not doc_id.strip():
            return self._bad("bad_id", "`id` is empty", raw, obj)
        doc_id = stable_id(source, text) if doc_id is None else str(doc_id)
        meta = {k: v for k, v in obj.items() if k not in _RESERVED}
        meta_json = json.dumps(meta, sort_keys=True, ensure_ascii=False) if meta else None
        return {"id": doc_id, "source": source, "domain": domain, "text": text, "meta": meta_json}


def parse_batches(batches, cfg: CurationConfig):
    """mapInArrow body: (raw binary, file, block) batches -> PARSED_SCHEMA batches.

    `pos` is the record's index among the non-blank lines of its input split (file,
    block start): a split is never divided between partitions and arrives in order, so
    (file, block, pos) names a record the same way whatever the Spark parallelism.
    """
    parser = RecordParser(cfg)
    names = PARSED_SCHEMA.names
    seen: dict[tuple[str, int], int] = {}
    for batch in batches:
        raws = batch.column("raw").to_pylist()
        files = batch.column("file").to_pylist()
        blocks = batch.column("block").to_pylist()
        positions = []
        for key in zip(files, blocks, strict=True):
            positions.append(seen.get(key, 0))
            seen[key] = positions[-1] + 1
        rows = [parser.parse(r if r is not None else b"", f) for r, f in zip(raws, files, strict=True)]
        cols = {n: [row.get(n) for row in rows] for n in names[:8]}
        cols["file"] = files
        cols["block"] = blocks
        cols["pos"] = positions
        yield pa.RecordBatch.from_pydict(cols, schema=PARSED_SCHEMA)
