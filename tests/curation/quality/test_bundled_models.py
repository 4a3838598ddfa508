"""The bundled models: trained side by side (the session's `bundled_models`, one process
each) they are the models trained one after the other, and a second call trains none."""

from __future__ import annotations

import hashlib
from pathlib import Path

from curation.quality.bundled_models import MODELS, ensure_models


def _model_bytes(model_dir: str) -> dict[str, str]:
    """sha256 of each file of a model directory but its provenance (which has timings)."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(model_dir).iterdir()) if p.name != "provenance.json"}


def test_side_by_side_training_gives_the_bytes_of_one_after_the_other(bundled_models, tmp_path):
    name = "domain-fasttext"  # the quickest to train (~1.5 s)
    field = MODELS[name][1]
    lines: list[str] = []
    serial = ensure_models(tmp_path, names=(name,), log=lines.append, workers=1)
    assert lines[0].startswith(f"training {name}")
    assert _model_bytes(serial[field]) == _model_bytes(bundled_models[field])
    assert len(_model_bytes(serial[field])) >= 1


def test_a_second_call_trains_nothing(bundled_models):
    root = Path(bundled_models[MODELS["quality-kenlm"][1]]).parent
    lines: list[str] = []
    assert ensure_models(root, names=tuple(MODELS), log=lines.append) == bundled_models
    assert lines == [f"{name}: up to date in {root / name}" for name in MODELS]
