"""Prompts in, completions out: the half that the math and code evals share.

A prompt is a string (one user turn) or a list of chat messages. With a tokenizer that has
the chat tokens it is rendered by the one chat template with its generation prompt
(`<|user|>...<|end|><|assistant|>`), so the model answers the way SFT taught it, and a
reply ends at `<|end|>` or eos. A tokenizer without the chat tokens gets the raw text
(message contents joined by blank lines) and stops at eos only. Rows say which format ran
(`prompt_format`): the two numbers are not comparable.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mixtures.tokenizer import (
    CHAT_ROLES,
    END,
    chat_token_ids,
    encode_plain,
    render_chats,
    special_token_ids,
)
from training.generation import generate

log = logging.getLogger(__name__)

PROMPT_FORMATS = ("auto", "chat", "raw")
Prompt = str | Sequence[Mapping[str, str]]


def read_jsonl(path: str | Path, required: Sequence[str]) -> list[dict[str, Any]]:
    """The file's records; each must hold `required` and a prompt (`prompt` or `messages`)."""
    path = Path(path)
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{n}: not JSON: {e}") from e
        if not isinstance(row, dict):
            raise ValueError(f"{path}:{n}: a record must be a JSON object")
        if "prompt" not in row and "messages" in row:
            row["prompt"] = row["messages"]
        missing = [k for k in ("prompt", *required) if k not in row]
        if missing:
            raise ValueError(f"{path}:{n}: missing field(s) {missing}")
        row.setdefault("id", f"{path.stem}-{n}")
        rows.append(row)
    if not rows:
        raise ValueError(f"{path}: no records")
    return rows


def as_messages(prompt: Prompt) -> list[dict[str, str]]:
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    if not prompt or not all(isinstance(m, Mapping) and "content" in m for m in prompt):
        raise ValueError(
            f"a prompt is a string or a list of {{role, content}} messages: {prompt!r}"
        )
    return [{"role": str(m.get("role", "user")), "content": str(m["content"])} for m in prompt]


@dataclass(frozen=True)
class Prompter:
    """How prompts become tokens for one tokenizer, and which tokens end a reply."""

    tokenizer: Any
    format: str  # "chat" or "raw"
    stop_ids: tuple[int, ...]
    pad_id: int

    @classmethod
    def create(cls, tokenizer: Any, prompt_format: str = "auto") -> Prompter:
        """`auto`: chat when the tokenizer has the chat tokens, else raw (logged)."""
        if prompt_format not in PROMPT_FORMATS:
            raise ValueError(
                f"prompt format must be one of {PROMPT_FORMATS}, not {prompt_format!r}"
            )
        ids = special_token_ids(tokenizer)
        has_chat = all(ids[r] is not None for r in CHAT_ROLES)
        if prompt_format == "chat":
            chat_token_ids(tokenizer)  # raises, naming the missing tokens
        use = "chat" if prompt_format == "chat" or (prompt_format == "auto" and has_chat) else "raw"
        if use == "raw" and prompt_format == "auto":
            log.warning("tokenizer has no chat tokens: prompts are given as raw text")
        eos, pad = ids["eos"], ids["pad"]
        stops = (chat_token_ids(tokenizer)[END], eos) if use == "chat" else (eos,)
        return cls(tokenizer, use, tuple(stops), eos if pad is None else pad)

    def encode(self, prompts: Sequence[Prompt]) -> list[list[int]]:
        conversations = [as_messages(p) for p in prompts]
        if self.format == "chat":
            rendered = render_chats(self.tokenizer, conversations, generation_prompt=True)
            return [ids.tolist() for ids, _ in rendered]
        texts = ["\n\n".join(m["content"] for m in c) for c in conversations]
        return encode_plain(self.tokenizer, texts)

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)


def complete(
    model: nn.Module,
    prompter: Prompter,
    prompts: Sequence[Prompt],
    *,
    max_new_tokens: int,
    temperature: float = 0.0,
    top_p: float = 1.0,
    batch_size: int = 8,
    generator: torch.Generator | None = None,
) -> list[str]:
    """The decoded completion of each prompt, in order, batch by batch (KV cache).

    A batch whose longest prompt leaves less room than `max_new_tokens` in the model's
    window decodes only what fits (logged); a prompt longer than the window is refused.
    """
    window = model.cfg.max_seq_len  # type: ignore[attr-defined]
    encoded = prompter.encode(prompts)
    texts: list[str] = []
    for start in range(0, len(encoded), batch_size):
        batch = encoded[start : start + batch_size]
        longest = max(len(p) for p in batch)
        room = window - longest + 1  # generate feeds back all but the last new token
        if room < 1:
            raise ValueError(f"a prompt of {longest} tokens does not fit the {window}-token window")
        if room < max_new_tokens:
            log.warning("prompts of %d tokens leave room for %d new tokens only", longest, room)
        out = generate(
            model,
            batch,
            max_new_tokens=min(max_new_tokens, room),
            temperature=temperature,
            top_p=top_p,
            stop_ids=prompter.stop_ids,
            pad_id=prompter.pad_id,
            generator=generator,
        )
        texts += [prompter.decode(ids) for ids in out.sequences()]
    return texts
