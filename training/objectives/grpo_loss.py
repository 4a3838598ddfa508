"""GRPO's pieces, as pure functions: group-normalised advantages and the clipped token loss.

GRPO (Shao et al. 2024, DeepSeekMath, sec. 4.1) samples G completions per prompt and uses
each completion's reward relative to its group as the advantage of all its tokens, so no
value model is needed. The policy loss is PPO's clipped surrogate (Schulman et al. 2017)
per token, plus an optional KL penalty to a frozen reference with Schulman's k3 estimator
(http://joschu.net/blog/kl-approx.html), unbiased and never negative.

Normalisation is per token over the whole global batch (DAPO, Yu et al. 2025, sec. 3.3):
`grpo_token_loss` returns the loss *summed* over valid completion tokens and their count,
which is our objectives' contract (`training/objectives/base.py`); the step divides every
micro-batch's sum by the valid count of all ranks and micro-batches, so each token weighs
the same and a long completion is not diluted as in GRPO's per-sequence mean.
"""

from __future__ import annotations

from typing import Literal

import torch


def group_advantages(
    rewards: torch.Tensor,
    group_size: int,
    *,
    eps: float = 1e-6,
    scale: Literal["std", "none"] = "std",
) -> torch.Tensor:
    """Per completion: (reward - its group's mean), divided by (group std + eps) for "std".

    `rewards` is (n_prompts * group_size,), the G completions of a prompt adjacent. "std"
    is GRPO's normalisation with the unbiased std (as TRL's GRPOTrainer); "none" is Dr. GRPO
    (Liu et al. 2025), which drops the division because it up-weights groups whose rewards
    barely differ. A group with identical rewards gets advantages 0 either way (no NaN).
    """
    if scale not in ("std", "none"):
        raise ValueError(f"scale must be 'std' or 'none', got {scale!r}")
    if group_size < 1 or rewards.ndim != 1 or rewards.numel() % group_size:
        raise ValueError(
            f"rewards of shape {tuple(rewards.shape)} do not split into groups of {group_size}"
        )
    if scale == "std" and group_size < 2:
        raise ValueError("a group std needs group_size >= 2")
    r = rewards.to(torch.promote_types(rewards.dtype, torch.float32)).view(-1, group_size)
    centred = r - r.mean(dim=1, keepdim=True)
    if scale == "std":
        centred = centred / (r.std(dim=1, keepdim=True) + eps)
    return centred.view(-1)


def grpo_token_loss(
    logps: torch.Tensor,
    old_logps: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    clip_eps: float = 0.2,
    clip_eps_high: float | None = None,
    ref_logps: torch.Tensor | None = None,
    kl_beta: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """(loss summed over valid tokens, number of valid tokens, stats).

    `logps`, `old_logps`, `ref_logps`: (B, T) log-probs of the sampled tokens under the
    policy being trained, the policy that sampled them, and the frozen reference; only
    `logps` carries gradient. `advantages`: (B,), one per completion. `mask`: (B, T), true at
    completion tokens; values elsewhere are ignored, even infinite ones.

    Per valid token, with r = exp(logps - old_logps) and A the completion's advantage:
        loss = -min(r A, clip(r, 1 - clip_eps, 1 + clip_eps_high) A)
               + kl_beta * (exp(ref - logp) - (ref - logp) - 1)
    `clip_eps_high` > `clip_eps` is DAPO's clip-higher (default: symmetric).

    Stats (detached, means over this call's valid tokens): `clip_fraction`, the share of
    tokens whose gradient the clip removes (r > 1 + eps_high with A > 0, or r < 1 - eps with
    A < 0); `mean_ratio`; `mean_kl` (k3; 0 without a reference).
    """
    eps_high = clip_eps if clip_eps_high is None else clip_eps_high
    if not (0 < clip_eps < 1 and eps_high > 0):
        raise ValueError(f"need 0 < clip_eps < 1 and clip_eps_high > 0: {clip_eps}, {eps_high}")
    if kl_beta and ref_logps is None:
        raise ValueError("kl_beta > 0 needs ref_logps")
    if advantages.shape != logps.shape[:1] or mask.shape != logps.shape:
        raise ValueError(
            f"shapes: logps {tuple(logps.shape)}, advantages {tuple(advantages.shape)} "
            f"(want ({logps.shape[0]},)), mask {tuple(mask.shape)}"
        )
    valid = mask.bool()
    zero = torch.zeros((), dtype=logps.dtype, device=logps.device)
    # Zero the ignored positions before any exp, so a -inf there makes no NaN in the backward.
    logps = torch.where(valid, logps, zero)
    log_ratio = logps - torch.where(valid, old_logps.detach().to(logps.dtype), zero)
    ratio = torch.exp(log_ratio)
    adv = advantages.detach().to(logps.dtype)[:, None]
    clipped = torch.clamp(ratio, 1.0 - clip_eps, 1.0 + eps_high)
    per_token = -torch.minimum(ratio * adv, clipped * adv)

    kl = torch.zeros_like(per_token)
    if ref_logps is not None:
        d = torch.where(valid, ref_logps.detach().to(logps.dtype), zero) - logps
        kl = torch.exp(d) - d - 1.0
        if kl_beta:
            per_token = per_token + kl_beta * kl

    n_valid = valid.sum()
    loss_sum = torch.where(valid, per_token, zero).sum()
    with torch.no_grad():
        count = n_valid.clamp(min=1).to(logps.dtype)
        high = (ratio > 1.0 + eps_high) & (adv > 0)
        low = (ratio < 1.0 - clip_eps) & (adv < 0)
        clip_active = high | low
        stats = {
            "clip_fraction": (clip_active & valid).sum().to(logps.dtype) / count,
            "mean_ratio": torch.where(valid, ratio, zero).sum() / count,
            "mean_kl": torch.where(valid, kl, zero).sum() / count,
        }
    return loss_sum, n_valid, stats
