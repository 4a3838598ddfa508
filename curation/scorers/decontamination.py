"""Registry entry: decontamination against evaluation sets by word n-gram overlap.

A document that shares at least `min_matches` word 13-grams (configurable; an evaluation
item shorter than that counts as one n-gram of its own length) with an evaluation set is
contaminated by it: removed (`removed_by = "decontamination"`) or only
flagged (`heuristic_flags` gets `decontamination:<set>`). 13-grams of lower-cased word
tokens are the GPT-3 report's test (Brown et al. 2020, appendix C), also used by the
Llama and OLMo decontamination passes. The evaluation sets' n-grams are hashed to 64-bit
integers once per process (`load_once`); each document is then a set lookup per n-gram.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from pathlib import Path

import pyarrow as pa

from curation.config import DecontaminationConfig
from curation.scorers.base import DocBatch, Scorer, load_once

_WORD = re.compile(r"\w+")
RULE = "decontamination"


def ngram_hashes(words: list[str], n: int) -> set[int]:
    """64-bit hashes of the word n-grams of `words`."""
    return {int.from_bytes(hashlib.blake2b(" ".join(words[i:i + n]).encode(),
                                           digest_size=8).digest(), "little")
            for i in range(len(words) - n + 1)}


def words_of(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def read_eval_set(name: str, path: str, fields: list[str]) -> list[str]:
    """The texts of one evaluation set (JSONL or JSONL.gz): every `fields` value of every
    record, joined. Clear errors name the file and line."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"decontamination.eval_sets.{name}: {path} not found")
    opener = gzip.open if p.suffix == ".gz" else open
    texts = []
    with opener(p, "rt", encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{i}: not a JSON line ({e.msg})") from None
            parts = [obj.get(k) for k in fields] if isinstance(obj, dict) else []
            text = "\n".join(str(v) for v in parts if v)
            if not text:
                raise ValueError(f"{path}:{i}: none of the fields {fields} has text")
            texts.append(text)
    if not texts:
        raise ValueError(f"decontamination.eval_sets.{name}: {path} has no records")
    return texts


def _index(cfg: DecontaminationConfig) -> dict[str, dict[int, set[int]]]:
    """Per evaluation set: n-gram length -> hashes. An item shorter than `ngram` words is
    matched whole (its own length), down to `min_item_words`; shorter items are skipped."""
    out: dict[str, dict[int, set[int]]] = {}
    for name, path in sorted(cfg.eval_sets.items()):
        by_len: dict[int, set[int]] = {}
        for text in read_eval_set(name, path, cfg.fields):
            words = words_of(text)
            n = min(len(words), cfg.ngram)
            if n >= cfg.min_item_words:
                by_len.setdefault(n, set()).update(ngram_hashes(words, n))
        out[name] = by_len
    return out


class Decontamination(Scorer):
    name = RULE
    columns = (pa.field("contamination", pa.list_(pa.string())),)
    reads = ("removed_by", "heuristic_flags")

    def __init__(self, cfg):
        super().__init__(cfg)
        self.d = cfg.decontamination
        self.key = json.dumps(["decontamination", self.d.model_dump(mode="json"),
                               {n: _signature(p) for n, p in self.d.eval_sets.items()}])

    def check(self) -> None:
        super().check()
        for name, path in self.d.eval_sets.items():  # fail on the driver, before any task
            read_eval_set(name, path, self.d.fields)

    def score(self, batch: DocBatch) -> dict[str, list]:
        n = len(batch.texts)
        if not self.d.eval_sets:
            return {"contamination": [[] for _ in range(n)]}
        index = load_once(self.key, lambda: _index(self.d))
        lengths = sorted({n for by_len in index.values() for n in by_len})
        hits = []
        for text in batch.texts:
            words = words_of(text)
            grams = {n: ngram_hashes(words, n) for n in lengths}
            hits.append([name for name, by_len in index.items()
                         if sum(len(grams[n] & ref) for n, ref in by_len.items())
                         >= self.d.min_matches])
        remove = self.d.action == "remove"
        return {
            "contamination": hits,
            "removed_by": [RULE if h and remove else None for h in hits],
            "heuristic_flags": [[f"{RULE}:{s}" for s in h] if h and not remove else []
                                for h in hits],
        }


def _signature(path: str) -> list:
    """Path, size and mtime: a changed evaluation set is reloaded, not served from cache."""
    try:
        st = Path(path).stat()
        return [path, st.st_size, st.st_mtime_ns]
    except OSError:
        return [path]
