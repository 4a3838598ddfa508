"""Mixture planner: per-document integer repeat counts for one stage.

Frequency-aware: a document's weight grows with its (capped) cluster_size and its quality
bucket. Domain-balanced: each domain's goal (its share of the budget, `share_rules`) is met
by a per-domain scale s_d with
    sum_i L_i * min(repeat_cap, s_d * w_i) == goal_d,
so every document is repeated in proportion to its weight, never above the cap. A domain
that cannot reach its goal even at the cap is saturated; what it lacks goes to the other
domains by share (water-filling), and the report says so.

Rounding the expected copies e_i to integers: every document gets floor(e_i), and the
documents with a fractional part compete for one extra copy in the order of the key
u_i / frac(e_i) (u_i a uniform draw hashed from the document id, `doc_keys`), so a
document is picked with probability ~frac(e_i). The prefix of that order that stops just
short of the goal gets the extra copy, and the gap left is filled first-fit by up to
MAX_FILL later documents of that order that still fit (or the crossing document overshoots,
whichever comes closer): a domain lands within half a document of its goal, and usually
within the length of its shortest document. A plan is therefore a few numbers per domain (`DomainParams`:
the scale and the key of the last document given an extra copy), and any document's
repeats follow from its own columns and those numbers (`repeats_from_params`), whatever
the order or partitioning of the input; the Spark engine computes repeats on its executors.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np

from mixtures.doc_keys import rounding_draws
from mixtures.plan_report import stage_report
from mixtures.recipe import StageSpec
from mixtures.share_rules import resolve_shares

log = logging.getLogger(__name__)

MAX_FILL = 64  # documents past the rounding cut that may fill the last gap to a goal


@dataclass
class PlanInputs:
    """Aligned per-document columns the planner reads (one stage's view of the table)."""

    id_hash: np.ndarray  # uint64, doc_keys.id_hashes(ids, seed, stage name)
    domain: np.ndarray  # str
    doc_tokens: np.ndarray  # int64, after the stage's max_doc_tokens truncation
    cluster_size: np.ndarray  # int64
    quality_bucket: np.ndarray  # int64
    ids: np.ndarray | None = None  # str; only to name documents in the report

    def __post_init__(self) -> None:
        self.id_hash = np.asarray(self.id_hash, dtype=np.uint64)
        self.domain = np.asarray(self.domain).astype(str)
        self.doc_tokens = np.asarray(self.doc_tokens, dtype=np.int64)
        self.cluster_size = np.asarray(self.cluster_size, dtype=np.int64)
        self.quality_bucket = np.asarray(self.quality_bucket, dtype=np.int64)
        n = len(self.id_hash)
        if not all(len(c) == n for c in (self.domain, self.doc_tokens, self.cluster_size,
                                         self.quality_bucket)):
            raise ValueError("planner inputs have different lengths")
        if n and self.doc_tokens.min() < 0:
            raise ValueError("negative document token count")


@dataclass(frozen=True)
class DomainParams:
    """Everything a document needs, besides its own columns, to know its repeats."""

    scale: float  # s_d; inf: every document of the domain at repeat_cap
    cut_key: float | None  # u/frac of the last document given an extra copy (None: none)
    cut_hash: int = 0  # its id hash (ties on cut_key are broken by the hash)
    fill: tuple[int, ...] = ()  # id hashes of documents past the cut that also get one


@dataclass
class StagePlan:
    """Repeats per document (aligned with the inputs), the per-domain parameters that
    reproduce them, and the stage report."""

    stage: str
    repeats: np.ndarray
    doc_tokens: np.ndarray
    params: dict[str, DomainParams]
    report: dict = field(default_factory=dict)

    @property
    def planned_tokens(self) -> int:
        return int((self.repeats.astype(np.int64) * self.doc_tokens).sum())


def stage_min_bucket(stage: StageSpec, domain: np.ndarray) -> np.ndarray | None:
    """Per-document minimum quality bucket (one for all, or per domain), or None."""
    mqb = stage.min_quality_bucket
    if mqb is None:
        return None
    if isinstance(mqb, int):
        return np.full(len(domain), mqb, dtype=np.int64)
    out = np.full(len(domain), np.iinfo(np.int64).min, dtype=np.int64)
    for d, b in mqb.items():
        out[domain == d] = b
    return out


def document_weights(docs: PlanInputs, stage: StageSpec) -> np.ndarray:
    """Repeat weight per document; 0 means excluded by the stage's filters."""
    cs = np.clip(docs.cluster_size.astype(np.float64), 1.0, float(stage.cluster_size_cap))
    w = cs**stage.cluster_size_weight
    if stage.quality_bucket_weights:
        qw = np.ones(len(w))
        for bucket, weight in stage.quality_bucket_weights.items():
            qw[docs.quality_bucket == bucket] = weight
        w = w * qw
    if stage.length_weight:
        w = w * np.maximum(docs.doc_tokens, 1).astype(np.float64) ** stage.length_weight
    keep = docs.doc_tokens > 0
    min_bucket = stage_min_bucket(stage, docs.domain)
    if min_bucket is not None:
        keep &= docs.quality_bucket >= min_bucket
    if stage.min_doc_tokens is not None:
        keep &= docs.doc_tokens >= stage.min_doc_tokens
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


def _expected(weights: np.ndarray, scale: float, cap: float) -> np.ndarray:
    if math.isinf(scale):
        return np.where(weights > 0, cap, 0.0)
    return np.minimum(cap, weights * scale)


def _rounding_keys(expected: np.ndarray, id_hash: np.ndarray) -> np.ndarray:
    """u / frac(e): smaller keys win the extra copy first; inf when e is whole."""
    frac = expected - np.floor(expected)
    with np.errstate(divide="ignore"):
        return np.where(frac > 0, rounding_draws(id_hash) / np.where(frac > 0, frac, 1.0),
                        np.inf)


def repeats_from_params(
    docs: PlanInputs, stage: StageSpec, params: dict[str, DomainParams]
) -> np.ndarray:
    """Each document's repeats from its own columns and the plan's per-domain numbers.

    A pure per-row function: the same for a document wherever it is read, which is what
    lets the Spark engine expand copies on its executors.
    """
    weights = document_weights(docs, stage)
    repeats = np.zeros(len(weights), dtype=np.int32)
    cap = float(stage.repeat_cap)
    for d, p in params.items():
        m = docs.domain == d
        if not m.any():
            continue
        e = _expected(weights[m], p.scale, cap)
        extra = np.zeros(len(e), dtype=bool)
        if p.cut_key is not None:
            k = _rounding_keys(e, docs.id_hash[m])
            extra = (k < p.cut_key) | ((k == p.cut_key) & (docs.id_hash[m] <= p.cut_hash))
        if p.fill:
            extra |= np.isin(docs.id_hash[m], np.asarray(p.fill, dtype=np.uint64))
        repeats[m] = np.minimum(np.floor(e).astype(np.int32) + extra, stage.repeat_cap)
    return repeats


def _choose_cut(
    expected: np.ndarray, doc_tokens: np.ndarray, id_hash: np.ndarray, goal: float
) -> tuple[float | None, int, tuple[int, ...]]:
    """Which fractional documents get their extra copy: the prefix of the rounding order
    that stops just short of the goal, then (first fit, in the same order) up to MAX_FILL
    later documents that still fit, unless overshooting with the crossing document comes
    closer. Returns the prefix's last key and hash, and the fill documents' hashes."""
    need = goal - float((np.floor(expected) * doc_tokens).sum())
    k = _rounding_keys(expected, id_hash)
    cand = np.flatnonzero(np.isfinite(k))
    if need <= 0 or len(cand) == 0:
        return None, 0, ()
    order = cand[np.lexsort((id_hash[cand], k[cand]))]
    prefix = np.concatenate([[0], np.cumsum(doc_tokens[order])])
    j = min(int(np.searchsorted(prefix, need, side="left")), len(order))
    fill: list[int] = []
    if prefix[j] > need:  # the j-th document crosses the goal: try filling the gap instead
        left = need - prefix[j - 1]
        for i in order[j:]:
            if doc_tokens[i] <= left:
                fill.append(int(id_hash[i]))
                left -= doc_tokens[i]
                if len(fill) == MAX_FILL:
                    break
        if left <= prefix[j] - need:
            j -= 1
        else:
            fill = []
    if j == 0:
        return None, 0, tuple(sorted(fill))
    last = order[j - 1]
    return float(k[last]), int(id_hash[last]), tuple(sorted(fill))


def _water_fill(
    shares: dict[str, float], capacity: dict[str, float], budget: int
) -> tuple[dict[str, float], set[str], bool]:
    """Goals per domain: saturated domains give up their unmet target to the others by
    share. Returns (goals, saturated domains, whether every domain with a share is capped)."""
    goal = {d: s * budget for d, s in shares.items()}
    saturated: set[str] = set()
    while True:
        newly = {d for d in goal if d not in saturated and goal[d] > capacity[d] + 1e-9}
        if not newly:
            return goal, saturated, False
        saturated |= newly
        deficit = sum(goal[d] - capacity[d] for d in newly)
        for d in newly:
            goal[d] = capacity[d]
        open_shares = {d: s for d, s in shares.items() if d not in saturated}
        share_sum = sum(open_shares.values())
        if share_sum <= 0:
            return goal, saturated, True
        for d, s in open_shares.items():
            goal[d] += deficit * s / share_sum


def plan_stage(docs: PlanInputs, stage: StageSpec) -> StagePlan:
    """Plan one stage: per-domain goals, scales and rounding cuts, then every repeat."""
    budget = stage.token_budget
    cap = float(stage.repeat_cap)
    weights = document_weights(docs, stage)
    available = {
        str(d): int(docs.doc_tokens[(docs.domain == d) & (weights > 0)].sum())
        for d in np.unique(docs.domain)
    }
    shares = resolve_shares(stage, available)
    capacity = {d: cap * available.get(d, 0) for d in shares}
    goal, saturated, exhausted = _water_fill(shares, capacity, budget)

    params: dict[str, DomainParams] = {}
    for d in shares:
        m = (docs.domain == d) & (weights > 0)
        w, n_tok = np.unique(weights[m], return_inverse=True)
        grouped = np.bincount(n_tok, weights=docs.doc_tokens[m], minlength=len(w))
        scale = solve_scale(grouped, w, cap, goal[d])
        e = _expected(weights[m], scale, cap)
        params[d] = DomainParams(scale, *_choose_cut(e, docs.doc_tokens[m], docs.id_hash[m],
                                                     goal[d]))
    repeats = repeats_from_params(docs, stage, params)
    report = stage_report(docs, stage, weights, repeats, shares, goal, capacity, available,
                          saturated, exhausted)
    return StagePlan(stage.name, repeats, docs.doc_tokens, params, report)
