"""Registry entry: the heuristic quality signal (`curation/quality/heuristic_score.py`)."""

from __future__ import annotations

import pyarrow as pa

from curation.quality.heuristic_score import heuristic_quality
from curation.scorers.base import DocBatch, Scorer


class HeuristicQuality(Scorer):
    name = "heuristic_quality"
    columns = (pa.field("quality_heuristic", pa.float64()),)

    def score(self, batch: DocBatch) -> dict[str, list]:
        return {"quality_heuristic": [heuristic_quality(t) for t in batch.texts]}
