"""Small real corpora for the curation tests: copyright files from /usr/share/doc (which
contain natural exact and near duplicates) plus crafted edits and bad records."""

from __future__ import annotations

import glob
import gzip
import json
from pathlib import Path

FALLBACK = Path(__file__).resolve().parents[2] / "data" / "sample" / "web.jsonl.gz"


def real_texts(n: int) -> list[str]:
    """n distinct real texts of 300..20k chars (they may still be near duplicates)."""
    out: list[str] = []
    for f in sorted(glob.glob("/usr/share/doc/*/copyright")):
        try:
            t = Path(f).read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        if 300 <= len(t) <= 20_000 and t not in out:
            out.append(t)
        if len(out) == n:
            return out
    with gzip.open(FALLBACK, "rt", encoding="utf-8") as fh:  # machines without /usr/share/doc
        for line in fh:
            t = json.loads(line)["text"]
            if 300 <= len(t) <= 20_000:
                out.append(t)
            if len(out) == n:
                break
    return out


def edit(text: str, every: int = 40) -> str:
    """A near duplicate: replace one word in every `every`."""
    words = text.split(" ")
    return " ".join("EDITED" if i % every == 7 else w for i, w in enumerate(words))


def write_jsonl(path: Path, records: list) -> Path:
    """Records are dicts (dumped as JSON) or raw bytes/str lines written as they are."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as fh:
        for r in records:
            if isinstance(r, dict):
                fh.write(json.dumps(r).encode() + b"\n")
            elif isinstance(r, str):
                fh.write(r.encode() + b"\n")
            else:
                fh.write(r + b"\n")
    return path
