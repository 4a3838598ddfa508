"""RoPE settings in force at each stage of a plan: one rule for the trainer and the exporter.

A stage's `rope_theta` (ABF) and `yarn` hold for it and every later stage until a later
stage sets its own, so the checkpoint of any stage exports with the RoPE it trained with.
Only `plan.model.rope_theta`, `stage.rope_theta` and `stage.yarn` are read (the latter via
getattr, so plans without the field still work); the plan type is imported for type
checking only, so training.plan may import from training.model freely.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from training.model.rope import YaRN

if TYPE_CHECKING:
    from training.plan import TrainPlan


def stage_rope_settings(plan: TrainPlan) -> list[tuple[float, YaRN | None]]:
    """(rope_theta, yarn) for each of `plan.stages`, carried forward from earlier stages."""
    theta: float = plan.model.rope_theta
    yarn: YaRN | None = None
    out: list[tuple[float, YaRN | None]] = []
    for s in plan.stages:
        theta = s.rope_theta or theta
        yarn = getattr(s, "yarn", None) or yarn
        out.append((theta, yarn))
    return out
