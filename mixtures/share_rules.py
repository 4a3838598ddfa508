"""Domain shares of a stage's budget: explicit, by temperature, or UniMax.

`available` is, per domain, the tokens of the documents that pass the stage's filters
(one copy each). The rules:

- explicit: the recipe's `domain_shares`.
- temperature: share_d ~ available_d ** (1 / T). T = 1 keeps natural proportions; larger T
  flattens them towards uniform, up-sampling small domains (Arivazhagan et al. 2019,
  "Massively Multilingual Neural Machine Translation in the Wild"; XLM-R and mT5 use
  T = 1/0.3).
- unimax: a uniform budget per domain, but no domain is repeated more than N epochs;
  domains are visited from smallest to largest, each taking min(its N-epoch supply, an
  equal split of what is left), so what small domains cannot use goes to the larger ones
  (Chung et al. 2023, "UniMax: Fairer and More Effective Language Sampling for
  Large-Scale Multilingual Pretraining"). Shares sum to less than 1 when every domain is
  at its epoch cap; the planner reports the rest as unfilled.
"""

from __future__ import annotations

from mixtures.recipe import StageSpec


def resolve_shares(stage: StageSpec, available: dict[str, int]) -> dict[str, float]:
    """Share of the budget per domain (keys sorted) under the stage's rule."""
    if stage.share_rule == "explicit":
        return dict(sorted((stage.domain_shares or {}).items()))
    domains = sorted(stage.domains if stage.domains is not None else available)
    if stage.share_rule == "temperature":
        mass = {d: float(available.get(d, 0)) ** (1.0 / stage.temperature) for d in domains}
        total = sum(mass.values())
        return {d: (m / total if total > 0 else 0.0) for d, m in mass.items()}
    return unimax_shares(stage, {d: available.get(d, 0) for d in domains})


def unimax_shares(stage: StageSpec, available: dict[str, int]) -> dict[str, float]:
    """UniMax (Chung et al. 2023) with an epoch cap of min(unimax_max_epochs, repeat_cap)."""
    budget = float(stage.token_budget)
    epochs = min(float(stage.unimax_max_epochs or 0.0), float(stage.repeat_cap))
    order = sorted(available, key=lambda d: (available[d], d))
    left, shares = budget, {}
    for i, d in enumerate(order):
        take = min(left / (len(order) - i), epochs * available[d])
        shares[d] = take / budget
        left -= take
    return dict(sorted(shares.items()))
