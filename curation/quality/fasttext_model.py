"""A trained fastText classifier as the platform uses it: loaded from a model directory
(`model_dir.py`), predicting on texts prepared exactly as in training (`fasttext_text`).

fastText raises ValueError or RuntimeError (and can fail to allocate) on a file that is
not one of its models; each becomes a one-line ValueError naming the file. Predictions
run on whole lists (fastText's C++ loop over lines), in chunks to bound memory.
fastText's probabilities are exp(log(p + 1e-5)), so they can exceed 1 by 1e-5; they are
clipped to [0, 1].
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from curation.quality.fasttext_text import LABEL_PREFIX, prepare
from curation.quality.model_dir import ModelDir, read_model_dir

KINDS = ("fasttext-quality", "fasttext-langid", "fasttext-domain")
MODEL_FILE = "model.bin"
_CHUNK = 8192


def load_fasttext_file(path: str | Path, field: str = "model") -> Any:
    """The fastText model in `path`; a file that is not one is a one-line ValueError."""
    import fasttext

    fasttext.FastText.eprint = lambda *a, **k: None  # load_model's API-change warning
    try:
        return fasttext.load_model(str(path))
    except (ValueError, RuntimeError, MemoryError, OSError) as e:
        msg = " ".join(str(e).split()) or type(e).__name__
        raise ValueError(f"{field}: model file {path} is not a readable fastText model "
                         f"({msg})") from None


class FastTextModel:
    """A fastText classifier with its label names (without `__label__`)."""

    def __init__(self, ft: Any, model_dir: ModelDir | None = None):
        self.ft = ft
        self.model_dir = model_dir
        self.labels: list[str] = [lab.removeprefix(LABEL_PREFIX) for lab in ft.get_labels()]

    @classmethod
    def load(cls, path: str | Path, kind: str, field: str = "model",
             verify: bool = True) -> FastTextModel:
        """The model directory at `path`, checked (provenance, kind, sha256 when `verify`)."""
        if kind not in KINDS:
            raise ValueError(f"{field}: unknown fastText model kind {kind!r}; one of {KINDS}")
        md = read_model_dir(path, kind, verify=verify, field=field)
        return cls(load_fasttext_file(md.model_file, field), md)

    @property
    def sha256(self) -> str | None:
        return self.model_dir.sha256 if self.model_dir else None

    def probabilities(self, texts: list[str]) -> np.ndarray:
        """(len(texts), len(labels)) probabilities, columns in `self.labels` order."""
        out = np.zeros((len(texts), len(self.labels)), dtype=np.float64)
        index = {LABEL_PREFIX + lab: j for j, lab in enumerate(self.labels)}
        for start in range(0, len(texts), _CHUNK):
            lines = [prepare(t or "") for t in texts[start:start + _CHUNK]]
            labels, probs = self.ft.predict(lines, k=-1, threshold=0.0)
            for i, (labs, ps) in enumerate(zip(labels, probs, strict=True)):
                for lab, p in zip(labs, ps, strict=True):
                    out[start + i, index[lab]] = p
        return np.clip(out, 0.0, 1.0)

    def predict(self, texts: list[str]) -> tuple[list[str], list[float]]:
        """The most probable label of each text and its probability."""
        if not texts:
            return [], []
        probs = self.probabilities(texts)
        best = probs.argmax(axis=1)
        return [self.labels[j] for j in best], [float(p) for p in probs[np.arange(len(texts)), best]]

    def prob_of(self, texts: list[str], label: str) -> list[float]:
        """P(label | text) for each text (exact: every label's probability is computed)."""
        if label not in self.labels:
            raise ValueError(f"model has no label {label!r} (labels: {self.labels})")
        if not texts:
            return []
        return [float(p) for p in self.probabilities(texts)[:, self.labels.index(label)]]
