"""Exact match on math word problems, checked by the math verifier.

Records are JSONL `{"prompt": str or messages, "answer": str}` (`id` optional), like
`data/post_training/arithmetic_eval.jsonl`. The model decodes greedily (one answer per
problem, deterministic), and a completion counts when its final answer is equivalent to
the reference (`training.rewards.math_reward`: math-verify, so "1/2" matches "0.5",
`\\boxed{}` or "the answer is X" phrases mark the answer). Exact match = correct / n.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn

from training.eval.completions import Prompter, complete, read_jsonl
from training.rewards import math_reward


def score_math(completions: Sequence[str], answers: Sequence[str]) -> list[float]:
    """1.0 where a completion's final answer equals its reference, else 0.0."""
    if len(completions) != len(answers):
        raise ValueError(f"{len(completions)} completions for {len(answers)} answers")
    return [
        math_reward(text, str(answer)) for text, answer in zip(completions, answers, strict=True)
    ]


def math_eval(
    model: nn.Module,
    prompter: Prompter,
    path: str | Path,
    *,
    max_new_tokens: int = 256,
    batch_size: int = 8,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(the exact-match row, one record per problem with its completion and score)."""
    problems = read_jsonl(path, ["answer"])
    texts = complete(
        model,
        prompter,
        [p["prompt"] for p in problems],
        max_new_tokens=max_new_tokens,
        temperature=0.0,
        batch_size=batch_size,
    )
    scores = score_math(texts, [p["answer"] for p in problems])
    row = {
        "metric": "exact_match",
        "value": sum(scores) / len(scores),
        "n": len(scores),
        "correct": int(sum(scores)),
        "prompt_format": prompter.format,
        "max_new_tokens": max_new_tokens,
    }
    samples = [
        {"id": p["id"], "answer": p["answer"], "completion": t, "score": s}
        for p, t, s in zip(problems, texts, scores, strict=True)
    ]
    return row, samples
