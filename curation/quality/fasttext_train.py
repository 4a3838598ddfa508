"""Supervised fastText training on reference documents, with held-out metrics by source.

Every platform classifier (quality, language ID, domain) is trained here: documents are
deduplicated on their prepared text, optionally capped per source, split by source
(`reference_sets.split_by_source`: no source on both sides, so the held-out numbers
measure generalisation to unseen sources, not memorised boilerplate), trained with
`thread=1` and a seed, evaluated on the held-out side and saved as a model directory
with its provenance.

Determinism, and a fastText bug it has to work around: with `thread=1`, fastText's
`DenseMatrix::uniform` initialises only the first tenth of the input matrix (its blocks
are tenths, one per thread) and the matrix is an uninitialised aligned allocation, so
the other rows start as whatever the heap held: runs differ and training often stops
with "Encountered NaN" (more threads would cover all blocks but make training order,
and so the model, non-deterministic). During training glibc's `M_PERTURB` is set so
every allocation is zero-filled: those rows start at zero, deterministically, and are
learnt like any other. Without glibc, 11 threads initialise every block instead and the
provenance says the model is not deterministic.
"""

from __future__ import annotations

import ctypes
import glob
import hashlib
import importlib.metadata
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError

from curation.config import _one_line, _Strict, yaml_line, yaml_problem
from curation.quality.fasttext_metrics import binary_metrics, multiclass_metrics
from curation.quality.fasttext_model import MODEL_FILE, FastTextModel
from curation.quality.fasttext_text import MAX_CHARS, prepare, training_line
from curation.quality.model_dir import ModelDir, sha256_file, write_model_dir
from curation.quality.reference_sets import (
    RefDoc,
    _stem,
    expand,
    read_reference_set,
    split_by_source,
)

_M_PERTURB = -6  # glibc mallopt parameter


class FastTextParams(_Strict):
    """fastText's own hyperparameter names. The defaults make models of a few MB:
    (words + bucket) x dim float32 weights."""

    dim: int = Field(16, ge=2, le=300, description="Embedding size.")
    epoch: int = Field(10, ge=1, le=200, description="Passes over the training lines.")
    lr: float = Field(0.5, gt=0, le=5, description="Learning rate (linearly decayed to 0).")
    wordNgrams: int = Field(2, ge=1, le=5, description="Word n-grams up to this length (hashed into `bucket`).")
    minn: int = Field(0, ge=0, le=10, description="Smallest character n-gram (0: none).")
    maxn: int = Field(0, ge=0, le=10, description="Largest character n-gram (0: none).")
    minCount: int = Field(5, ge=1, description="Words seen fewer times are dropped from the vocabulary (with `bucket`, what bounds the size).")
    loss: Literal["softmax", "ova", "hs"] = Field("softmax", description="softmax gives probabilities that sum to 1 (exact P(label)).")
    bucket: int = Field(50_000, ge=1000, le=2_000_000, description="Hash buckets for n-grams; the largest part of the model's size.")


class TrainResult(BaseModel):
    """What a training returns: where the model is and its provenance."""

    path: str
    provenance: dict[str, Any]

    @property
    def metrics(self) -> dict[str, Any] | None:
        return self.provenance.get("metrics")


