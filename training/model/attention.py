"""Grouped-query attention with document masking in memory linear in the window length.

Packed rows hold several documents; attention is causal and never crosses a document
boundary. The backends (kernels in `attention_backends.py`) compute the same thing:
- `doc_blocks` (CPU default, any device): causal SDPA per group of equal-length documents;
  no mask is built, memory grows linearly with T;
- `flash_varlen` (CUDA default for bf16/fp16): flash-attn's varlen kernel over `cu_seqlens`;
- `flex`: compiled `flex_attention` with a document-causal `BlockMask` (opt-in: on CPU
  torch 2.13 compiles its forward only, with no backward, and each new shape compiles);
- `sdpa`: SDPA with a dense (B, 1, T, T) mask, quadratic; the reference in tests only.

Without `segment_ids` every row is one document and every backend runs the same plain
causal SDPA call (the fused kernel is linear in memory too), so that path stays exact.

Generation (`training/generation/`) takes a separate path through the same weights:
`KVCache` holds every layer's keys and values and `attend_cached` appends to it and runs
SDPA over the cached prefix; training never builds one.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from training.model import attention_backends as kernels
from training.model.rope import apply_rope

Backend = Literal["auto", "doc_blocks", "flex", "flash_varlen", "sdpa"]
Resolved = Literal["doc_blocks", "flex", "flash_varlen", "sdpa"]


def resolve_backend(requested: Backend, device: torch.device, dtype: torch.dtype) -> Resolved:
    """`auto` takes flash-attn varlen only where it runs (CUDA, package, bf16/fp16), else doc_blocks.

    `dtype` is the dtype attention computes in; flash-attn rejects fp32, so asking for
    flash_varlen in fp32 is an error here rather than deep inside the kernel.
    """
    has_flash = device.type == "cuda" and importlib.util.find_spec("flash_attn") is not None
    if requested == "flash_varlen":
        if not has_flash:
            raise ValueError(
                "attention backend 'flash_varlen' needs CUDA and the flash_attn package"
            )
        if dtype not in kernels.HALF_DTYPES:
            raise ValueError(
                f"attention backend 'flash_varlen' runs in bfloat16/float16 only, not {dtype}; "
                "use attn_backend 'auto' or 'doc_blocks', or train in bfloat16"
            )
    if requested == "auto":
        return "flash_varlen" if has_flash and dtype in kernels.HALF_DTYPES else "doc_blocks"
    return requested


@dataclass(frozen=True)
class AttentionLayout:
    """Per-batch masking data, built once per forward and shared by every layer."""

    backend: Resolved
    sdpa_mask: torch.Tensor | None = None  # sdpa: (B, 1, T, T) bool, True = may attend
    cu_seqlens: torch.Tensor | None = None  # flash_varlen: (n_docs + 1,) int32, flattened batch
    max_seqlen: int = 0
    doc_perm: torch.Tensor | None = None  # doc_blocks: gather order, equal-length docs adjacent
    doc_inv: torch.Tensor | None = None  # doc_blocks: inverse of doc_perm
    doc_groups: tuple[tuple[int, int], ...] = ()  # doc_blocks: (length, count) in perm order
    block_mask: Any = None  # flex: torch.nn.attention.flex_attention.BlockMask


def build_layout(segment_ids: torch.Tensor | None, backend: Resolved) -> AttentionLayout:
    """From per-token document ids (B, T) to the backend's masking structure.

    `segment_ids=None` means one document per row (plain causal attention).
    """
    if segment_ids is None:
        return AttentionLayout(backend=backend)
    if backend == "flash_varlen":
        return _varlen_layout(segment_ids)
    if backend == "flex":
        return AttentionLayout(backend=backend, block_mask=kernels.flex_block_mask(segment_ids))
    if backend == "sdpa":
        return AttentionLayout(backend=backend, sdpa_mask=kernels.dense_mask(segment_ids))
    perm, inv, groups = kernels.doc_groups(segment_ids)
    if len(groups) == 1 and groups[0][0] == segment_ids.shape[1]:
        return AttentionLayout(backend=backend)  # one document per row: plain causal
    return AttentionLayout(backend=backend, doc_perm=perm, doc_inv=inv, doc_groups=groups)


def _varlen_layout(segment_ids: torch.Tensor) -> AttentionLayout:
    """cu_seqlens: a boundary at every document start and every row start."""
    doc = kernels.document_index(segment_ids).flatten()
    lengths = torch.bincount(doc)
    bounds = torch.cat([lengths.new_zeros(1), lengths.cumsum(0)]).to(torch.int32)
    return AttentionLayout(
        backend="flash_varlen", cu_seqlens=bounds, max_seqlen=int(lengths.max().item())
    )


@torch.compiler.disable  # per-batch document layouts would recompile (parallel/compile.py)
def attend(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layout: AttentionLayout
) -> torch.Tensor:
    """q (B, T, H, D), k/v (B, T, Hkv, D) -> (B, T, H, D)."""
    if layout.cu_seqlens is not None:
        return kernels.flash_varlen_attention(q, k, v, layout.cu_seqlens, layout.max_seqlen)
    if layout.block_mask is not None:
        return kernels.flex_document_attention(q, k, v, layout.block_mask)
    if layout.sdpa_mask is not None:
        return kernels.dense_mask_attention(q, k, v, layout.sdpa_mask)
    if layout.doc_perm is not None:
        return kernels.doc_blocks_attention(
            q, k, v, layout.doc_perm, layout.doc_inv, layout.doc_groups
        )
    return kernels.causal_attention(q, k, v)


class KVCache:
    """Keys and values of every layer for a batch being decoded, preallocated to `max_len`.

    Rows are left-padded: row b's real tokens start at column `pad[b]`, so one write
    offset (`length`) serves every row and a decode step appends one column to all. Pad
    keys are hidden from every query, except a pad query's own column: a pad row then
    softmaxes over one key instead of none, so its output stays finite (NaN in a pad
    column's values would reach real rows through 0 * NaN in the next layer).
    A plain class, not a dataclass: FSDP2 rebuilds dataclass inputs when it casts them,
    and the layers must write into this very object.
    """

    def __init__(self, n_layers: int, max_len: int, pad: torch.Tensor | None = None) -> None:
        self.layers = [LayerCache(self) for _ in range(n_layers)]
        self.max_len = max_len
        self.pad = pad  # (B,) long left-pad per row; None: no row is padded
        self.length = 0  # columns written by finished calls
        self.start = 0  # column of the current call's first token
        self.mask: torch.Tensor | None = None  # current call's (B, 1, T, start + T), or None

    def begin(self, n_new: int, device: torch.device) -> None:
        """Before a forward of `n_new` tokens per row: where they go and what they may see."""
        if self.length + n_new > self.max_len:
            raise ValueError(
                f"KV cache full: {self.length} + {n_new} tokens > max_len {self.max_len}"
            )
        self.start = self.length
        self.mask = self._mask(n_new, device)

    def commit(self, n_new: int) -> None:
        """After the forward: the new columns are part of the prefix."""
        self.length = self.start + n_new

    def _mask(self, n_new: int, device: torch.device) -> torch.Tensor | None:
        """None where SDPA needs none: unpadded rows, from column 0 (causal) or one token."""
        if self.pad is None and (self.start == 0 or n_new == 1):
            return None
        end = self.start + n_new
        cols = torch.arange(end, device=device)
        rows = torch.arange(self.start, end, device=device).unsqueeze(1)
        allowed = (cols <= rows).unsqueeze(0)  # (1, T, S) causal
        if self.pad is not None:
            real = cols >= self.pad.to(device).unsqueeze(1)  # (B, S)
            allowed = allowed & (real.unsqueeze(1) | (cols == rows).unsqueeze(0))
        return allowed.unsqueeze(1)


class LayerCache:
    """One layer's keys and values (B, max_len, Hkv, D), allocated at the first write
    in the dtype the layer computes in (bf16 under FSDP2 mixed precision)."""

    def __init__(self, owner: KVCache) -> None:
        self.owner = owner
        self.k: torch.Tensor | None = None
        self.v: torch.Tensor | None = None

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write this call's k/v (B, T, Hkv, D) at the owner's offset; the filled prefix."""
        if self.k is None or self.v is None:
            shape = (k.shape[0], self.owner.max_len, *k.shape[2:])
            self.k = k.new_empty(shape)
            self.v = v.new_empty(shape)
        start, end = self.owner.start, self.owner.start + k.shape[1]
        self.k[:, start:end] = k
        self.v[:, start:end] = v
        return self.k[:, :end], self.v[:, :end]


@torch.compiler.disable  # the cached prefix grows every step: traced, each step would recompile
def attend_cached(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cache: LayerCache
) -> torch.Tensor:
    """Append k/v (B, T, Hkv, D) to the cache; q (B, T, H, D) attends to the whole prefix."""
    keys, values = cache.append(k, v)
    return kernels.cached_attention(q, keys, values, cache.owner.mask)


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
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        layout: AttentionLayout | None,
        cache: LayerCache | None = None,
    ) -> torch.Tensor:
        """`cache` (generation): attend to the cached prefix instead of through `layout`."""
        bsz, seqlen, _ = x.shape
        q = self.wq(x).view(bsz, seqlen, self.n_heads, self.head_dim)
        k = self.wk(x).view(bsz, seqlen, self.n_kv_heads, self.head_dim)
        v = self.wv(x).view(bsz, seqlen, self.n_kv_heads, self.head_dim)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if cache is not None:
            out = attend_cached(q, k, v, cache)
        else:
            out = attend(q, k, v, layout)  # training: always a layout
        return self.wo(out.reshape(bsz, seqlen, -1))
