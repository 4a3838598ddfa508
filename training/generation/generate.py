"""Batched generation with a KV cache: prefill once, then one token per row per step.

Prompts of different lengths share a batch by left padding: row b's `pad[b]` pad columns
come first and its real tokens end at the last prompt column, so every row's next token
goes to the same cache column. Position ids count real tokens only (0 at each prompt's
first token, pads clamped to 0 and masked out of attention), so RoPE, and the logits,
match a forward of the unpadded row. Rows that emit a stop token or reach
`max_new_tokens` are finished: they keep being fed `pad_id` (one batch, one shape) but
their output no longer changes; the loop ends when every row is finished.

FSDP2: the cached forward goes through the same modules as training, so each block's
pre-forward hook all-gathers its parameters. Every rank must then run the same number of
forwards (the all-gathers are collectives), while ranks hold different prompts and
finish at different steps; each step all-reduces "any row still running" (MAX over
ranks), and a rank that is done runs a one-token forward without a cache to keep pace.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.fsdp import FSDPModule

from training.generation.sampling import sample_tokens, token_logprobs
from training.model.attention import KVCache

FinishReason = Literal["stop", "length"]


@dataclass(frozen=True)
class GenerationOutput:
    """What `generate` returns; tensors on the model's device, rows in prompt order."""

    tokens: torch.Tensor  # (B, N) long: generated ids, a stop token included; pad_id after
    lengths: torch.Tensor  # (B,) long: generated tokens per row (N = the longest)
    finish_reasons: list[FinishReason]  # "stop": ended on a stop id; "length": max_new_tokens
    # (B, N) fp32, when asked: log p(token) of each sampled token under the raw model
    # (log_softmax of its logits: temperature 1, no top-p), 0 past a row's length
    logprobs: torch.Tensor | None = None

    def sequences(self) -> list[list[int]]:
        """Each row's generated ids, without the padding."""
        return [row[:n] for row, n in zip(self.tokens.tolist(), self.lengths.tolist(), strict=True)]


@dataclass
class DecodeState:
    """A batch mid-generation: its KV cache and the position id of each row's next token."""

    cache: KVCache
    positions: torch.Tensor  # (B,) long: tokens each row holds so far (prompt + fed)


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def prefill(
    model: nn.Module, prompts: Sequence[Sequence[int]], *, max_new_tokens: int, pad_id: int
) -> tuple[DecodeState, torch.Tensor]:
    """Left-pad the prompts, allocate a cache for `max_new_tokens` more tokens and run the
    prompts through it; the state and the next-token logits (B, V) fp32."""
    if not prompts or min(len(p) for p in prompts) == 0:
        raise ValueError("prefill needs at least one prompt, each of at least one token")
    cfg = model.cfg  # type: ignore[attr-defined]
    if not 0 <= pad_id < cfg.vocab_size:
        raise ValueError(f"pad_id {pad_id} is not a token id (vocab_size {cfg.vocab_size})")
    longest = max(len(p) for p in prompts)
    width = longest + max_new_tokens - 1  # the last sampled token is never fed back
    if width > cfg.max_seq_len:
        raise ValueError(
            f"longest prompt {longest} + max_new_tokens {max_new_tokens} - 1 exceeds "
            f"model.max_seq_len={cfg.max_seq_len}"
        )
    device = _device(model)
    rows = [[pad_id] * (longest - len(p)) + list(p) for p in prompts]
    tokens = torch.tensor(rows, dtype=torch.long, device=device)
    lengths = torch.tensor([len(p) for p in prompts], dtype=torch.long, device=device)
    pad = longest - lengths
    positions = (torch.arange(longest, device=device) - pad.unsqueeze(1)).clamp(min=0)
    cache = KVCache(cfg.n_layers, max(width, longest), pad if bool(pad.any()) else None)
    logits = model(tokens, positions, cache=cache, last_only=True)
    return DecodeState(cache, lengths), logits[:, -1]


