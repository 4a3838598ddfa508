"""What a stage plan does, in numbers: per-domain goals and supply, epochs, tokens by
quality bucket, the repeat histogram and the most amplified clusters.

The same report backs `sharpen mix` (plan.json), `sharpen mix explain` and the notebooks'
DataFrames (`mixtures.explain`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np

from mixtures.recipe import StageSpec

if TYPE_CHECKING:
    from mixtures.planner import PlanInputs

log = logging.getLogger(__name__)

TOP_CLUSTERS = 10
# Shares that sum to 1 within the recipe's tolerance must not read as unfilled budget.
_UNFILLED_TOLERANCE = 1e-6


def stage_report(
    docs: PlanInputs,
    stage: StageSpec,
    weights: np.ndarray,
    repeats: np.ndarray,
    shares: dict[str, float],
    goal: dict[str, float],
    capacity: dict[str, float],
    available: dict[str, int],
    saturated: set[str],
    exhausted: bool,
) -> dict:
    """The plan report of one stage (JSON-able; logs shortfalls as it goes)."""
    budget = stage.token_budget
    copies_tokens = repeats.astype(np.int64) * docs.doc_tokens
    listed = np.isin(docs.domain, list(shares))
    domains = {}
    for d, share in shares.items():
        m = docs.domain == d
        used = m & (weights > 0)
        planned = int(copies_tokens[m].sum())
        target = share * budget
        row = {
            "share": share,
            "target": int(round(target)),
            "goal": int(round(goal[d])),
            "planned": planned,
            "planned_share": planned / budget,
            "docs": int(used.sum()),
            "docs_used": int((repeats[m] > 0).sum()),
            "unique_tokens": int(available.get(d, 0)),
            "epochs": planned / available[d] if available.get(d) else 0.0,
            "capacity": int(round(capacity[d])),
            "max_repeats": int(repeats[m].max()) if m.any() else 0,
            "saturated": d in saturated,
            "shortfall": int(round(max(0.0, target - capacity[d]))),
            "received": int(round(max(0.0, goal[d] - target))),
            "tokens_by_quality_bucket": _sum_by(docs.quality_bucket[m], copies_tokens[m]),
        }
        domains[d] = row
        _log_domain(stage, d, row)
    unfilled = max(0.0, budget - sum(goal.values()))
    if not exhausted and unfilled <= _UNFILLED_TOLERANCE * budget:
        unfilled = 0.0
    in_stage = listed & (weights > 0)
    report = {
        "stage": stage.name,
        "share_rule": stage.share_rule,
        "token_budget": budget,
        "planned_tokens": int(copies_tokens.sum()),
        "unfilled": int(round(unfilled)),
        "repeat_cap": stage.repeat_cap,
        "domains": domains,
        "excluded_domains": _count_by(docs.domain[~listed]),
        "filtered_docs": int((listed & (weights == 0)).sum()),
        "repeat_histogram": _count_by(repeats[in_stage]),
        "top_clusters": top_clusters(docs, repeats),
    }
    if report["unfilled"]:
        log.warning(
            "stage %s: every domain is at its cap; %d of %d budget tokens cannot be planned",
            stage.name, report["unfilled"], budget)
    log.info("stage %s: planned %d tokens (budget %d)", stage.name, report["planned_tokens"],
             budget)
    return report


def _log_domain(stage: StageSpec, d: str, row: dict) -> None:
    """Warn only about a domain's own shortfall: one at its cap only because it took over
    other domains' shortfall still supplies more than its own target."""
    if row["shortfall"]:
        log.warning(
            "stage %s: domain %s can supply %d of its %d target tokens at repeat_cap %d",
            stage.name, d, row["capacity"], row["target"], stage.repeat_cap)
    elif row["saturated"]:
        log.info(
            "stage %s: domain %s is at repeat_cap after taking over other domains' "
            "shortfall (%d tokens, its own target %d)", stage.name, d, row["capacity"],
            row["target"])


def _sum_by(keys: np.ndarray, values: np.ndarray) -> dict[str, int]:
    out: dict[str, int] = {}
    for k in np.unique(keys):
        out[str(k)] = int(values[keys == k].sum())
    return out


def _count_by(keys: np.ndarray) -> dict[str, int]:
    values, counts = np.unique(keys, return_counts=True)
    return {str(v): int(c) for v, c in zip(values, counts, strict=True)}


def top_clusters(docs: PlanInputs, repeats: np.ndarray, n: int = TOP_CLUSTERS) -> list[dict]:
    """The documents whose content the stage repeats most (copies, then cluster size):
    each is its duplicate cluster's keeper, so this is where rehydration amplifies."""
    picked = np.flatnonzero(repeats > 0)
    order = np.lexsort((docs.id_hash[picked], -docs.doc_tokens[picked],
                        -docs.cluster_size[picked], -repeats[picked]))[:n]
    rows = []
    for i in picked[order]:
        rows.append({
            "id": str(docs.ids[i]) if docs.ids is not None else f"#{int(docs.id_hash[i]):016x}",
            "domain": str(docs.domain[i]),
            "cluster_size": int(docs.cluster_size[i]),
            "quality_bucket": int(docs.quality_bucket[i]),
            "copies": int(repeats[i]),
            "tokens": int(repeats[i]) * int(docs.doc_tokens[i]),
        })
    return rows
