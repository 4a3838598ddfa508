"""What each stage of a (resolved) plan starts from: its peak LR and its RoPE settings.

Warmup-stable-decay is a pure function of the step (`optim/wsd_schedule.py`), so resuming
needs only the step; a stage with `lr: null` continues at the LR the run stood at: the
previous stage's final LR, or, for a stage branched off another run (`init_from`), the
LR that run's checkpoint recorded.
"""

from __future__ import annotations

import json
from pathlib import Path

from training.checkpoint import TRAINER_STATE
from training.model.rope_schedule import stage_rope_settings
from training.optim import wsd_lr
from training.plan import StageSpec, TrainPlan


def stage_peak_lrs(plan: TrainPlan) -> list[float]:
    """Each stage's peak LR. `lr: null` continues at the LR the stage starts from: the
    previous stage's final LR, or for a stage branched off another run (`init_from`,
    e.g. an anneal) the LR that run's checkpoint last stepped with."""
    if not plan.resolved:
        raise ValueError("stage_peak_lrs needs a plan with resolved stage lengths")
    peaks: list[float] = []
    for i, s in enumerate(plan.stages):
        if s.lr is not None:
            peaks.append(s.lr)
        elif s.init_from is not None:
            peaks.append(checkpoint_lr(s.init_from))
        else:
            prev = plan.stages[i - 1]
            peaks.append(stage_lr(prev, prev.steps, peaks[-1]))
    return peaks


def checkpoint_lr(path: Path) -> float:
    """The LR of the last step before a checkpoint was saved (`lr` in its trainer_state.json)."""
    saved = json.loads((path / TRAINER_STATE).read_text(encoding="utf-8"))
    if "lr" not in saved:
        raise ValueError(
            f"{path}: the checkpoint does not record its LR (saved by an older version); "
            "give the stage an explicit lr"
        )
    return float(saved["lr"])


def stage_rope_thetas(plan: TrainPlan) -> list[float]:
    """A stage's `rope_theta` holds for it and every later stage until overridden."""
    return [theta for theta, _ in stage_rope_settings(plan)]


def stage_lr(stage: StageSpec, step: int, peak: float) -> float:
    """The LR of a stage's `step` (1-based) under its warmup-stable-decay settings."""
    return wsd_lr(
        step,
        total_steps=stage.steps,
        peak_lr=peak,
        min_lr=stage.min_lr,
        warmup_steps=stage.warmup_steps,
        decay_fraction=stage.decay_fraction,
        shape=stage.decay_shape,
    )
