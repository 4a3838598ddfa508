"""Passkey retrieval: can the model read back a number hidden at some depth of its window?

The classic long-context probe (Mohtashami & Jaggi 2023, "Landmark Attention"): filler
sentences fill the window, "The pass key is 71432. Remember it. 71432 is the pass key." sits
at a seeded depth, and the prompt ends with "What is the pass key? The pass key is". The
model greedily decodes; a sample counts when the digits it writes are exactly the key. Run
at a stage's `seq_len` it shows whether the stage's length (and RoPE base / YaRN) is usable.

Prompts are assembled from separately encoded pieces (filler sentences, needle, question),
so every prompt has exactly `seq_len - n_gen` tokens (the filler is trimmed at the front;
n_gen covers the longest key) and prompts batch without left padding. With byte-level BPE
the pieces encode as the joined text would, since every piece starts at a word boundary.

Every forward has the same shape, (batch_size, seq_len): the window holds the prompt, the
tokens decoded so far, and padding after them that causal attention never lets the logits
read. So a compiled model (`dynamic=False`) sees one shape (the training shape when
batch_size is the stage's), and the last batch is filled up with copies of its last prompt.
FSDP2: every rank must run the same forwards. Prompts depend only on (tokenizer, seq_len,
n_samples, seed), and decoding runs a fixed number of steps with no data-dependent exit,
so each rank issues the same sequence of forwards.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from tokenizers import Tokenizer

FILLER = (
    "The grass is green.",
    "The sky is blue.",
    "The sun is yellow.",
    "Here we go.",
    "There and back again.",
)
NEEDLE = "The pass key is {key}. Remember it. {key} is the pass key."
QUESTION = "What is the pass key? The pass key is"
_LEADING_DIGITS = re.compile(r"\s*(\d+)")


@dataclass(frozen=True)
class PasskeyPrompt:
    """One probe sample: its tokens, the key, and where the needle sits."""

    tokens: list[int]
    key: str
    needle_start: int  # token index of the needle's first token
    needle_len: int
    depth: float  # filler tokens before the needle / all filler tokens, in [0, 1]
    target_depth: float  # the seeded depth the needle was placed nearest to


def _encode(tokenizer: Tokenizer, text: str) -> list[int]:
    return tokenizer.encode(text, add_special_tokens=False).ids


def score_completion(text: str, key: str) -> bool:
    """True when the completion starts (after spaces) with exactly the key's digits."""
    m = _LEADING_DIGITS.match(text)
    return m is not None and m.group(1) == key


def _draw(n_samples: int, seed: int) -> list[tuple[str, float]]:
    """Seeded (key, depth) pairs: 5-digit keys, depths uniform in [0, 1]."""
    rng = random.Random(seed)
    return [(str(rng.randint(10_000, 99_999)), rng.random()) for _ in range(n_samples)]


def _filler(sentences: list[list[int]], n_tokens: int) -> tuple[list[int], list[int]]:
    """The last `n_tokens` of the repeated filler, and the sentence starts inside it
    (0 and `n_tokens` included: the needle may go first or last)."""
    stream: list[int] = []
    starts: list[int] = []
    i = 0
    while len(stream) < n_tokens:
        starts.append(len(stream))
        stream.extend(sentences[i % len(sentences)])
        i += 1
    cut = len(stream) - n_tokens  # trim at the front: the window opens mid-filler
    bounds = sorted({0, n_tokens} | {s - cut for s in starts if s - cut > 0})
    return stream[cut:], bounds


def gen_tokens(tokenizer: Tokenizer, keys: list[str]) -> int:
    """Tokens decoded per sample: enough for the longest key."""
    return max(len(_encode(tokenizer, " " + k)) for k in keys)


