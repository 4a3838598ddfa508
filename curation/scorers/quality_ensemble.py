"""Registry entry: `quality_score`, the ensemble of the quality signals (see
`curation/quality/ensemble.py` for the formula). It runs after every signal it reads."""

from __future__ import annotations

import pyarrow as pa

from curation.quality.ensemble import PerplexityScale, ensemble_score
from curation.quality.model_dir import read_model_dir
from curation.scorers.base import DocBatch, Scorer, load_once


class QualityEnsemble(Scorer):
    name = "quality_ensemble"
    columns = (pa.field("quality_score", pa.float64()),)
    reads = ("quality_fasttext", "quality_kenlm_ppl", "quality_heuristic")

    def _ppl_scale(self) -> PerplexityScale | None:
        path = self.cfg.quality.kenlm_model
        if path is None:
            return None
        return load_once(f"ppl-scale:{path}", lambda: PerplexityScale.from_provenance(
            read_model_dir(path, "kenlm", verify=False, field="quality.kenlm_model").provenance))

    def check(self) -> None:
        super().check()
        try:
            self._ppl_scale()
        except KeyError as e:
            raise ValueError(f"quality.kenlm_model: {self.cfg.quality.kenlm_model}/provenance.json "
                             f"lacks {e} (retrain with `sharpen curate train-kenlm`)") from None

    def score(self, batch: DocBatch) -> dict[str, list]:
        scale, w = self._ppl_scale(), self.cfg.quality.weights
        ft = batch.columns["quality_fasttext"]
        ppl = batch.columns["quality_kenlm_ppl"]
        heur = batch.columns["quality_heuristic"]
        return {"quality_score": [
            ensemble_score({"fasttext": f, "kenlm": scale.quality(p) if scale else None,
                            "heuristic": h}, w)
            for f, p, h in zip(ft, ppl, heur, strict=True)]}
