"""Grouped-query attention with document masking.

Two backends compute the same thing, causal attention that never crosses a document
boundary inside a packed window:
- `sdpa`: `scaled_dot_product_attention` with a block-diagonal causal boolean mask (CPU, any GPU);
- `flash_varlen`: flash-attn's varlen kernel over `cu_seqlens` (CUDA only, when `flash_attn`
  imports); no (T x T) mask is ever materialised, which is what makes long windows affordable.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from training.model.rope import apply_rope

Backend = Literal["auto", "sdpa", "flash_varlen"]


def resolve_backend(requested: Backend, device: torch.device) -> Literal["sdpa", "flash_varlen"]:
    """`auto` picks flash-attn varlen only where it can run: CUDA present and the package installed."""
    has_flash = device.type == "cuda" and importlib.util.find_spec("flash_attn") is not None
    if requested == "flash_varlen" and not has_flash:
        raise ValueError("attention backend 'flash_varlen' needs CUDA and the flash_attn package")
    if requested == "auto":
        return "flash_varlen" if has_flash else "sdpa"
    return requested


@dataclass(frozen=True)
class AttentionLayout:
    """Per-batch masking data, built once per forward and shared by every layer."""

    backend: Literal["sdpa", "flash_varlen"]
    sdpa_mask: torch.Tensor | None = None  # (B, 1, T, T) bool, True = may attend
    cu_seqlens: torch.Tensor | None = None  # (n_docs + 1,) int32 over the flattened batch
    max_seqlen: int = 0


def build_layout(
    segment_ids: torch.Tensor | None, backend: Literal["sdpa", "flash_varlen"]
) -> AttentionLayout:
    """From per-token document ids (B, T) to the backend's masking structure.

    `segment_ids=None` means one document per row (plain causal attention).
    """
    if segment_ids is None:
        if backend == "flash_varlen":
            raise ValueError("flash_varlen needs segment_ids")
        return AttentionLayout(backend=backend)
    bsz, seqlen = segment_ids.shape
    if backend == "sdpa":
        same_doc = segment_ids.unsqueeze(2) == segment_ids.unsqueeze(1)
        causal = torch.ones(seqlen, seqlen, dtype=torch.bool, device=segment_ids.device).tril()
        return AttentionLayout(backend=backend, sdpa_mask=(same_doc & causal).unsqueeze(1))
    # A document starts at every row start and wherever the segment id changes.
    starts = torch.ones_like(segment_ids, dtype=torch.bool)
    starts[:, 1:] = segment_ids[:, 1:] != segment_ids[:, :-1]
    start_idx = starts.flatten().nonzero().flatten()
    total = torch.tensor([bsz * seqlen], device=segment_ids.device)
    bounds = torch.cat([start_idx, total]).to(torch.int32)
    max_seqlen = int((bounds[1:] - bounds[:-1]).max().item())
    return AttentionLayout(backend=backend, cu_seqlens=bounds, max_seqlen=max_seqlen)


def attend(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layout: AttentionLayout
) -> torch.Tensor:
    """q (B, T, H, D), k/v (B, T, Hkv, D) -> (B, T, H, D)."""
    if layout.backend == "flash_varlen":
        from flash_attn import flash_attn_varlen_func  # optional dependency, CUDA only

        bsz, seqlen = q.shape[:2]
        out = flash_attn_varlen_func(
            q.flatten(0, 1),
            k.flatten(0, 1),
            v.flatten(0, 1),
            layout.cu_seqlens,
            layout.cu_seqlens,
            layout.max_seqlen,
            layout.max_seqlen,
            causal=True,
        )
        return out.unflatten(0, (bsz, seqlen))
    groups = q.shape[2] // k.shape[2]
    if groups > 1:  # expand kv heads to query heads (GQA)
        k = k.repeat_interleave(groups, dim=2)
        v = v.repeat_interleave(groups, dim=2)
    q, k, v = (t.transpose(1, 2) for t in (q, k, v))
    if layout.sdpa_mask is None:
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    else:
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=layout.sdpa_mask)
    return out.transpose(1, 2)


class Attention(nn.Module):
    """Llama attention: separate q/k/v projections, fewer kv heads, RoPE on q and k, no biases."""

    def __init__(self, dim: int, n_heads: int, n_kv_heads: int) -> None:
        super().__init__()
        self.n_heads, self.n_kv_heads = n_heads, n_kv_heads
        self.head_dim = dim // n_heads
        self.wq = nn.Linear(dim, n_heads * self.head_dim, bias=False)
        self.wk = nn.Linear(dim, n_kv_heads * self.head_dim, bias=False)
        self.wv = nn.Linear(dim, n_kv_heads * self.head_dim, bias=False)
        self.wo = nn.Linear(n_heads * self.head_dim, dim, bias=False)

    def forward(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, layout: AttentionLayout
    ) -> torch.Tensor:
        bsz, seqlen, _ = x.shape
        q = self.wq(x).view(bsz, seqlen, self.n_heads, self.head_dim)
        k = self.wk(x).view(bsz, seqlen, self.n_kv_heads, self.head_dim)
        v = self.wv(x).view(bsz, seqlen, self.n_kv_heads, self.head_dim)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        return self.wo(attend(q, k, v, layout).reshape(bsz, seqlen, -1))
