"""The attention kernels behind `attention.attend`, one per backend.

All compute causal attention that stays inside a document of a packed row. They differ in
what they materialise:
- `dense_mask_attention` (`sdpa`): a (B, 1, T, T) boolean mask; quadratic in T, so it is the
  reference the others are tested against, never the default (1 GiB of mask per row at 32k,
  16 GiB at 128k).
- `doc_blocks_attention`: one causal SDPA call per group of equal-length documents, on
  tokens gathered document by document. No mask exists at all; PyTorch's fused CPU kernel
  (flash-style, tiled with an online softmax) keeps forward and backward memory linear in
  T, so a document spanning a whole 32k row needs no extra query chunking (measured in
  `benchmarks/attention_memory.py`).
- `flex_document_attention` (`flex`): compiled `flex_attention` with a document-causal
  `BlockMask`. Not the CPU default: in torch 2.13 CPU flex has no backward
  (NotImplementedError), eager flex and eager `create_block_mask` build T x T tensors, and
  compiling takes 5-30 s per new shape. On CPU it serves forward-only evaluation. Heads
  narrower than 32 are zero-padded to 32 for the compiled kernel (see FLEX_MIN_HEAD_DIM).
- `flash_varlen_attention`: flash-attn over `cu_seqlens` (CUDA, bf16/fp16 only).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

import torch
import torch.nn.functional as F

HALF_DTYPES = (torch.bfloat16, torch.float16)


def document_index(segment_ids: torch.Tensor) -> torch.Tensor:
    """(B, T) -> (B, T) int64 document number, counted over the flattened batch.

    A document starts at every row start and wherever the segment id changes, so every
    backend agrees on what a document is even if a row reuses an id.
    """
    starts = torch.ones_like(segment_ids, dtype=torch.bool)
    starts[:, 1:] = segment_ids[:, 1:] != segment_ids[:, :-1]
    return starts.flatten().cumsum(0).sub(1).view_as(segment_ids)


def positions_from_segments(segment_ids: torch.Tensor) -> torch.Tensor:
    """Position ids that restart at 0 at every document start (what the loader emits)."""
    doc = document_index(segment_ids).flatten()
    idx = torch.arange(doc.numel(), device=doc.device)
    first = torch.full((int(doc[-1]) + 1,), doc.numel(), device=doc.device, dtype=idx.dtype)
    first = first.scatter_reduce(0, doc, idx, reduce="amin")
    return (idx - first[doc]).view_as(segment_ids)


def _expand_kv(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Repeat kv heads (dim 2 of (B, T, H, D)) up to the query heads (GQA)."""
    groups = q.shape[2] // k.shape[2]
    if groups == 1:
        return k, v
    return k.repeat_interleave(groups, dim=2), v.repeat_interleave(groups, dim=2)


def _native_gqa(q: torch.Tensor) -> bool:
    """Whether SDPA's own GQA (`enable_gqa`, no k/v copies) keeps a fused kernel.

    CPU's flash kernel takes any dtype; on CUDA the flash kernel needs bf16/fp16 and head
    dim <= 256, and the memory-efficient one (fp32) has no GQA, so there SDPA would fall
    back to the unfused math path: expand instead.
    """
    return q.device.type == "cpu" or (q.dtype in HALF_DTYPES and q.shape[-1] <= 256)


def causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """One document per row: q (B, T, H, D), k/v (B, T, Hkv, D) -> (B, T, H, D)."""
    gqa = q.shape[2] != k.shape[2] and _native_gqa(q)
    if not gqa:
        k, v = _expand_kv(q, k, v)
    q, k, v = (t.transpose(1, 2) for t in (q, k, v))
    out = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
    return out.transpose(1, 2)


def cached_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None
) -> torch.Tensor:
    """Generation: q (B, T, H, D) over a cached prefix k/v (B, S, Hkv, D), S >= T, the new
    tokens last. `mask` (B, 1, T, S) bool, or None: causal when T == S (a prefill from
    column 0), nothing to hide when T == 1."""
    gqa = q.shape[2] != k.shape[2] and _native_gqa(q)
    if not gqa:
        k, v = _expand_kv(q, k, v)
    q, k, v = (t.transpose(1, 2) for t in (q, k, v))
    causal = mask is None and q.shape[2] > 1
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal, enable_gqa=gqa)
    return out.transpose(1, 2)


def dense_mask(segment_ids: torch.Tensor) -> torch.Tensor:
    """(B, T) -> (B, 1, T, T) bool, True = may attend: same document and not in the future."""
    doc = document_index(segment_ids)
    seqlen = doc.shape[1]
    causal = torch.ones(seqlen, seqlen, dtype=torch.bool, device=doc.device).tril()
    return ((doc.unsqueeze(2) == doc.unsqueeze(1)) & causal).unsqueeze(1)


def dense_mask_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """The quadratic reference: SDPA with an explicit (B, 1, T, T) mask."""
    k, v = _expand_kv(q, k, v)
    q, k, v = (t.transpose(1, 2) for t in (q, k, v))
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask).transpose(1, 2)


