"""Rotary position embeddings driven by explicit position ids.

Positions come from the loader (they restart at every document boundary inside a packed
window), so the angles are computed per call instead of from a fixed table; changing
`theta` between stages (RoPE-base length extension) needs no buffer surgery.
"""

from __future__ import annotations

import torch


def rope_angles(
    position_ids: torch.Tensor, head_dim: int, theta: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin of shape (*position_ids.shape, head_dim // 2), in fp32."""
    inv_freq = 1.0 / (
        theta
        ** (
            torch.arange(0, head_dim, 2, device=position_ids.device, dtype=torch.float32) / head_dim
        )
    )
    freqs = position_ids.float().unsqueeze(-1) * inv_freq
    return freqs.cos(), freqs.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved pairs of x (batch, seq, heads, head_dim) by the given angles.

    cos/sin are (batch, seq, head_dim // 2); they broadcast over heads.
    """
    xf = x.float().unflatten(-1, (-1, 2))
    x0, x1 = xf[..., 0], xf[..., 1]
    c, s = cos.unsqueeze(2), sin.unsqueeze(2)
    out = torch.stack((x0 * c - x1 * s, x0 * s + x1 * c), dim=-1).flatten(-2)
    return out.type_as(x)
