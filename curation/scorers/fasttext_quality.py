"""Registry entry: the fastText quality classifier's P(hq) as `quality_fasttext`.

The classifier is trained by `sharpen curate train-quality` (positive reference text vs
negative, `curation/quality/train_quality.py`), in the manner of GPT-3's and DCLM's
quality filters. The model directory is checked on the driver (provenance, kind, sha256,
readable by fastText) and loaded once per process, keyed by its sha256, so a Python
worker that scores many batches or tasks reads it once.
"""

from __future__ import annotations

import pyarrow as pa

from curation.quality.fasttext_model import FastTextModel, load_fasttext_file
from curation.quality.model_dir import read_model_dir
from curation.quality.train_quality import HQ
from curation.scorers.base import DocBatch, Scorer, load_once

KIND = "fasttext-quality"


def model_key(kind: str, sha256: str) -> str:
    """The `load_once` key of a fastText model: its kind and the sha256 of its file."""
    return f"{kind}:{sha256}"


def load_fasttext(path: str, kind: str, field: str) -> FastTextModel:
    """The model directory at `path`, verified, loaded at most once in this process."""
    md = read_model_dir(path, kind, verify=True, field=field)
    return load_once(model_key(kind, md.sha256),
                     lambda: FastTextModel(load_fasttext_file(md.model_file, field), md))


class FastTextScorer(Scorer):
    """Shared by the fastText entries: the configured model, loaded lazily, once."""

    packages = ("fasttext",)
    kind: str
    field: str

    def __init__(self, cfg):
        super().__init__(cfg)
        self._model: FastTextModel | None = None

    def model_path(self) -> str | None:
        raise NotImplementedError

    @property
    def model(self) -> FastTextModel:
        if self._model is None:
            path = self.model_path()
            if path is None:
                raise ValueError(f"{self.field}: no model configured")
            self._model = load_fasttext(path, self.kind, self.field)
        return self._model

    def check(self) -> None:
        if self.model_path() is None:
            return
        super().check()
        self._model = None
        self.model  # noqa: B018  (reads, verifies and loads the model on the driver)


class FastTextQuality(FastTextScorer):
    name = "fasttext_quality"
    columns = (pa.field("quality_fasttext", pa.float64()),)
    kind = KIND
    field = "quality.fasttext_model"

    def model_path(self) -> str | None:
        return self.cfg.quality.fasttext_model

    def check(self) -> None:
        super().check()
        if self.model_path() is not None and HQ not in self.model.labels:
            raise ValueError(f"{self.field}: {self.model_path()} has no {HQ!r} label "
                             f"(labels {self.model.labels})")

    def score(self, batch: DocBatch) -> dict[str, list]:
        if self.model_path() is None:
            return {"quality_fasttext": [None] * len(batch.texts)}
        return {"quality_fasttext": self.model.prob_of(batch.texts, HQ)}
