"""DCP checkpoints: sharded model + optimizer, plus a small JSON of trainer state.

Each rank writes its own shards with `torch.distributed.checkpoint` (so a checkpoint
loads onto a different world size); rank 0 then writes `trainer_state.json` (stage,
step, loader state) into the same directory and, last, points `checkpoints/latest.json`
at it. A directory without `trainer_state.json` is an interrupted save and is ignored.

Layout: `checkpoints/<stage>/` when a stage ends, `checkpoints/<stage>.step<N>/` for
mid-stage saves (`checkpoint_every`).
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

log = logging.getLogger(__name__)

TRAINER_STATE = "trainer_state.json"
LATEST = "latest.json"


class CheckpointError(ValueError):
    """A checkpoint is missing, incomplete or does not fit the run resuming from it."""


class RunDirInUse(CheckpointError):
    """A fresh (not `--resume`) run was pointed at a directory that holds checkpoints."""


def stage_checkpoint_dir(root: Path, stage: str, step: int | None = None) -> Path:
    return root / (stage if step is None else f"{stage}.step{step}")


def _barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def _write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def save_checkpoint(
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    trainer_state: dict[str, Any],
    *,
    is_main: bool,
) -> None:
    """Collective: every rank must call it."""
    model_sd, optim_sd = get_state_dict(model, optimizer)
    dcp.save({"model": model_sd, "optim": optim_sd}, checkpoint_id=str(path))
    _barrier()
    if is_main:
        _write_json_atomic(path / TRAINER_STATE, trainer_state)
        _write_json_atomic(path.parent / LATEST, {"path": path.name, **_summary(trainer_state)})
    _barrier()
    log.info("saved checkpoint %s", path)


def _summary(state: dict[str, Any]) -> dict[str, Any]:
    return {k: state[k] for k in ("stage", "stage_index", "stage_step", "global_step")}


def load_checkpoint(
    path: Path, model: nn.Module, optimizer: torch.optim.Optimizer | None
) -> dict[str, Any]:
    """Collective. Loads weights (and optimizer state when given) in place; returns trainer state."""
    state_file = path / TRAINER_STATE
    if not state_file.is_file():
        raise CheckpointError(f"{path}: not a complete checkpoint (no {TRAINER_STATE})")
    if optimizer is None:
        model_sd, _ = get_state_dict(model, [])
        state = {"model": model_sd}
    else:
        model_sd, optim_sd = get_state_dict(model, optimizer)
        state = {"model": model_sd, "optim": optim_sd}
    dcp.load(state, checkpoint_id=str(path))
    if optimizer is None:
        set_state_dict(model, [], model_state_dict=state["model"], optim_state_dict={})
    else:
        set_state_dict(
            model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"]
        )
    return json.loads(state_file.read_text(encoding="utf-8"))


def latest_checkpoint(root: Path) -> Path | None:
    """The directory `latest.json` points at, or None when nothing was saved yet."""
    pointer = root / LATEST
    if not pointer.is_file():
        return None
    try:
        name = json.loads(pointer.read_text(encoding="utf-8"))["path"]
    except (OSError, json.JSONDecodeError, KeyError) as e:
        raise CheckpointError(f"{pointer}: unreadable checkpoint pointer: {e}") from e
    path = root / name
    if not (path / TRAINER_STATE).is_file():
        raise CheckpointError(f"{pointer}: points at {path}, which is not a complete checkpoint")
    return path


def complete_checkpoints(root: Path) -> list[Path]:
    """Checkpoint directories under `root` whose save finished (they hold trainer state)."""
    return sorted(p.parent for p in root.glob(f"*/{TRAINER_STATE}")) if root.is_dir() else []


def check_run_dir(output: Path, *, resume: bool) -> Path | None:
    """Refuse a fresh start over checkpoints; with `resume`, the checkpoint it continues from.

    A fresh run would overwrite the old run's checkpoints one by one as it reaches their
    steps, so forgetting `--resume` would silently destroy them. Checked before torchrun
    starts and again by every rank.
    """
    root = output / "checkpoints"
    if resume:
        return latest_checkpoint(root)
    found = complete_checkpoints(root)
    if not found:
        return None
    try:
        latest = latest_checkpoint(root)
    except CheckpointError:
        latest = None
    if latest is None:
        latest = max(found, key=lambda p: (p / TRAINER_STATE).stat().st_mtime_ns)
    try:
        state = json.loads((latest / TRAINER_STATE).read_text(encoding="utf-8"))
        where = f" (stage {state['stage']}, step {state['stage_step']})"
    except (OSError, ValueError, KeyError):
        where = ""
    raise RunDirInUse(
        f"{output} already holds checkpoints, latest {latest}{where}; pass --resume to "
        "continue from it, or choose another --output"
    )


def load_model_weights(path: Path, model: nn.Module) -> dict[str, Any]:
    """Load a checkpoint's weights into an unsharded model, outside any process group.

    DCP reassembles the FSDP shards of any world size into full tensors (evaluation,
    export, notebooks). Returns the checkpoint's trainer state.
    """
    state_file = path / TRAINER_STATE
    if not state_file.is_file():
        raise CheckpointError(f"{path}: not a complete checkpoint (no {TRAINER_STATE})")
    state = {"model": model.state_dict()}
    with warnings.catch_warnings():  # "no process group: loading in a single process" is the point
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        dcp.load(state, checkpoint_id=str(path))
    model.load_state_dict(state["model"])
    return json.loads(state_file.read_text(encoding="utf-8"))
