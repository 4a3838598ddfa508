"""Where a run stands between steps, saved in every checkpoint as trainer_state.json.

A resume loads the latest checkpoint into the model and optimizer and continues at the
step after it, with the loader at the same position in the token stream, so the losses
that follow are bitwise those of an uninterrupted run.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from training.checkpoint import TRAINER_STATE, CheckpointError, latest_checkpoint, load_checkpoint
from training.data.loader import PackedLoader
from training.plan import TrainPlan

log = logging.getLogger(__name__)


@dataclass
class RunState:
    """Where a run stands between steps; checkpoints store it as trainer_state.json."""

    stage_index: int = 0
    stage_step: int = 0  # steps done in that stage
    global_step: int = 0
    skipped_steps: int = 0  # non-finite steps skipped so far, over the whole run
    loader: dict[str, Any] | None = None  # the stage loader's position (mid-stage only)
    objective: dict[str, Any] | None = None  # the stage objective's state (mid-stage only)


def data_fingerprints(data_root: Path, names: Iterable[str]) -> dict[str, str]:
    """sha256 of each mixture stage's manifest (which holds every shard's sha256)."""
    from mixtures.shard_format import MANIFEST_NAME

    return {
        name: hashlib.sha256((data_root / name / MANIFEST_NAME).read_bytes()).hexdigest()
        for name in sorted(set(names))
    }


def changed_data(checkpoint: Path, data: dict[str, str]) -> list[str]:
    """Mixture stages whose manifest differs from the one the checkpoint trained on."""
    saved = json.loads((checkpoint / TRAINER_STATE).read_text(encoding="utf-8")).get("data", {})
    return sorted(name for name, digest in data.items() if saved.get(name, digest) != digest)


def resume_state(
    plan: TrainPlan,
    ckpt_root: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    data: dict[str, str],
) -> RunState | None:
    """Load the latest checkpoint into model and optimizer; None when there is none.

    A resume on other data than the checkpoint's (a re-mixed stage, a new tokenizer) would
    continue a loader position into a different stream without a word: refused."""
    path = latest_checkpoint(ckpt_root)
    if path is None:
        log.info("--resume: no checkpoint under %s, starting fresh", ckpt_root)
        return None
    changed = changed_data(path, data)
    if changed:
        raise CheckpointError(
            f"{path}: mixture stage(s) {changed} changed since this run trained on them "
            "(their manifests differ); resuming needs the same data: train into a new --output"
        )
    saved = load_checkpoint(path, model, optimizer)
    idx, step = int(saved["stage_index"]), int(saved["stage_step"])
    if plan.stages[idx].name != saved["stage"]:
        raise ValueError(f"{path}: checkpoint of stage {saved['stage']!r} does not fit the plan")
    log.info("resuming from %s (stage %s, step %d)", path, saved["stage"], step)
    state = RunState(idx, step, int(saved["global_step"]), int(saved.get("skipped_steps", 0)))
    if step >= plan.stages[idx].steps:  # that stage is done: start the next one
        return RunState(idx + 1, 0, state.global_step, state.skipped_steps)
    state.loader, state.objective = saved["loader"], saved.get("objective")
    return state


def trainer_state(
    state: RunState,
    stage: str,
    loader: PackedLoader,
    world_size: int,
    lr: float,
    objective: dict[str, Any],
    data: dict[str, str],
) -> dict[str, Any]:
    """trainer_state.json: the run's position, the loader's, the world that saved it and
    the LR of its last step (where a branched anneal continues from)."""
    return {
        "stage": stage,
        "stage_index": state.stage_index,
        "stage_step": state.stage_step,
        "global_step": state.global_step,
        "skipped_steps": state.skipped_steps,
        "loader": loader.state_dict(),
        "world_size": world_size,
        "lr": lr,
        "objective": objective,
        "data": data,  # manifest sha256 per mixture stage: a resume must see the same
    }


def check_stop_after(plan: TrainPlan, stop_after: tuple[str, int] | None) -> None:
    """`--stop-after STAGE:STEP` must name a step the (resolved) plan reaches."""
    steps = {s.name: s.steps for s in plan.stages}
    if stop_after is not None and not 1 <= stop_after[1] <= (steps.get(stop_after[0]) or 0):
        raise ValueError(
            f"--stop-after {stop_after[0]}:{stop_after[1]}: outside the plan's steps {steps}"
        )
