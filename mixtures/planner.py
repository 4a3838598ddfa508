"""Mixture planner: per-document integer repeat counts for one stage.

Frequency-aware: a document's weight grows with its (capped) cluster_size and its quality
bucket. Domain-balanced: a per-domain scale s_d is solved so that
    sum_i n_i * min(repeat_cap, s_d * w_i) == share_d * budget,
i.e. every document is repeated in proportion to its weight, never above the cap. A
domain that cannot reach its target even with every document at the cap is saturated;
what it lacks goes to the other domains in proportion to their shares (water-filling),
and the report says so instead of silently missing the target.
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass, field

import numpy as np

from mixtures.recipe import StageSpec

log = logging.getLogger(__name__)


@dataclass
class StagePlan:
    """Repeats per document (aligned with the planner's input rows) and the stage report."""

    stage: str
    repeats: np.ndarray
    doc_tokens: np.ndarray
    report: dict = field(default_factory=dict)

    @property
    def planned_tokens(self) -> int:
        return int((self.repeats.astype(np.int64) * self.doc_tokens).sum())


def stage_rng(seed: int, stage: str, purpose: str) -> np.random.Generator:
    """Independent, reproducible random stream per (seed, stage, purpose)."""
    return np.random.default_rng(
        [seed, zlib.crc32(stage.encode("utf-8")), zlib.crc32(purpose.encode("utf-8"))]
    )


def document_weights(
    doc_tokens: np.ndarray,
    cluster_size: np.ndarray,
    quality_bucket: np.ndarray,
    stage: StageSpec,
) -> np.ndarray:
    """Repeat weight per document; 0 means excluded by the stage's filters."""
    cs = np.clip(cluster_size.astype(np.float64), 1.0, float(stage.cluster_size_cap))
    w = cs**stage.cluster_size_weight
    if stage.quality_bucket_weights:
        qw = np.ones(len(w))
        for bucket, weight in stage.quality_bucket_weights.items():
            qw[quality_bucket == bucket] = weight
        w = w * qw
    if stage.length_weight:
        w = w * np.maximum(doc_tokens, 1).astype(np.float64) ** stage.length_weight
    keep = doc_tokens > 0
    if stage.min_quality_bucket is not None:
        keep &= quality_bucket >= stage.min_quality_bucket
    if stage.min_doc_tokens is not None:
        keep &= doc_tokens >= stage.min_doc_tokens
    return np.where(keep, w, 0.0)


def solve_scale(n: np.ndarray, w: np.ndarray, cap: float, target: float) -> float:
    """Smallest s with sum n*min(cap, s*w) >= target (inf if even the cap falls short).

    T(s) is piecewise linear in s with breakpoints cap/w_i; sort them and find the piece
    that holds the target, so the solve is exact and O(N log N).
    """
    pos = w > 0
    n, w = n[pos].astype(np.float64), w[pos]
    if target <= 0 or len(n) == 0:
        return 0.0 if target <= 0 else float("inf")
    if cap * n.sum() < target:
        return float("inf")
    order = np.argsort(cap / w, kind="stable")
    t = (cap / w)[order]
    nw = (n * w)[order]
    # With s in [t[k-1], t[k]]: docs < k are capped, T(s) = s * A_k + cap * B_k.
    a = np.concatenate([np.cumsum(nw[::-1])[::-1], [0.0]])  # A_k: uncapped sum n*w from k
    b = np.concatenate([[0.0], np.cumsum(n[order])])  # B_k: token count of capped docs < k
    t_at = t * a[:-1] + cap * b[:-1]  # T(t_k)
    k = int(np.searchsorted(t_at, target, side="left"))
    if k >= len(t):  # only reachable through float rounding at the very top
        return float(t[-1])
    return float((target - cap * b[k]) / a[k])


def _round_repeats(
    expected: np.ndarray, doc_tokens: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Integer repeats with E[r] == expected: floor plus systematic rounding of the fractions.

    Systematic rounding (one random start, then every unit of cumulative fraction gets one
    extra copy) selects each document with probability equal to its fraction, and along
    a length-sorted order (random among equal lengths) any prefix gets within one copy of
    its expectation, so a domain's tokens land within about two document lengths of its
    goal, not just in expectation.
    """
    base = np.floor(expected)
    frac = expected - base
    shuffled = rng.permutation(len(expected))
    order = shuffled[np.argsort(doc_tokens[shuffled], kind="stable")]
    cum = rng.random() + np.concatenate([[0.0], np.cumsum(frac[order])])
    extra = np.empty(len(expected))
    extra[order] = np.diff(np.floor(cum))
    return (base + extra).astype(np.int32)


def plan_stage(
    doc_tokens: np.ndarray,
    domain: np.ndarray,
    cluster_size: np.ndarray,
    quality_bucket: np.ndarray,
    stage: StageSpec,
    seed: int,
) -> StagePlan:
    """Plan one stage. Inputs are aligned per-document columns (domain as strings)."""
    doc_tokens = np.asarray(doc_tokens, dtype=np.int64)
    domain = np.asarray(domain).astype(str)
    cluster_size = np.asarray(cluster_size, dtype=np.int64)
    quality_bucket = np.asarray(quality_bucket, dtype=np.int64)
    n_docs = len(doc_tokens)
    if not (len(domain) == len(cluster_size) == len(quality_bucket) == n_docs):
        raise ValueError(f"stage {stage.name}: planner inputs have different lengths")
    if n_docs and doc_tokens.min() < 0:
        raise ValueError(f"stage {stage.name}: negative document token count")

    budget = stage.token_budget
    cap = float(stage.repeat_cap)
    weights = document_weights(doc_tokens, cluster_size, quality_bucket, stage)
    listed = np.isin(domain, list(stage.domain_shares))
    weights = np.where(listed, weights, 0.0)

    doms = sorted(stage.domain_shares)
    members = {d: np.flatnonzero(domain == d) for d in doms}
    capacity = {d: cap * float(doc_tokens[m][weights[m] > 0].sum()) for d, m in members.items()}
    target = {d: stage.domain_shares[d] * budget for d in doms}

    # Water-filling: saturated domains give up their unmet target to the others by share.
    goal = dict(target)
    saturated: set[str] = set()
    exhausted = False  # every domain with a share is at its cap: the stage falls short
    while True:
        newly = {d for d in doms if d not in saturated and goal[d] > capacity[d] + 1e-9}
        if not newly:
            break
        saturated |= newly
        deficit = sum(goal[d] - capacity[d] for d in newly)
        for d in newly:
            goal[d] = capacity[d]
        open_shares = {d: stage.domain_shares[d] for d in doms if d not in saturated}
        share_sum = sum(open_shares.values())
        if share_sum <= 0:
            exhausted = True
            break
        for d, s in open_shares.items():
            goal[d] += deficit * s / share_sum

    expected = np.zeros(n_docs)
    for d in doms:
        m = members[d]
        s = solve_scale(doc_tokens[m], weights[m], cap, goal[d])
        expected[m] = np.minimum(cap, weights[m] * s) if np.isfinite(s) else cap * (weights[m] > 0)
    repeats = np.zeros(n_docs, dtype=np.int32)
    rng = stage_rng(seed, stage.name, "repeats")
    for d in doms:  # per domain, so each domain's total is tight on its own
        m = members[d]
        repeats[m] = _round_repeats(expected[m], doc_tokens[m], rng)
    repeats = np.minimum(repeats, stage.repeat_cap).astype(np.int32)

    domains_report = {}
    for d in doms:
        m = members[d]
        planned = int((repeats[m].astype(np.int64) * doc_tokens[m]).sum())
        domains_report[d] = {
            "share": stage.domain_shares[d],
            "target": int(round(target[d])),
            "goal": int(round(goal[d])),
            "planned": planned,
            "planned_share": planned / budget if budget else 0.0,
            "docs": int((weights[m] > 0).sum()),
            "docs_used": int((repeats[m] > 0).sum()),
            "unique_tokens": int(doc_tokens[m][weights[m] > 0].sum()),
            "capacity": int(round(capacity[d])),
            "max_repeats": int(repeats[m].max()) if len(m) else 0,
            "saturated": d in saturated,
            "shortfall": int(round(max(0.0, target[d] - capacity[d]))),
            "received": int(round(max(0.0, goal[d] - target[d]))),
        }
        # Warn only about a domain's own shortfall: one that is at its cap only because it
        # took over other domains' shortfall still supplies more than its own target.
        if domains_report[d]["shortfall"]:
            log.warning(
                "stage %s: domain %s can supply %d of its %d target tokens at repeat_cap %d",
                stage.name,
                d,
                int(capacity[d]),
                int(round(target[d])),
                stage.repeat_cap,
            )
        elif d in saturated:
            log.info(
                "stage %s: domain %s is at repeat_cap after taking over other domains' "
                "shortfall (%d tokens, its own target %d)",
                stage.name,
                d,
                int(capacity[d]),
                int(round(target[d])),
            )
    excluded = {
        str(d): int(c) for d, c in zip(*np.unique(domain[~listed], return_counts=True), strict=True)
    }
    planned_total = int((repeats.astype(np.int64) * doc_tokens).sum())
    report = {
        "stage": stage.name,
        "token_budget": budget,
        "planned_tokens": planned_total,
        # Only a stage whose every domain is capped is short: shares that sum to 1 within
        # the recipe's tolerance must not read as unfilled budget.
        "unfilled": int(round(max(0.0, budget - sum(goal.values())))) if exhausted else 0,
        "repeat_cap": stage.repeat_cap,
        "domains": domains_report,
        "excluded_domains": excluded,
        "filtered_docs": int((listed & (weights == 0)).sum()),
    }
    if report["unfilled"]:
        log.warning(
            "stage %s: every domain is at repeat_cap; %d of %d budget tokens cannot be planned",
            stage.name,
            report["unfilled"],
            budget,
        )
    log.info("stage %s: planned %d tokens (budget %d)", stage.name, planned_total, budget)
    return StagePlan(stage=stage.name, repeats=repeats, doc_tokens=doc_tokens, report=report)