def doc_groups(
    segment_ids: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, tuple[tuple[int, int], ...]]:
    """Gather order that lays documents of equal length side by side.

    Returns `perm` (B*T,) into the flattened batch, its inverse, and (length, count) per
    group in `perm` order, so each group is a (count, length) batch for one SDPA call.
    Costs one host sync per forward, shared by every layer.
    """
    doc = document_index(segment_ids).flatten()
    n_docs = int(doc[-1]) + 1
    lengths = torch.bincount(doc, minlength=n_docs)
    starts = lengths.cumsum(0) - lengths
    order = torch.sort(lengths, stable=True).indices
    sorted_len = lengths[order]
    offsets = torch.repeat_interleave(sorted_len.cumsum(0) - sorted_len, sorted_len)
    perm = torch.repeat_interleave(starts[order], sorted_len)
    perm = perm + torch.arange(perm.numel(), device=perm.device) - offsets
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(perm.numel(), device=perm.device)
    values, counts = torch.unique_consecutive(sorted_len, return_counts=True)
    return perm, inv, tuple(zip(values.tolist(), counts.tolist(), strict=True))


def doc_blocks_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    perm: torch.Tensor,
    inv: torch.Tensor,
    groups: tuple[tuple[int, int], ...],
) -> torch.Tensor:
    """Per-document causal attention; extra memory is O(T) gathered copies of q, k, v, out."""
    bsz, seqlen, n_heads, head_dim = q.shape
    qf, kf, vf = (t.flatten(0, 1).index_select(0, perm) for t in (q, k, v))
    outs, offset = [], 0
    for length, count in groups:
        end = offset + length * count
        qb, kb, vb = (t[offset:end].unflatten(0, (count, length)) for t in (qf, kf, vf))
        outs.append(causal_attention(qb, kb, vb).flatten(0, 1))
        offset = end
    return torch.cat(outs).index_select(0, inv).view(bsz, seqlen, n_heads, head_dim)


@cache
def _compiled_flex() -> tuple[Callable[..., Any], Callable[..., Any]]:
    """Compiled `flex_attention` and `create_block_mask`, built on first use only."""
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    return torch.compile(flex_attention, dynamic=False), torch.compile(create_block_mask)


def flex_block_mask(segment_ids: torch.Tensor, compiled: bool = True) -> Any:
    """Document-causal `BlockMask`; the compiled builder never materialises T x T."""
    from torch.nn.attention.flex_attention import create_block_mask

    doc = document_index(segment_ids)

    def document_causal(b: Any, h: Any, q_idx: Any, kv_idx: Any) -> Any:
        return (doc[b, q_idx] == doc[b, kv_idx]) & (q_idx >= kv_idx)

    build = _compiled_flex()[1] if compiled else create_block_mask
    bsz, seqlen = doc.shape
    return build(document_causal, bsz, None, seqlen, seqlen, device=doc.device)


# Compiled flex is given heads at least this wide. torch 2.13's compiled CPU kernel returns
# wrong values (garbage or NaN, differing run to run) for head_dim < 32 when T is not a
# multiple of 16, measured on an AVX2 CPU (head_dim 8/16, T 8-72); NATTEN refuses compiled
# flex below 32 for the same reason. Zero columns change no dot product and no output.
FLEX_MIN_HEAD_DIM = 32


def flex_document_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, block_mask: Any, compiled: bool = True
) -> torch.Tensor:
    """flex_attention over (B, H, T, D) with GQA handled by the kernel."""
    from torch.nn.attention.flex_attention import flex_attention

    fn = _compiled_flex()[0] if compiled else flex_attention
    head_dim = q.shape[-1]
    q, k, v = (t.transpose(1, 2) for t in (q, k, v))
    if compiled and head_dim < FLEX_MIN_HEAD_DIM:
        q, k, v = (F.pad(t, (0, FLEX_MIN_HEAD_DIM - head_dim)) for t in (q, k, v))
    gqa = q.shape[1] != k.shape[1]
    out = fn(q, k, v, block_mask=block_mask, scale=head_dim**-0.5, enable_gqa=gqa)
    return out[..., :head_dim].transpose(1, 2)


def flash_varlen_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens: torch.Tensor, max_seqlen: int
) -> torch.Tensor:
    """flash-attn varlen over the flattened batch; it handles GQA itself."""
    if q.dtype not in HALF_DTYPES:
        raise ValueError(f"flash_varlen runs in bf16/fp16 only, got {q.dtype}")
    from flash_attn import flash_attn_varlen_func  # optional dependency, CUDA only

    bsz, seqlen = q.shape[:2]
    out = flash_attn_varlen_func(
        q.flatten(0, 1),
        k.flatten(0, 1),
        v.flatten(0, 1),
        cu_seqlens,
        cu_seqlens,
        max_seqlen,
        max_seqlen,
        causal=True,
    )
    return out.unflatten(0, (bsz, seqlen))