@torch.no_grad()
def step(model: nn.Module, state: DecodeState, tokens: torch.Tensor) -> torch.Tensor:
    """Feed one token per row, (B,); the next-token logits (B, V) fp32."""
    logits = model(tokens.unsqueeze(1), state.positions.unsqueeze(1), cache=state.cache)
    state.positions = state.positions + 1
    return logits[:, -1]


def _is_sharded(model: nn.Module) -> bool:
    """FSDP2-wrapped and in a world of more than one: forwards are collectives."""
    return (
        dist.is_available()
        and dist.is_initialized()
        and dist.get_world_size() > 1
        and any(isinstance(m, FSDPModule) for m in model.modules())
    )


def _any_rank(flag: bool, sync: bool, device: torch.device) -> bool:
    """`flag` OR-ed over all ranks (MAX all-reduce) when synchronised, else as given."""
    if not sync:
        return flag
    t = torch.tensor([int(flag)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def _idle_forward(model: nn.Module, device: torch.device) -> None:
    """A one-token forward with no cache: this rank's share of the other ranks' collectives."""
    model(torch.zeros(1, 1, dtype=torch.long, device=device), last_only=True)


def _check(max_new_tokens: int, temperature: float, top_p: float) -> None:
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    if not temperature >= 0 or temperature == float("inf"):
        raise ValueError(f"temperature must be finite and >= 0, got {temperature}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")


@torch.no_grad()
def generate(
    model: nn.Module,
    prompts: Sequence[Sequence[int]],
    *,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    stop_ids: Sequence[int] = (),
    pad_id: int,
    generator: torch.Generator | None = None,
    return_logprobs: bool = False,
    sync: bool | None = None,
) -> GenerationOutput:
    """Sample up to `max_new_tokens` tokens after each prompt, all rows in one batch.

    temperature 0 is greedy; top_p < 1 samples from the nucleus; a row ends after emitting
    any of `stop_ids` (kept in its output). `generator` (on the model's device) seeds the
    draws. `sync` (default: when the model is FSDP2-sharded over several ranks) keeps the
    ranks' forwards in step; every rank must call `generate`, each with its own prompts
    (possibly none). Runs under no_grad; the model's train/eval mode is left as it is.
    """
    _check(max_new_tokens, temperature, top_p)
    sync = _is_sharded(model) if sync is None else sync
    device = _device(model)
    bsz = len(prompts)
    out = torch.full((bsz, max_new_tokens), pad_id, dtype=torch.long, device=device)
    logprobs = torch.zeros(bsz, max_new_tokens, device=device) if return_logprobs else None
    lengths = torch.zeros(bsz, dtype=torch.long, device=device)
    done = torch.zeros(bsz, dtype=torch.bool, device=device)
    stopped = torch.zeros_like(done)
    stops = torch.tensor(list(stop_ids), dtype=torch.long, device=device)
    if bsz:
        state, logits = prefill(model, prompts, max_new_tokens=max_new_tokens, pad_id=pad_id)
    else:
        _idle_forward(model, device)  # the other ranks' prefill
    live, t = bsz > 0, 0
    while True:  # not a for loop over max_new_tokens: other ranks may need more forwards
        if live:
            token = sample_tokens(logits, temperature=temperature, top_p=top_p, generator=generator)
            token = token.masked_fill(done, pad_id)
            out[:, t] = token
            if logprobs is not None:
                logprobs[:, t] = token_logprobs(logits, token).masked_fill(done, 0.0)
            lengths += (~done).long()
            hit = torch.isin(token, stops) & ~done
            stopped |= hit
            done |= hit
            live = t + 1 < max_new_tokens and not bool(done.all())
        if not _any_rank(live, sync, device):
            break
        if live:
            logits = step(model, state, token)
        else:
            _idle_forward(model, device)
        t += 1
    width = int(lengths.max()) if bsz else 0
    return GenerationOutput(
        tokens=out[:, :width],
        lengths=lengths,
        finish_reasons=["stop" if s else "length" for s in stopped.tolist()],
        logprobs=None if logprobs is None else logprobs[:, :width],
    )
