"""Registry entry: `quality_kenlm_ppl`, CCNet's per-document perplexity under the KenLM
model of the positive reference set (`curation/quality/kenlm_model.py`).

Lower is more like the reference set; the quality ensemble maps it to [0, 1] with the
held-out percentiles in the model's provenance. With `quality.kenlm_model: null` the
column is null for every document. The model is loaded once per Python worker process,
keyed by its sha256, so a retrained model in the same directory is not served stale.
"""

from __future__ import annotations

import importlib.util

import pyarrow as pa

from curation.quality.kenlm_model import KIND, KenLMModel
from curation.quality.model_dir import read_model_dir
from curation.scorers.base import DocBatch, Scorer, load_once

FIELD = "quality.kenlm_model"


class KenLMPerplexity(Scorer):
    name = "kenlm_perplexity"
    columns = (pa.field("quality_kenlm_ppl", pa.float64()),)
    packages = ("kenlm",)

    def __init__(self, cfg):
        super().__init__(cfg)
        self.path = cfg.quality.kenlm_model
        self._key: str | None = None

    def check(self) -> None:
        """On the driver: the package, the directory and the model's sha256, then one load
        (a file that is not a KenLM model fails here, not in a Spark task)."""
        if self.path is None:
            return
        if importlib.util.find_spec("kenlm") is None:
            raise ValueError(f"{FIELD}: scoring with KenLM needs the Python package kenlm "
                             f"(pip install kenlm, or `make`)")
        md = read_model_dir(self.path, KIND, verify=True, field=FIELD)
        self._model(md.sha256)

    def key(self) -> str:
        if self._key is None:
            md = read_model_dir(self.path, KIND, verify=False, field=FIELD)
            self._key = f"kenlm:{md.sha256}"
        return self._key

    def _model(self, sha256: str | None = None) -> KenLMModel:
        key = f"kenlm:{sha256}" if sha256 else self.key()
        return load_once(key, lambda: KenLMModel.load(self.path, verify=False, field=FIELD))

    def score(self, batch: DocBatch) -> dict[str, list]:
        if self.path is None:
            return {"quality_kenlm_ppl": [None] * len(batch.texts)}
        return {"quality_kenlm_ppl": self._model().perplexities(batch.texts)}
