"""Stage plan: the YAML a `sharpen train` run executes, validated at load.

One model, trained through an ordered list of stages. Each stage names a mixture stage
(`<data_root>/<data>/`), its length and its slice of the warmup-stable-decay schedule;
it starts from the previous stage's final weights *and* optimizer state (AdamW moments
carry over, so an anneal stage continues smoothly) unless `reset_optimizer` is set.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from training.model.config import ModelSpec

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class PlanError(ValueError):
    """The plan YAML is unreadable or invalid; the message names the file and field."""


class StageSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Stage name: metrics tag and checkpoints/<name>/ directory.")
    data: str = Field(description="Mixture stage directory name, resolved as <data_root>/<data>/.")
    steps: int = Field(gt=0, description="Optimizer steps in this stage.")
    seq_len: int = Field(gt=0, description="Tokens per training window (inputs; +1 for targets).")
    batch_size: int = Field(gt=0, description="Windows per rank per step.")
    lr: float | None = Field(
        default=None,
        gt=0,
        description="Peak LR. Omit (null) to continue from the previous stage's final LR "
        "(the anneal stage of a WSD run).",
    )
    min_lr: float = Field(default=0.0, ge=0, description="LR reached at the end of the decay.")
    warmup_steps: int = Field(default=0, ge=0, description="Linear warmup steps from 0 to lr.")
    decay_fraction: float = Field(
        default=0.0, ge=0, le=1, description="Final fraction of steps decaying to min_lr."
    )
    decay_shape: Literal["linear", "1-sqrt"] = Field(default="linear", description="Decay curve.")
    weight_decay: float = Field(default=0.1, ge=0, description="AdamW decoupled weight decay.")
    grad_clip: float | None = Field(
        default=1.0, gt=0, description="Clip the global gradient norm to this (null: no clip)."
    )
    rope_theta: float | None = Field(
        default=None, gt=0, description="RoPE base for this stage and after (length extension)."
    )
    reset_optimizer: bool = Field(
        default=False, description="Start this stage with fresh AdamW moments."
    )
    checkpoint: bool = Field(default=True, description="Save a DCP checkpoint when the stage ends.")
    checkpoint_every: int | None = Field(
        default=None, gt=0, description="Also save a resumable checkpoint every N steps."
    )

    @model_validator(mode="after")
    def _check(self) -> StageSpec:
        if not _NAME.match(self.name):
            raise ValueError(f"stage name {self.name!r} must be a plain file name")
        if self.warmup_steps + round(self.decay_fraction * self.steps) > self.steps:
            raise ValueError(
                f"stage {self.name!r}: warmup_steps + decay steps exceed steps={self.steps}"
            )
        return self


class TrainPlan(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: ModelSpec = Field(description="Architecture (vocab size comes from the manifest).")
    seed: int = Field(default=0, description="Seeds model init and the loaders.")
    dtype: Literal["float32", "bfloat16"] = Field(
        default="float32", description="Compute dtype of parameters in forward/backward."
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto", description="auto: CUDA when available (nccl), else CPU (gloo)."
    )
    stages: list[StageSpec] = Field(min_length=1, description="Stages, trained in order.")

    @model_validator(mode="after")
    def _check(self) -> TrainPlan:
        names = [s.name for s in self.stages]
        if len(set(names)) != len(names):
            raise ValueError(f"stage names must be unique, got {names}")
        if self.stages[0].lr is None:
            raise ValueError(f"stage {names[0]!r}: the first stage needs an lr")
        for s in self.stages:
            if s.seq_len > self.model.max_seq_len:
                raise ValueError(
                    f"stage {s.name!r}: seq_len {s.seq_len} > model.max_seq_len "
                    f"{self.model.max_seq_len}"
                )
        return self


def load_plan(path: str | Path) -> TrainPlan:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise
    except yaml.MarkedYAMLError as e:
        raise PlanError(_yaml_error(path, e)) from e
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise PlanError(f"{path}: unreadable plan: {' '.join(str(e).split())}") from e
    if not isinstance(raw, dict):
        raise PlanError(f"{path}: plan must be a YAML mapping")
    try:
        return TrainPlan.model_validate(raw)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<plan>'}: {err['msg']}"
            for err in e.errors()
        )
        raise PlanError(f"{path}: invalid plan: {problems}") from e


def _yaml_error(path: Path, e: yaml.MarkedYAMLError) -> str:
    """`plan.yaml:7: invalid YAML: ...` on one line: an editor jumps to the line."""
    mark = e.problem_mark or e.context_mark
    what = ", ".join(" ".join(str(t).split()) for t in (e.context, e.problem) if t)
    if mark is None:
        return f"{path}: invalid YAML: {what}"
    return f"{path}:{mark.line + 1}: invalid YAML: {what} (column {mark.column + 1})"
