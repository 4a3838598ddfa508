"""Model FLOPs utilisation (MFU): training FLOPs per token, device peaks, and their ratio.

The formula is PaLM's (Chowdhery et al. 2022, appendix B), also used by torchtitan and
nanoGPT, so our MFU compares with published numbers:

    flops_per_token = 6 * N + 12 * n_layers * (n_heads * head_dim) * T

- `N` counts the weights of every matrix multiply: q/k/v/o, the SwiGLU gate/up/down and the
  output head. The input embedding is a lookup, not a matmul, so it is left out (the head
  is untied, so it is counted once, as a matmul); norm gains are negligible and left out.
  6 = 2 FLOPs per multiply-add in the forward, twice that in the backward (gradients with
  respect to inputs and to weights).
- The attention term: per layer and token the forward does q.k over T keys and
  probs.v over T values, 2 * 2 * T * n_heads * head_dim FLOPs; times 3 for training. GQA
  shares k/v heads but every query head still does its own products, so it is n_heads.
- `T` is the window length (`seq_len`) and the term is NOT halved for causal masking:
  that is the convention of PaLM and torchtitan. A causal kernel skips about half of
  that work and document masking skips more (sum of document lengths squared over T), so
  the attention FLOPs actually executed are smaller; MFU counts the work of the dense
  window, which keeps numbers comparable across masking layouts. `causal=True` halves the
  term for a stricter figure (FlashAttention's benchmarks count that way). At long windows
  the choice matters: for the `1b` preset at T = 32k the attention term is twice 6N.

`peak_flops` is the dense (no 2:4 sparsity) tensor-core peak from NVIDIA's datasheets;
fp32 gets the TF32 peak only when PyTorch is allowed to use TF32 for matmuls.
"""

from __future__ import annotations

import os
import re
from typing import NamedTuple

import torch

from training.model.config import ModelSpec

PEAK_ENV = "SHARPEN_PEAK_FLOPS"


class Peak(NamedTuple):
    """Dense FLOP/s per matmul dtype; None where the chip lacks that tensor-core type."""

    bf16: float | None
    fp16: float | None  # with fp32 accumulate (what autocast and training use)
    tf32: float | None
    fp32: float  # plain CUDA cores


# Datasheets print tensor-core figures with 2:4 sparsity; these are half of them.
_PEAKS: dict[str, Peak] = {
    "h100-sxm": Peak(989.4e12, 989.4e12, 494.7e12, 66.9e12),  # also GH200
    "h100-pcie": Peak(756.5e12, 756.5e12, 378.0e12, 51.2e12),
    "h100-nvl": Peak(835.5e12, 835.5e12, 417.5e12, 60.0e12),
    "h200": Peak(989.4e12, 989.4e12, 494.7e12, 66.9e12),  # H200 SXM: H100 SXM's compute
    "h200-nvl": Peak(835.5e12, 835.5e12, 417.5e12, 60.0e12),
    "a100": Peak(312e12, 312e12, 156e12, 19.5e12),  # SXM and PCIe, 40 and 80 GB
    "a10": Peak(125e12, 125e12, 62.5e12, 31.2e12),  # A10 datasheet; also used for A10G
    "l4": Peak(121e12, 121e12, 60e12, 30.3e12),
    "l40s": Peak(362e12, 362e12, 183e12, 91.6e12),
    "l40": Peak(181e12, 181e12, 90.5e12, 90.5e12),
    "rtx-6000-ada": Peak(364e12, 364e12, 91.1e12, 91.1e12),
    "rtx-4090": Peak(165.2e12, 165.2e12, 82.6e12, 82.6e12),
    "rtx-3090": Peak(71e12, 71e12, 35.6e12, 35.6e12),
    "v100": Peak(None, 125e12, None, 15.7e12),
    "t4": Peak(None, 65e12, None, 8.1e12),
}

