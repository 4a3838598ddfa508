"""Choose LSH bands x rows for a target Jaccard threshold.

A pair with Jaccard s becomes a candidate with probability P(s) = 1 - (1 - s^r)^b (the
S-curve). False positives are the area under P below the threshold, false negatives the
area above P beyond it; we pick the (b, r) with b*r <= num_perm that minimises their
weighted sum, as text-dedup does, and say what we chose and what it implies.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from curation.config import DedupConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LshParams:
    bands: int
    rows: int
    threshold: float
    false_positive_area: float
    false_negative_area: float

    def candidate_probability(self, jaccard: float | np.ndarray) -> float | np.ndarray:
        """P(a pair with this Jaccard shares at least one bucket)."""
        return 1.0 - (1.0 - np.asarray(jaccard, dtype=float) ** self.rows) ** self.bands

    def describe(self) -> str:
        p = self.candidate_probability(np.array([self.threshold - 0.1, self.threshold, 0.9]))
        return (
            f"LSH {self.bands} bands x {self.rows} rows for threshold {self.threshold:.2f}: "
            f"P(candidate | J={self.threshold - 0.1:.2f})={p[0]:.3f}, "
            f"P(candidate | J={self.threshold:.2f})={p[1]:.3f}, P(candidate | J=0.90)={p[2]:.4f}; "
            f"FP area {self.false_positive_area:.4f}, FN area {self.false_negative_area:.4f}"
        )


def _areas(threshold: float, b: int, r: int, grid: int = 400) -> tuple[float, float]:
    lo = np.linspace(0.0, threshold, grid)
    hi = np.linspace(threshold, 1.0, grid)
    p_lo = 1.0 - (1.0 - lo**r) ** b
    p_hi = 1.0 - (1.0 - hi**r) ** b
    return float(np.trapezoid(p_lo, lo)), float(np.trapezoid(1.0 - p_hi, hi))


def choose_lsh_params(
    threshold: float,
    num_perm: int,
    false_positive_weight: float = 0.5,
    false_negative_weight: float = 0.5,
    bands: int | None = None,
    rows: int | None = None,
) -> LshParams:
    """Optimal (bands, rows), or the given override after checking that it fits."""
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    if (bands is None) != (rows is None):
        raise ValueError("set both bands and rows to override the LSH choice, or neither")
    if bands is not None and rows is not None:
        if bands < 1 or rows < 1 or bands * rows > num_perm:
            raise ValueError(f"bands*rows must be <= num_perm={num_perm}, got {bands}x{rows}")
        fp, fn = _areas(threshold, bands, rows)
        chosen = LshParams(bands, rows, threshold, fp, fn)
        log.info("%s (override)", chosen.describe())
        return chosen
    best: LshParams | None = None
    best_cost = float("inf")
    for b in range(1, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            fp, fn = _areas(threshold, b, r)
            cost = false_positive_weight * fp + false_negative_weight * fn
            if cost < best_cost - 1e-12:
                best, best_cost = LshParams(b, r, threshold, fp, fn), cost
    assert best is not None
    log.info("%s (chosen by minimising %.2f*FP + %.2f*FN)", best.describe(),
             false_positive_weight, false_negative_weight)
    return best


_CHOSEN: dict[tuple, LshParams] = {}


def lsh_params_for(d: DedupConfig) -> LshParams:
    """The (bands, rows) of a dedup config, chosen once per process: the job on the driver
    and the annotation pass on every executor must agree, and the choice costs a few ms."""
    key = (d.threshold, d.num_perm, d.false_positive_weight, d.false_negative_weight,
           d.bands, d.rows)
    if key not in _CHOSEN:
        _CHOSEN[key] = choose_lsh_params(*key)
    return _CHOSEN[key]
