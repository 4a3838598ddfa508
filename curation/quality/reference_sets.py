"""Reference sets: the labelled text that quality, language and domain models learn from.

A reference set is named by paths or globs of JSONL(.gz) files, one document per line
with `text` and, preferably, `source` (what the document came from: held-out splits are
made by source, so no source is on both sides). A record without `source` takes its
file's name without extensions. `label` in a record overrides the set's label (used by
multi-class sets such as language ID). Plain `.txt` files are one document each.
"""

from __future__ import annotations

import glob
import gzip
import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RefDoc:
    text: str
    source: str
    label: str
    id: str


def expand(patterns: list[str] | str, what: str) -> list[Path]:
    """Sorted files matching paths or globs; a pattern matching nothing is an error."""
    if isinstance(patterns, str):
        patterns = [patterns]
    files: set[Path] = set()
    for pat in patterns:
        hits = [Path(h) for h in glob.glob(str(Path(pat).expanduser()), recursive=True)]
        hits = [h for h in hits if h.is_file()] + [
            f for h in hits if h.is_dir() for f in h.rglob("*")
            if f.is_file() and f.name.endswith((".jsonl", ".jsonl.gz", ".txt"))]
        if not hits:
            raise ValueError(f"{what}: {pat} matches no file")
        files.update(hits)
    return sorted(files, key=lambda p: p.as_posix())


def _stem(path: Path) -> str:
    name = path.name
    for ext in (".gz", ".jsonl", ".txt"):
        name = name.removesuffix(ext)
    return name


def read_reference_set(patterns: list[str] | str, label: str, what: str = "reference set",
                       min_chars: int = 1) -> list[RefDoc]:
    """Every document of the set, in file then line order. Errors name the file and line;
    an empty set (no document with text) is an error naming the patterns."""
    docs: list[RefDoc] = []
    for path in expand(patterns, what):
        if path.name.endswith(".txt"):
            text = path.read_text(encoding="utf-8", errors="replace")
            if len(text.strip()) >= min_chars:
                docs.append(RefDoc(text, path.parent.name, label, path.as_posix()))
            continue
        opener = gzip.open if path.suffix == ".gz" else open
        try:
            with opener(path, "rt", encoding="utf-8") as f:
                for i, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    try:
                        obj = json.loads(line)
                    except json.JSONDecodeError as e:
                        raise ValueError(f"{path}:{i}: not a JSON line ({e.msg})") from None
                    text = obj.get("text") if isinstance(obj, dict) else None
                    if not isinstance(text, str):
                        raise ValueError(f"{path}:{i}: no string `text` field")
                    if len(text.strip()) < min_chars:
                        continue
                    docs.append(RefDoc(text, str(obj.get("source") or _stem(path)),
                                       str(obj.get("label") or label),
                                       str(obj.get("id") or f"{path.name}:{i}")))
        except (OSError, EOFError, UnicodeDecodeError) as e:
            raise ValueError(f"{path}: cannot read ({e})") from None
    if not docs:
        raise ValueError(f"{what}: {patterns} holds no document with text")
    return docs


def split_by_source(docs: list[RefDoc], heldout_fraction: float, seed: int
                    ) -> tuple[list[RefDoc], list[RefDoc]]:
    """(train, held-out): whole sources go to held-out, per label, until about
    `heldout_fraction` of that label's documents are held out (sources that would overshoot
    it by more than half are passed over, so one big source does not take the held-out side). Each label with at least two
    sources keeps at least one on each side; the choice is a seeded hash of the source name,
    so it does not depend on file order."""
    import hashlib

    train: list[RefDoc] = []
    held: list[RefDoc] = []
    for label in sorted({d.label for d in docs}):
        mine = [d for d in docs if d.label == label]
        sizes: dict[str, int] = {}
        for d in mine:
            sizes[d.source] = sizes.get(d.source, 0) + 1
        order = sorted(sizes, key=lambda s: hashlib.sha256(f"{seed}:{s}".encode()).hexdigest())
        target = heldout_fraction * len(mine)
        chosen: set[str] = set()
        n_held = 0
        for s in order:  # a source that would overshoot the target by half is skipped
            if len(chosen) + 1 >= len(order) or n_held >= target:
                break
            if n_held + sizes[s] <= 1.5 * target:
                chosen.add(s)
                n_held += sizes[s]
        if not chosen and target > 0 and len(order) > 1:  # every source overshoots: the smallest
            chosen.add(min(order, key=lambda s: (sizes[s], s)))
        train += [d for d in mine if d.source not in chosen]
        held += [d for d in mine if d.source in chosen]
    return train, held
