"""Stage plan: the YAML a `sharpen train` run executes, validated at load.

One model, trained through an ordered list of stages. Each stage names a mixture stage
(`<data_root>/<data>/`), its length and its slice of the warmup-stable-decay schedule;
it starts from the previous stage's final weights *and* optimizer state (AdamW moments
carry over, so an anneal stage continues smoothly) unless `reset_optimizer` is set, or
from another run's checkpoint (`init_from`, e.g. to branch an anneal off a long run).
A stage names the `objective` it optimises (`training/objectives/`): later stage types
(SFT, preference tuning) are new objectives run by the same loop.

The global batch of a step is `world_size * grad_accum * batch_size` windows of
`seq_len` tokens; the loss is the mean over its valid targets whatever the split.

A stage's length is a token budget (`tokens`, or `tokens: planned` for the mixture
stage's planned token count from its manifest) or, for tests and ablations, a step count.
The steps follow once the world size is known (`resolve_stage_lengths`): a step reads
`world_size * grad_accum * batch_size * (seq_len + 1)` stream tokens, and the stage runs
`floor(tokens / that)` steps, so it trains on its budget to within one global batch.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from training.checkpoint import TRAINER_STATE
from training.model.config import ModelSpec
from training.model.presets import expand_preset
from training.model.rope import YaRN
from training.objectives import OBJECTIVES

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class PlanError(ValueError):
    """The plan YAML is unreadable or invalid; the message names the file and field."""


class DPOSpec(BaseModel):
    """Settings of the `dpo` objective (training/objectives/dpo.py)."""

    model_config = ConfigDict(extra="forbid")

    beta: float = Field(
        default=0.1, gt=0, description="Strength of the implicit KL to the reference."
    )
    loss: Literal["sigmoid", "ipo", "length_normalized"] = Field(
        default="sigmoid",
        description="sigmoid: DPO (Rafailov et al. 2023); ipo: IPO on token-mean log-probs; "
        "length_normalized: log-ratios divided by reply lengths.",
    )
    label_smoothing: float = Field(
        default=0.0, ge=0, lt=0.5, description="cDPO: assumed share of flipped preference labels."
    )


class GRPOSpec(BaseModel):
    """Settings of the `grpo` objective: how rollouts are sampled and the update clipped."""

    model_config = ConfigDict(extra="forbid")

    group_size: int = Field(default=4, ge=2, description="Completions sampled per prompt (G).")
    max_new_tokens: int = Field(default=32, gt=0, description="Longest completion sampled.")
    temperature: float = Field(default=1.0, gt=0, description="Sampling temperature.")
    top_p: float = Field(default=1.0, gt=0, le=1, description="Nucleus sampling mass.")
    advantage_scale: Literal["std", "none"] = Field(
        default="std", description="std: GRPO's group std; none: Dr. GRPO (mean only)."
    )
    clip_eps: float = Field(default=0.2, gt=0, description="PPO ratio clip (lower side).")
    clip_eps_high: float | None = Field(
        default=None, gt=0, description="Upper ratio clip (DAPO's clip-higher); null: clip_eps."
    )
    kl_beta: float = Field(
        default=0.0, ge=0, description="Weight of the k3 KL to the frozen stage-start policy."
    )

    def loss_settings(self) -> dict[str, Any]:
        return {"clip_eps": self.clip_eps, "clip_eps_high": self.clip_eps_high,
                "kl_beta": self.kl_beta}  # fmt: skip


class StageSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Stage name: metrics tag and checkpoints/<name>/ directory.")
    data: str = Field(description="Mixture stage directory name, resolved as <data_root>/<data>/.")
    tokens: int | Literal["planned"] | None = Field(
        default=None,
        description="Stage length as a token budget: an integer, or `planned` for the "
        "mixture stage's planned tokens (its manifest's total_tokens). Steps follow from "
        "it and the global batch in tokens. Give either tokens or steps.",
    )
    steps: int | None = Field(
        default=None,
        gt=0,
        description="Stage length in optimizer steps instead of tokens (tests, ablations).",
    )
    seq_len: int = Field(gt=0, description="Tokens per training window (inputs; +1 for targets).")
    batch_size: int = Field(gt=0, description="Windows per rank per micro-batch.")
    grad_accum: int = Field(
        default=1,
        gt=0,
        description="Micro-batches per optimizer step (gradient accumulation); the global "
        "batch is world_size * grad_accum * batch_size windows.",
    )
    objective: str = Field(
        default="causal_lm",
        description=f"Loss this stage optimises, one of {sorted(OBJECTIVES)}.",
    )
    dpo: DPOSpec | None = Field(
        default=None, description="Settings of the dpo objective (defaults when omitted)."
    )
    grpo: GRPOSpec | None = Field(
        default=None, description="Settings of the grpo objective (defaults when omitted)."
    )
    init_from: Path | None = Field(
        default=None,
        description="Checkpoint directory of another run (it holds trainer_state.json; "
        "relative to the working directory): the stage starts from its weights, and from "
        "its AdamW state unless reset_optimizer.",
    )
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
    yarn: YaRN | None = Field(
        default=None,
        description="YaRN RoPE scaling for this stage and after (length extension beyond the "
        "trained context; training/model/rope.py documents its fields).",
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
        if self.objective not in OBJECTIVES:
            raise ValueError(
                f"stage {self.name!r}: unknown objective {self.objective!r}; "
                f"known: {sorted(OBJECTIVES)}"
            )
        if self.init_from is not None and not (self.init_from / TRAINER_STATE).is_file():
            raise ValueError(
                f"stage {self.name!r}: init_from {str(self.init_from)!r} is not a complete "
                f"checkpoint directory (no {TRAINER_STATE})"
            )
        if self.dpo is not None and self.objective != "dpo":
            raise ValueError(f"stage {self.name!r}: `dpo` settings need objective: dpo")
        if self.grpo is not None and self.objective != "grpo":
            raise ValueError(f"stage {self.name!r}: `grpo` settings need objective: grpo")
        if self.objective in ("dpo", "grpo") and self.tokens is not None:
            raise ValueError(
                f"stage {self.name!r}: a {self.objective} stage's length is given in steps "
                "(pairs or prompts per step are world_size * grad_accum * batch_size), not tokens"
            )
        if (self.tokens is None) == (self.steps is None):
            raise ValueError(
                f"stage {self.name!r}: give its length as either `tokens` (a budget, or "
                "`planned`) or `steps`, not both or neither"
            )
        if isinstance(self.tokens, int) and self.tokens <= 0:
            raise ValueError(f"stage {self.name!r}: tokens must be > 0, got {self.tokens}")
        if self.steps is not None:
            self.check_schedule_fits(self.steps)
        return self

    def check_schedule_fits(self, steps: int) -> None:
        if self.warmup_steps + round(self.decay_fraction * steps) > steps:
            raise ValueError(
                f"stage {self.name!r}: warmup_steps + decay steps exceed its {steps} steps"
            )

    def objective_settings(self) -> dict[str, Any]:
        """Keyword arguments of the stage's objective (training.objectives.build_objective)."""
        if self.objective == "dpo":
            return (self.dpo or DPOSpec()).model_dump()
        if self.objective == "grpo":
            return (self.grpo or GRPOSpec()).loss_settings()
        return {}

    def token_budget(self, planned_tokens: dict[str, int]) -> int | None:
        """The stage's budget in stream tokens (None when its length is set in steps)."""
        return planned_tokens[self.data] if self.tokens == "planned" else self.tokens

    def stream_tokens_per_step(self, world_size: int) -> int:
        """Stream tokens one optimizer step reads (a window is seq_len + 1 tokens)."""
        return world_size * self.grad_accum * self.batch_size * (self.seq_len + 1)


