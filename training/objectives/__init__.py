"""Training objectives by name: a plan stage's `objective` is a key of `OBJECTIVES`."""

from training.objectives.base import IGNORE_INDEX, Objective
from training.objectives.causal_lm import CausalLM

OBJECTIVES: dict[str, type[Objective]] = {CausalLM.name: CausalLM}


def build_objective(name: str) -> Objective:
    try:
        return OBJECTIVES[name]()
    except KeyError:
        raise ValueError(f"unknown objective {name!r}; known: {sorted(OBJECTIVES)}") from None


__all__ = ["IGNORE_INDEX", "OBJECTIVES", "CausalLM", "Objective", "build_objective"]