def passkey_prompts(
    tokenizer: Tokenizer, seq_len: int, *, n_samples: int = 8, seed: int = 0
) -> tuple[list[PasskeyPrompt], int]:
    """The probe's prompts, all `seq_len - n_gen` tokens long, and n_gen (tokens to decode),
    so that prompt plus answer fits in `seq_len`."""
    if n_samples < 1:
        raise ValueError(f"n_samples must be at least 1, got {n_samples}")
    draws = _draw(n_samples, seed)
    n_gen = gen_tokens(tokenizer, [k for k, _ in draws])
    prompt_len = seq_len - n_gen
    sentences = [_encode(tokenizer, " " + s) for s in FILLER]
    question = _encode(tokenizer, " " + QUESTION)
    prompts = []
    for key, target in draws:
        needle = _encode(tokenizer, " " + NEEDLE.format(key=key))
        n_fill = prompt_len - len(needle) - len(question)
        if n_fill < 0:
            raise ValueError(
                f"seq_len {seq_len} is too short for a passkey prompt "
                f"(needs {seq_len - n_fill} tokens)"
            )
        filler, bounds = _filler(sentences, n_fill)
        at = min(bounds, key=lambda b: (abs(b - target * n_fill), b))
        tokens = filler[:at] + needle + filler[at:] + question
        depth = at / n_fill if n_fill else 0.0
        prompts.append(PasskeyPrompt(tokens, key, at, len(needle), depth, target))
    return prompts, n_gen


@torch.no_grad()
def _greedy(model: nn.Module, prompts: torch.Tensor, n_gen: int) -> torch.Tensor:
    """n_gen greedily decoded tokens per row: a full forward of the whole (B, P + n_gen)
    window per token (no KV cache); positions past the decoded ones hold padding (0)."""
    bsz, plen = prompts.shape
    window = torch.zeros(bsz, plen + n_gen, dtype=prompts.dtype, device=prompts.device)
    window[:, :plen] = prompts
    for step in range(n_gen):
        logits = model(window, None, None)
        window[:, plen + step] = logits[:, plen + step - 1].argmax(dim=-1)
    return window[:, plen:]


def passkey_completions(
    model: nn.Module,
    tokenizer: Tokenizer,
    seq_len: int,
    *,
    n_samples: int = 8,
    seed: int = 0,
    batch_size: int = 1,
    device: torch.device | str | None = None,
) -> list[tuple[PasskeyPrompt, str]]:
    """Each prompt with the text the model greedily wrote after it (see passkey_accuracy)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if device is None:
        device = next(model.parameters()).device
    prompts, n_gen = passkey_prompts(tokenizer, seq_len, n_samples=n_samples, seed=seed)
    was_training = model.training
    model.eval()
    out = []
    try:
        for i in range(0, len(prompts), batch_size):
            batch = prompts[i : i + batch_size]
            rows = [p.tokens for p in batch] + [batch[-1].tokens] * (batch_size - len(batch))
            tokens = torch.tensor(rows, dtype=torch.long, device=device)
            generated = _greedy(model, tokens, n_gen).tolist()
            for p, ids in zip(batch, generated[: len(batch)], strict=True):
                out.append((p, tokenizer.decode(ids, skip_special_tokens=True)))
    finally:
        model.train(was_training)
    return out


def passkey_accuracy(
    model: nn.Module,
    tokenizer: Tokenizer,
    seq_len: int,
    *,
    n_samples: int = 8,
    seed: int = 0,
    batch_size: int = 1,
    device: torch.device | str | None = None,
) -> dict[str, float | int]:
    """Exact-match passkey accuracy at `seq_len` (prompt plus answer fit in it).

    `model(tokens, position_ids, segment_ids)` must return logits (B, T, V); it is put in
    eval mode and its train/eval mode restored after. `device` defaults to the model's.
    Each forward is (batch_size, seq_len): the stage's batch_size fits in memory.
    Returns {accuracy, n, seq_len, mean_depth}; the same on every rank.
    """
    done = passkey_completions(
        model,
        tokenizer,
        seq_len,
        n_samples=n_samples,
        seed=seed,
        batch_size=batch_size,
        device=device,
    )
    correct = sum(score_completion(text, p.key) for p, text in done)
    return {
        "accuracy": correct / len(done),
        "n": len(done),
        "seq_len": seq_len,
        "mean_depth": sum(p.depth for p, _ in done) / len(done),
    }