class TrainPlan(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: ModelSpec = Field(
        description="Architecture (vocab size comes from the manifest). `{preset: NAME, ...overrides}` starts from a preset of training/model/presets.py (tiny, demo, 1b, xgen-small-4b, xgen-small-9b)."
    )
    seed: int = Field(default=0, description="Seeds model init and the loaders.")
    dtype: Literal["float32", "bfloat16"] = Field(
        default="float32", description="Compute dtype of parameters in forward/backward."
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto", description="auto: CUDA when available (nccl), else CPU (gloo)."
    )
    activation_checkpointing: bool = Field(
        default=False,
        description="Recompute each transformer block's activations in backward: less "
        "memory for about a third more compute.",
    )
    max_nan_skips: int = Field(
        default=10,
        ge=0,
        description="Steps with a non-finite loss or gradient norm are skipped (no update) "
        "and counted; one more than this stops the run.",
    )
    tensorboard: bool = Field(
        default=True, description="Also write the metrics to <run>/tensorboard/ (rank 0)."
    )
    passkey_samples: int = Field(
        default=8,
        ge=0,
        description="Passkey prompts probed at each stage's seq_len when it ends (0: off); "
        "the accuracy goes into the stage's last metrics row.",
    )
    compile: bool = Field(
        default=False,
        description="torch.compile each transformer block (attention kernels stay eager: "
        "their document layout varies per batch). Pays a compile at the first step of each "
        "new shape; worth it on GPUs, rarely on CPU.",
    )
    context_parallel: int = Field(
        default=1,
        ge=1,
        description="Ranks that split one sequence (the device mesh's `cp` dimension). Only "
        "1 runs today; docs/long_context.md is the plan for more.",
    )
    stages: list[StageSpec] = Field(min_length=1, description="Stages, trained in order.")

    @field_validator("model", mode="before")
    @classmethod
    def _expand_preset(cls, v: object) -> object:
        return expand_preset(v)

    @model_validator(mode="after")
    def _check(self) -> TrainPlan:
        names = [s.name for s in self.stages]
        if len(set(names)) != len(names):
            raise ValueError(f"stage names must be unique, got {names}")
        if self.stages[0].lr is None and self.stages[0].init_from is None:
            raise ValueError(
                f"stage {names[0]!r}: the first stage needs an lr (or init_from, whose "
                "checkpoint's LR it then continues from)"
            )
        for s in self.stages:
            if s.seq_len > self.model.max_seq_len:
                raise ValueError(
                    f"stage {s.name!r}: seq_len {s.seq_len} > model.max_seq_len "
                    f"{self.model.max_seq_len}"
                )
        if self.context_parallel != 1:
            raise ValueError(
                f"context_parallel={self.context_parallel}: context parallelism is not "
                "implemented yet (the mesh has its `cp` dimension; see docs/long_context.md); "
                "use 1"
            )
        return self

    @property
    def resolved(self) -> bool:
        return all(s.steps is not None for s in self.stages)


def resolve_stage_lengths(
    plan: TrainPlan, world_size: int, planned_tokens: dict[str, int]
) -> TrainPlan:
    """A copy of `plan` whose every stage has `steps`, from its token budget.

    `planned_tokens` maps a mixture stage directory name (`data`) to the tokens its
    manifest planned. Raises PlanError when a budget is under one global batch or the
    schedule's warmup and decay no longer fit the resulting steps.
    """
    stages = []
    for s in plan.stages:
        if s.steps is not None:
            stages.append(s)
            continue
        budget = s.token_budget(planned_tokens) or 0
        per_step = s.stream_tokens_per_step(world_size)
        steps = budget // per_step
        if steps < 1:
            raise PlanError(
                f"stage {s.name!r}: a budget of {budget} tokens is less than one global batch "
                f"({per_step} tokens with {world_size} rank(s)); lower batch_size or seq_len"
            )
        try:
            s.check_schedule_fits(steps)
        except ValueError as e:
            raise PlanError(f"{e} ({budget} tokens / {per_step} per step)") from e
        stages.append(s.model_copy(update={"steps": steps}))
    return plan.model_copy(update={"stages": stages})


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
