"""Warmup-stable-decay learning rate, one pure function of the step.

Linear warmup to the peak over `warmup_steps`, flat at the peak, then the last
`decay_fraction` of the stage's steps decays to `min_lr` (linearly, or "1-sqrt" as in
Hägele et al. 2024). An anneal stage is `warmup_steps=0, decay_fraction=1.0` starting
at the previous stage's LR. Being a pure function, resuming needs only the step.
"""

from __future__ import annotations

import math
from typing import Literal

DecayShape = Literal["linear", "1-sqrt"]


def wsd_lr(
    step: int,
    *,
    total_steps: int,
    peak_lr: float,
    min_lr: float,
    warmup_steps: int,
    decay_fraction: float,
    shape: DecayShape = "linear",
) -> float:
    """LR for `step` (1-based: the LR used by the step-th optimizer update)."""
    if not 1 <= step <= total_steps:
        raise ValueError(f"step {step} outside [1, {total_steps}]")
    decay_steps = round(decay_fraction * total_steps)
    decay_start = total_steps - decay_steps  # steps after this one decay
    if step <= warmup_steps and step <= decay_start:
        return peak_lr * step / warmup_steps
    if step <= decay_start:
        return peak_lr
    progress = (step - decay_start) / decay_steps  # (0, 1]; the last step reaches min_lr
    factor = 1.0 - progress if shape == "linear" else 1.0 - math.sqrt(progress)
    return min_lr + (peak_lr - min_lr) * factor
