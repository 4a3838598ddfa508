"""The ensemble quality score: one number that keepers, buckets and the anneal all read.

DCLM found a fastText classifier beats perplexity filtering, and Nemotron-CC that an
ensemble of signals beats any one of them, so `quality_score` combines every signal the
job has, each first mapped to [0, 1] (higher = better):

- fastText: q = P(high quality), the classifier's probability (already in [0, 1]);
- KenLM: q = 1 / (1 + exp((log10(ppl) - c) / s)), a logistic in log-perplexity, where
  c is the 95th percentile and s a quarter of the 5th-95th percentile spread of the
  log10 perplexities of the model's own held-out reference documents (both read from the
  model's provenance.json): text as fluent as the reference set scores near 1, text at the
  edge of it 0.5, text far outside it near 0;
- heuristic: q = `curation/quality/heuristic_score.py`'s score in [0, 1].

    quality_score = sum_s(w_s * q_s) / sum_s(w_s)

over the signals s that are present for the document (a model that is not configured,
or a null signal, drops out of both sums), with the weights `quality.weights` of the
config; rounded to 1e-6 so that it is exact across platforms. With no model configured
the score is the heuristic score alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class PerplexityScale:
    """Where the reference set's held-out log10 perplexities lie (from provenance)."""

    center: float  # log10 ppl at which q = 0.5
    scale: float   # log10 ppl per e-fold of the odds

    @classmethod
    def from_provenance(cls, prov: dict) -> PerplexityScale:
        pct = prov["heldout_log10_ppl"]
        p5, p95 = float(pct["p5"]), float(pct["p95"])
        return cls(center=p95, scale=max((p95 - p5) / 4.0, 0.05))

    def quality(self, ppl: float | None) -> float | None:
        if ppl is None or not math.isfinite(ppl) or ppl <= 0:
            return None
        z = (math.log10(ppl) - self.center) / self.scale
        return 1.0 / (1.0 + math.exp(min(z, 50.0)))


def ensemble_score(signals: dict[str, float | None], weights: dict[str, float]) -> float:
    """Weighted mean of the present signals in [0, 1]; 0.0 when none is present."""
    num = den = 0.0
    for name, q in signals.items():
        w = weights.get(name, 0.0)
        if q is None or w <= 0:
            continue
        num += w * min(max(q, 0.0), 1.0)
        den += w
    return round(num / den, 6) if den else 0.0
