"""One metrics row per optimizer step: what the loop measured, in the units users read.

The row holds the loss in total and per domain, LR, gradient norm, tokens/s, MFU, peak
memory and the skip counter. MFU is `tokens/s * flops_per_token / peak` with the formula
of `training/model/flops.py` at the stage's window length and the detected device's
dense peak for the compute dtype (null on CPUs and unknown GPUs). Every rank measures;
rank 0 writes (`training/observability/run_metrics.py`).
"""

from __future__ import annotations

import time
from typing import Any

import torch

from training.model.config import ModelConfig
from training.model.flops import flops_per_token, peak_flops
from training.observability import memory_stats, reset_peak_memory
from training.plan import StageSpec
from training.train_step import StepResult


class StepMetrics:
    """Times a stage's steps and turns each StepResult into a row."""

    def __init__(
        self,
        cfg: ModelConfig,
        stage: StageSpec,
        *,
        world_size: int,
        device: torch.device,
        dtype: torch.dtype,
        domains: list[str],
    ) -> None:
        self.stage, self.device, self.domains = stage, device, domains
        self.flops_per_token = flops_per_token(cfg, stage.seq_len)
        self.peak = peak_flops(device, dtype)
        self.world_peak = None if self.peak is None else self.peak * world_size  # all ranks
        self._t0 = time.perf_counter()

    def start(self) -> None:
        """Call before a step's data loading; the step's time starts here."""
        reset_peak_memory(self.device)
        self._t0 = time.perf_counter()

    def row(
        self,
        result: StepResult,
        *,
        step: int,
        global_step: int,
        lr: float,
        skipped_total: int,
        stage_tokens: int,
        tokens: int,
        extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """`stage_tokens`: stream tokens the stage has read so far (its budget's unit);
        `tokens`: input positions the step trained on over all ranks; `extra`: the batch
        source's own numbers (rollouts: reward, rollout time), whose `rollout_s` is not
        counted in the training tokens/s."""
        extra = extra or {}
        seconds = time.perf_counter() - self._t0
        tokens_per_s = tokens / max(seconds - extra.get("rollout_s", 0.0), 1e-9)
        by_domain = {
            d: loss
            for d, loss in zip(self.domains, result.loss_by_domain, strict=True)
            if loss is not None
        }
        achieved = tokens_per_s * self.flops_per_token
        return {
            "step": global_step,
            "stage": self.stage.name,
            "stage_step": step,
            "loss": result.loss,
            **({"loss_by_domain": by_domain} if by_domain else {}),
            "lr": lr,
            "grad_norm": result.grad_norm,
            "tokens": tokens,
            "stage_tokens": stage_tokens,
            "valid_tokens": result.valid_tokens,
            "tokens_per_s": tokens_per_s,
            "step_s": seconds,
            "mfu": None if self.world_peak is None else achieved / self.world_peak,
            **memory_stats(self.device),
            "skipped": result.skipped,
            "skipped_steps": skipped_total,
            **extra,
        }
