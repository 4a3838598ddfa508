"""Training objectives by name: a plan stage's `objective` is a key of `OBJECTIVES`."""

from typing import Any

from training.objectives.base import IGNORE_INDEX, Objective
from training.objectives.causal_lm import SFT, CausalLM
from training.objectives.dpo import DPO
from training.objectives.grpo import GRPO

OBJECTIVES: dict[str, type[Objective]] = {o.name: o for o in (CausalLM, SFT, DPO, GRPO)}


def build_objective(name: str, **settings: Any) -> Objective:
    """`settings`: the stage's settings for that objective (e.g. DPO's beta)."""
    try:
        cls = OBJECTIVES[name]
    except KeyError:
        raise ValueError(f"unknown objective {name!r}; known: {sorted(OBJECTIVES)}") from None
    return cls(**settings)


__all__ = [
    "DPO",
    "GRPO",
    "IGNORE_INDEX",
    "OBJECTIVES",
    "SFT",
    "CausalLM",
    "Objective",
    "build_objective",
]
