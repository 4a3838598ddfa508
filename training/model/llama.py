"""Llama-style decoder: pre-norm blocks of GQA attention and a SwiGLU MLP, untied head.

The model takes packed windows: `tokens` (B, T) plus `position_ids` and `segment_ids`
(B, T) from the loader, so each document restarts its positions and never attends to
its neighbour. `blocks` is a ModuleList so FSDP2 can shard one block at a time.
Generation passes a `KVCache` instead (`training/generation/`): the same weights and RoPE,
through the same modules, so FSDP2's per-block hooks gather parameters as in training.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from training.model.attention import (
    Attention,
    AttentionLayout,
    KVCache,
    LayerCache,
    build_layout,
    resolve_backend,
)
from training.model.attention_backends import positions_from_segments
from training.model.config import ModelConfig
from training.model.norms import RMSNorm
from training.model.rope import rope_angles


class SwiGLU(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.w1 = nn.Linear(dim, hidden, bias=False)  # gate
        self.w3 = nn.Linear(dim, hidden, bias=False)  # up
        self.w2 = nn.Linear(hidden, dim, bias=False)  # down

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.attn = Attention(cfg.dim, cfg.n_heads, cfg.n_kv_heads)
        self.ffn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.ffn = SwiGLU(cfg.dim, cfg.ffn_hidden)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        layout: AttentionLayout | None,
        cache: LayerCache | None = None,
    ) -> torch.Tensor:
        x = x + self.attn(self.attn_norm(x), cos, sin, layout, cache)
        return x + self.ffn(self.ffn_norm(x))


class Transformer(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.rope_theta = cfg.rope_theta  # a stage may raise it (length extension)
        self.rope_yarn = None  # YaRN | None (training.model.rope); a stage may set it
        self.tok_embeddings = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.output = nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """GPT-2/Llama init: N(0, 0.02), residual projections scaled by 1/sqrt(2 * n_layers)."""
        residual_std = 0.02 / math.sqrt(2 * self.cfg.n_layers)
        for name, p in self.named_parameters():
            if p.ndim == 1:
                nn.init.ones_(p)  # norm gains
            elif name.endswith(("attn.wo.weight", "ffn.w2.weight")):
                nn.init.normal_(p, std=residual_std)
            else:
                nn.init.normal_(p, std=0.02)

    def forward(
        self,
        tokens: torch.Tensor,
        position_ids: torch.Tensor | None = None,
        segment_ids: torch.Tensor | None = None,
        *,
        cache: KVCache | None = None,
        last_only: bool = False,
    ) -> torch.Tensor:
        """Logits (B, T, vocab) in fp32; `last_only`: the last position's, (B, 1, vocab).

        `cache` (generation): `tokens` continue the cached rows at `position_ids`
        (required); their keys and values are appended. `segment_ids` must then be None.
        """
        if cache is not None:
            return self._forward_cached(tokens, position_ids, segment_ids, cache, last_only)
        bsz, seqlen = tokens.shape
        if seqlen > self.cfg.max_seq_len:
            raise ValueError(
                f"sequence length {seqlen} exceeds model.max_seq_len={self.cfg.max_seq_len}"
            )
        if position_ids is None and segment_ids is not None:
            position_ids = positions_from_segments(segment_ids)  # restart per document
        elif position_ids is None:
            position_ids = torch.arange(seqlen, device=tokens.device).expand(bsz, seqlen)
        h = self.tok_embeddings(tokens)
        backend = resolve_backend(self.cfg.attn_backend, tokens.device, _compute_dtype(h))
        layout = build_layout(segment_ids, backend)
        cos, sin = rope_angles(position_ids, self.cfg.head_dim, self.rope_theta, self.rope_yarn)
        for block in self.blocks:
            h = block(h, cos, sin, layout)
        if last_only:
            h = h[:, -1:]
        return self.output(self.norm(h)).float()

    def _forward_cached(
        self,
        tokens: torch.Tensor,
        position_ids: torch.Tensor | None,
        segment_ids: torch.Tensor | None,
        cache: KVCache,
        last_only: bool,
    ) -> torch.Tensor:
        """Attend to the cached prefix (SDPA with the cache's pad mask), not a layout."""
        if position_ids is None or segment_ids is not None:
            raise ValueError("a cached forward takes position_ids and no segment_ids")
        h = self.tok_embeddings(tokens)
        cos, sin = rope_angles(position_ids, self.cfg.head_dim, self.rope_theta, self.rope_yarn)
        cache.begin(tokens.shape[1], tokens.device)
        for block, layer in zip(self.blocks, cache.layers, strict=True):
            h = block(h, cos, sin, None, layer)
        cache.commit(tokens.shape[1])
        if last_only:
            h = h[:, -1:]
        return self.output(self.norm(h)).float()


def _compute_dtype(h: torch.Tensor) -> torch.dtype:
    """The dtype attention will see: autocast's if active, else the activations' (FSDP2 casts)."""
    if torch.is_autocast_enabled(h.device.type):
        return torch.get_autocast_dtype(h.device.type)
    return h.dtype


def cross_entropy_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean next-token loss over every position (equal counts per rank keep rank means exact)."""
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten())