# Device name (lower case, as `torch.cuda.get_device_name` reports it) -> table key.
# More specific patterns first: "gh200" and "h200 nvl" before "h200", "a100" before "a10",
# "l40s" before "l4".
_NAME_PATTERNS: tuple[tuple[str, str], ...] = (
    (r"gh200", "h100-sxm"),  # Grace Hopper: an H100 SXM's compute
    (r"h200.*nvl", "h200-nvl"),
    (r"h200", "h200"),
    (r"h100.*nvl", "h100-nvl"),
    (r"h100.*(pcie|hbm2e)", "h100-pcie"),
    (r"h100", "h100-sxm"),
    (r"a100", "a100"),
    (r"\ba10g?\b", "a10"),
    (r"\bl40s\b", "l40s"),
    (r"\bl40\b", "l40"),
    (r"\bl4\b", "l4"),
    (r"rtx 6000 ada", "rtx-6000-ada"),
    (r"rtx 4090", "rtx-4090"),
    (r"rtx 3090", "rtx-3090"),
    (r"v100", "v100"),
    (r"\bt4\b", "t4"),
)


def matmul_params(cfg: ModelSpec, vocab_size: int) -> int:
    """Weights that take part in a matmul per token: every block's projections and the head."""
    head_dim = cfg.dim // cfg.n_heads
    q_out, kv_out = cfg.n_heads * head_dim, cfg.n_kv_heads * head_dim
    attn = cfg.dim * q_out + 2 * cfg.dim * kv_out + q_out * cfg.dim
    ffn = 3 * cfg.dim * cfg.ffn_hidden
    return cfg.n_layers * (attn + ffn) + cfg.dim * vocab_size


def flops_per_token(
    cfg: ModelSpec, seq_len: int, *, vocab_size: int | None = None, causal: bool = False
) -> float:
    """Training (forward + backward) FLOPs per token at window length `seq_len` (see module doc).

    `cfg` is a ModelConfig, or a ModelSpec with `vocab_size` given.
    """
    vocab = vocab_size if vocab_size is not None else getattr(cfg, "vocab_size", None)
    if vocab is None:
        raise ValueError("flops_per_token needs a vocabulary size (a ModelConfig or vocab_size=)")
    attention = 12 * cfg.n_layers * cfg.n_heads * (cfg.dim // cfg.n_heads) * seq_len
    return 6.0 * matmul_params(cfg, vocab) + attention * (0.5 if causal else 1.0)


def chip_key(device_name: str) -> str | None:
    """Our table's key for a CUDA device name, or None if it is not in the table."""
    name = device_name.lower()
    for pattern, key in _NAME_PATTERNS:
        if re.search(pattern, name):
            return key
    return None


def peak_flops_for_name(device_name: str, dtype: torch.dtype, *, tf32: bool) -> float | None:
    """Dense peak FLOP/s of a named GPU for matmuls in `dtype`; None if unknown."""
    key = chip_key(device_name)
    if key is None:
        return None
    peak = _PEAKS[key]
    if dtype == torch.float16:
        return peak.fp16
    if dtype == torch.bfloat16:
        return peak.bf16
    if dtype == torch.float32:
        return peak.tf32 if tf32 and peak.tf32 is not None else peak.fp32
    return None


def _env_peak() -> float | None:
    raw = os.environ.get(PEAK_ENV)
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError as exc:
        raise ValueError(f"{PEAK_ENV}={raw!r} is not a number of FLOP/s (e.g. 989e12)") from exc
    if value <= 0:
        raise ValueError(f"{PEAK_ENV}={raw!r} must be positive")
    return value


def peak_flops(device: torch.device, dtype: torch.dtype) -> float | None:
    """Dense peak FLOP/s of `device` in `dtype`: `$SHARPEN_PEAK_FLOPS` if set, else the table.

    None on CPU and on GPUs not in the table; MFU is then reported as null rather than
    guessed.
    """
    override = _env_peak()
    if override is not None:
        return override
    if device.type != "cuda":
        return None
    tf32 = torch.backends.cuda.matmul.allow_tf32
    return peak_flops_for_name(torch.cuda.get_device_name(device), dtype, tf32=tf32)


def mfu(tokens_per_s: float, flops_per_token: float, peak: float | None) -> float | None:
    """Achieved FLOP/s over the peak, in [0, 1] when honest; None without a peak."""
    if peak is None or peak <= 0:
        return None
    return tokens_per_s * flops_per_token / peak
