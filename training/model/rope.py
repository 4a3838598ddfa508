"""Rotary position embeddings driven by explicit position ids, with YaRN as an option.

Positions come from the loader (they restart at every document boundary inside a packed
window), so the angles are computed per call instead of from a fixed table; changing
`theta` between stages (RoPE-base length extension, "ABF") or switching YaRN on needs no
buffer surgery.

YaRN (Peng et al. 2023, arXiv:2309.00071) is computed exactly as Hugging Face transformers'
`_compute_yarn_parameters` does (`rope_type: yarn`), so an exported model keeps its logits:
per frequency, NTK-by-parts interpolation between the original and the `factor`-stretched
wavelength, then cos/sin scaled by the attention factor (the paper's temperature, which
scales q.k by its square). Only the per-frequency values matter: our pairs are interleaved,
HF's are halves, and the exporter permutes wq/wk between the two.
"""

from __future__ import annotations

import math

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator


class YaRN(BaseModel):
    """YaRN context extension of a model trained at `original_max_seq_len` tokens."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    factor: float = Field(
        gt=1,
        description="Context extension ratio: wavelengths longer than the original context "
        "are stretched by this much (usually target length / original_max_seq_len).",
    )
    original_max_seq_len: int = Field(
        gt=0, description="Context the model was trained at before extension."
    )
    beta_fast: float = Field(
        default=32.0,
        gt=0,
        description="Frequencies turning more than this many times over the original "
        "context are kept as they are (extrapolated).",
    )
    beta_slow: float = Field(
        default=1.0,
        gt=0,
        description="Frequencies turning fewer than this many times over the original "
        "context are fully interpolated (divided by factor); a linear ramp in between.",
    )
    attention_factor: float | None = Field(
        default=None,
        gt=0,
        description="cos/sin scale (q.k scales by its square). None: 0.1 * ln(factor) + 1, "
        "the paper's value.",
    )

    @model_validator(mode="after")
    def _check_betas(self) -> YaRN:
        if self.beta_fast < self.beta_slow:
            raise ValueError(f"yarn beta_fast={self.beta_fast} < beta_slow={self.beta_slow}")
        return self

    @property
    def mscale(self) -> float:
        """The cos/sin scale in force (transformers' `attention_scaling`)."""
        if self.attention_factor is not None:
            return self.attention_factor
        return 0.1 * math.log(self.factor) + 1.0

    def correction_range(self, head_dim: int, theta: float) -> tuple[float, float]:
        """Frequency indices (in pair units) where the ramp starts and ends, truncated to
        whole dims and clipped to [0, head_dim - 1] as transformers does."""

        def dim_for(rotations: float) -> float:  # the dim turning `rotations` times
            ratio = self.original_max_seq_len / (rotations * 2 * math.pi)
            return head_dim * math.log(ratio) / (2 * math.log(theta))

        low, high = math.floor(dim_for(self.beta_fast)), math.ceil(dim_for(self.beta_slow))
        return max(low, 0), min(high, head_dim - 1)

    def inv_freq(self, head_dim: int, theta: float, device: torch.device) -> torch.Tensor:
        """Per-pair inverse frequencies (head_dim // 2,), fp32; op for op transformers'."""
        exponents = torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim
        pos_freqs = theta**exponents
        extrapolation, interpolation = 1.0 / pos_freqs, 1.0 / (self.factor * pos_freqs)
        low, high = self.correction_range(head_dim, theta)
        if low == high:
            high += 0.001  # as transformers: avoid a zero-width ramp
        ramp = (torch.arange(head_dim // 2, device=device, dtype=torch.float32) - low) / (
            high - low
        )
        keep = 1 - ramp.clamp(0, 1)  # weight of the original (extrapolated) frequency
        return interpolation * (1 - keep) + extrapolation * keep


def rope_angles(
    position_ids: torch.Tensor, head_dim: int, theta: float, yarn: YaRN | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin of shape (*position_ids.shape, head_dim // 2), in fp32 (YaRN: times mscale)."""
    if yarn is None:
        inv_freq = 1.0 / (
            theta
            ** (
                torch.arange(0, head_dim, 2, device=position_ids.device, dtype=torch.float32)
                / head_dim
            )
        )
    else:
        inv_freq = yarn.inv_freq(head_dim, theta, position_ids.device)
    freqs = position_ids.float().unsqueeze(-1) * inv_freq
    if yarn is None:
        return freqs.cos(), freqs.sin()
    return freqs.cos() * yarn.mscale, freqs.sin() * yarn.mscale


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved pairs of x (batch, seq, heads, head_dim) by the given angles.

    cos/sin are (batch, seq, head_dim // 2); they broadcast over heads. Eager, each pair
    (x[2j], x[2j+1]) is the complex number x[2j] + i x[2j+1] times cos + i sin: the same
    products and sums as the 2x2 rotation, in one kernel each way instead of a chain of
    slices, products and a stack (about 8x faster forward+backward on CPU for a
    (4, 512, 4, 64) input). Under torch.compile the 2x2 form is traced instead: inductor
    fuses it into one kernel but has no code generation for complex tensors. Both compute
    in fp32 (there is no complex bfloat16); cos/sin may arrive in bf16 (FSDP2 casts block
    inputs) and are widened.
    """
    if torch.compiler.is_compiling():
        return rotate_pairs(x, cos, sin)
    pairs = torch.view_as_complex(x.float().unflatten(-1, (-1, 2)).contiguous())
    rotation = torch.complex(cos.float(), sin.float()).unsqueeze(2)
    return torch.view_as_real(pairs * rotation).flatten(-2).type_as(x)


def rotate_pairs(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """`apply_rope` written out as the 2x2 rotation of each pair (the compiled path)."""
    xf = x.float().unflatten(-1, (-1, 2))
    x0, x1 = xf[..., 0], xf[..., 1]
    c, s = cos.float().unsqueeze(2), sin.float().unsqueeze(2)
    return torch.stack((x0 * c - x1 * s, x0 * s + x1 * c), dim=-1).flatten(-2).type_as(x)