def load_yaml_config(cls: type[BaseModel], path: str | Path) -> Any:
    """`cls` validated from a YAML file; errors are one line naming the file."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"config {p} not found")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ValueError(f"{p}:{yaml_line(e)}: invalid YAML: {yaml_problem(e)}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{p}: expected a mapping at top level")
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        raise ValueError(f"{p}: {_one_line(e)}") from None


def describe_inputs(patterns: list[str], what: str) -> list[dict[str, Any]]:
    """The files behind `patterns` with their sizes and sha256, for the provenance."""
    return [{"path": f.as_posix(), "bytes": f.stat().st_size, "sha256": sha256_file(f)}
            for f in expand(patterns, what)]


def _fasttext_version() -> str:
    for dist in ("fasttext-numpy2", "fasttext"):
        try:
            return f"{dist} {importlib.metadata.version(dist)}"
        except importlib.metadata.PackageNotFoundError:
            continue
    return "unknown"


def _prepared(docs: list[RefDoc], max_per_source: int | None, seed: int
              ) -> tuple[list[tuple[RefDoc, str]], int, int]:
    """(doc, prepared text) pairs without empty or repeated texts (first kept), at most
    `max_per_source` per (label, source) chosen by a seeded hash of the id; and the
    numbers dropped as duplicates and by the cap."""
    seen: set[bytes] = set()
    kept: list[tuple[RefDoc, str]] = []
    for d in docs:
        line = prepare(d.text)
        h = hashlib.blake2b(line.encode(), digest_size=16).digest()
        if line and h not in seen:
            seen.add(h)
            kept.append((d, line))
    dups = len(docs) - len(kept)
    if max_per_source is None:
        return kept, dups, 0
    groups: dict[tuple[str, str], list[int]] = {}
    for i, (d, _) in enumerate(kept):
        groups.setdefault((d.label, d.source), []).append(i)
    chosen: set[int] = set()
    for idx in groups.values():
        idx.sort(key=lambda i: hashlib.sha256(f"{seed}:{kept[i][0].id}".encode()).digest())
        chosen.update(idx[:max_per_source])
    capped = [pair for i, pair in enumerate(kept) if i in chosen]
    return capped, dups, len(kept) - len(capped)


def _split(docs: list[RefDoc], fraction: float, seed: int, what: str, train_only_single: bool
           ) -> tuple[list[RefDoc], list[RefDoc], int]:
    """Train and held-out sides, and how many documents were moved to keep a source on one
    side. `split_by_source` splits each label on its own, so a source name used under two
    labels (e.g. a package's copyright file filed as `reference` while its manual is `web`)
    can land on both sides: all its documents then go to the side that has more of them.
    A label with one source is an error, or with `train_only_single` trained, not evaluated."""
    if fraction <= 0:
        return docs, [], 0
    single = set()
    for label in sorted({d.label for d in docs}):
        sources = sorted({d.source for d in docs if d.label == label})
        if len(sources) < 2 and not train_only_single:
            raise ValueError(f"{what}: label {label!r} has only the source(s) {sources}; a held-out "
                             f"split by source needs at least 2 per label (or heldout_fraction: 0, "
                             f"or single_source: train_only)")
        if len(sources) < 2:
            single.add(label)
    train, held = split_by_source([d for d in docs if d.label not in single], fraction, seed)
    train += [d for d in docs if d.label in single]
    moved = 0
    for source in sorted({d.source for d in train} & {d.source for d in held}):
        n_train = sum(d.source == source for d in train)
        n_held = sum(d.source == source for d in held)
        if n_held >= n_train:
            held += [d for d in train if d.source == source]
            train = [d for d in train if d.source != source]
        else:
            train += [d for d in held if d.source == source]
            held = [d for d in held if d.source != source]
        moved += min(n_train, n_held)
    labels = {d.label for d in docs}
    for name, part in (("training", train), ("held-out", held)):
        empty = sorted(labels - {d.label for d in part} - (single if part is held else set()))
        if empty:
            raise ValueError(f"{what}: no {name} documents left for {empty}: their sources are "
                             f"also used by other labels; give them distinct source names")
    return train, held, moved


def _fit(lines: list[str], params: FastTextParams, seed: int, what: str) -> tuple[Any, bool]:
    """A fastText model trained on `lines` (shuffled with `seed`); and whether the run was
    deterministic (see the module docstring)."""
    import fasttext

    lines = list(lines)
    random.Random(seed).shuffle(lines)
    try:
        libc: Any = ctypes.CDLL("libc.so.6") if sys.platform.startswith("linux") else None
    except OSError:
        libc = None
    zeroed = bool(libc is not None and libc.mallopt(_M_PERTURB, 0xFF) == 1)
    with tempfile.TemporaryDirectory(prefix="sharpen-fasttext-") as tmp:
        train_file = Path(tmp) / "train.txt"
        train_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
        try:
            model = fasttext.train_supervised(
                input=str(train_file), thread=1 if zeroed else 11, seed=seed, verbose=0,
                **params.model_dump())
        except RuntimeError as e:
            raise ValueError(f"{what}: fastText training failed ({e}); lower `lr`") from None
        finally:
            if zeroed:
                libc.mallopt(_M_PERTURB, 0)
    return model, zeroed


def train_fasttext(docs: list[RefDoc], *, kind: str, output: str | Path, params: FastTextParams,
                   heldout_fraction: float, seed: int, what: str, positive: str | None = None,
                   allowed: list[str] | None = None, max_docs_per_source: int | None = None,
                   inputs: dict[str, Any] | None = None, single_source: str = "error",
                   log: Callable[[str], None] = lambda s: None) -> TrainResult:
    """Train, evaluate on held-out sources and save `output/` (model.bin + provenance.json).

    `positive` names the positive label of a binary classifier (metrics: precision,
    recall, F1 at 0.5, ROC AUC); otherwise accuracy, macro-F1 and a confusion matrix.
    `allowed`: every label must be one of these. `single_source`: "error" (a label with one
    source cannot be held out by source) or "train_only" (trained, left out of the
    metrics). Errors name `what` (the files)."""
    labels = sorted({d.label for d in docs})
    bad = sorted(set(labels) - set(allowed)) if allowed is not None else []
    if bad:
        raise ValueError(f"{what}: labels {bad} are not among the allowed {allowed}")
    if len(labels) < 2:
        raise ValueError(f"{what}: only one class {labels}; a classifier needs documents of at "
                         f"least two labels")
    if positive is not None and positive not in labels:
        raise ValueError(f"{what}: no documents with the positive label {positive!r}")
    pairs, dups, capped = _prepared(docs, max_docs_per_source, seed)
    line_of = {id(d): line for d, line in pairs}
    train, held, moved = _split([d for d, _ in pairs], heldout_fraction, seed, what,
                                single_source == "train_only")
    log(f"{len(train)} training and {len(held)} held-out documents "
        f"({dups} duplicates dropped, {capped} over the per-source cap)")
    start = time.perf_counter()
    model, deterministic = _fit([training_line(d.label, d.text) for d in train], params, seed, what)
    seconds = round(time.perf_counter() - start, 3)
    log(f"trained in {seconds} s")
    metrics = None
    if held:
        ft = FastTextModel(model)
        texts, truth = [line_of[id(d)] for d in held], [d.label for d in held]
        if positive is not None:
            metrics = binary_metrics(truth, ft.prob_of(texts, positive), positive)
        else:
            predicted, _ = ft.predict(texts)
            metrics = multiclass_metrics(truth, predicted, labels)
    sources: dict[str, dict[str, dict[str, int]]] = {}
    for side, part in (("train", train), ("heldout", held)):
        for d in part:
            counts = sources.setdefault(d.label, {}).setdefault(d.source, {"train": 0, "heldout": 0})
            counts[side] += 1
    provenance = {
        "labels": labels, "positive_label": positive, "inputs": inputs or {},
        "counts": {lab: {side: sum(c[side] for c in sources[lab].values())
                         for side in ("train", "heldout")} for lab in labels},
        "sources": sources, "duplicates_dropped": dups, "capped_per_source": capped,
        "moved_to_one_side": moved, "heldout_fraction": heldout_fraction,
        "single_source": single_source,
        "max_docs_per_source": max_docs_per_source, "seed": seed,
        "hyperparameters": params.model_dump(), "metrics": metrics,
        "text_preparation": {"lower": True, "whitespace": "collapsed", "max_chars": MAX_CHARS},
        "deterministic": deterministic, "training_seconds": seconds,
        "fasttext_version": _fasttext_version(),
    }
    md: ModelDir = write_model_dir(output, MODEL_FILE, kind,
                                   lambda p: model.save_model(str(p)), provenance)
    log(f"saved {md.model_file} ({md.model_file.stat().st_size / 1e6:.2f} MB, "
        f"sha256 {md.sha256[:12]})")
    return TrainResult(path=str(md.path), provenance=md.provenance)


def read_labelled_files(patterns: list[str], what: str, min_chars: int,
                        allowed: list[str] | None = None) -> list[RefDoc]:
    """Documents of multi-class sets: each record's `label`, else its file's name without
    extensions (`en.jsonl.gz` -> en). A label outside `allowed` is an error naming the file."""
    docs: list[RefDoc] = []
    for f in expand(patterns, what):
        mine = read_reference_set(glob.escape(f.as_posix()), label=_stem(f), what=f"{what}: {f}",
                                  min_chars=min_chars)
        bad = sorted({d.label for d in mine} - set(allowed)) if allowed is not None else []
        if bad:
            raise ValueError(f"{f}: labels {bad} are not among {allowed}")
        docs += mine
    return docs
