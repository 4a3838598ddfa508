"""pass@k on Python problems, each completion run against its tests in the sandbox.

Records are JSONL `{"prompt": str or messages, "tests": "<python with def test_*>"}` (`id`
optional; `data/post_training/code_eval.jsonl` is a small bundled set). Each problem gets
`samples` completions drawn at `temperature` / `top_p` from a seeded generator; a sample
passes when its code (the last ```python block, else the whole text) passes every test
(`code_reward == 1.0`). With c of n samples passing, the unbiased estimator of Chen et al.
2021 ("Evaluating Large Language Models Trained on Code") is
pass@k = 1 - C(n-c, k) / C(n, k), averaged over problems: the chance that at least one of
k samples drawn without replacement from the n passes. Sampling n > k lowers its variance.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
from torch import nn

from training.eval.completions import Prompter, complete, read_jsonl
from training.rewards import code_reward


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one problem from n samples of which c pass."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n (n={n}, c={c}, k={k})")
    if n - c < k:  # every k-subset holds a passing sample
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def score_code(
    completions: Sequence[str], tests: Sequence[str], *, workers: int | None = None
) -> list[float]:
    """Fraction of its tests each completion passes, several sandboxes at once."""
    if len(completions) != len(tests):
        raise ValueError(f"{len(completions)} completions for {len(tests)} test sets")
    workers = workers or min(4, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(code_reward, completions, tests))


def code_eval(
    model: nn.Module,
    prompter: Prompter,
    path: str | Path,
    *,
    ks: Sequence[int] = (1, 5),
    samples: int = 10,
    max_new_tokens: int = 256,
    temperature: float = 0.8,
    top_p: float = 0.95,
    batch_size: int = 8,
    seed: int = 0,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(a pass@k row per k and a mean-test-fraction row, one record per sample)."""
    bad = [k for k in ks if not 1 <= k <= samples]
    if bad:
        raise ValueError(f"k {bad} must lie in [1, samples={samples}]: raise --samples")
    problems = read_jsonl(path, ["tests"])
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    prompts = [p["prompt"] for p in problems for _ in range(samples)]
    texts = complete(
        model,
        prompter,
        prompts,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_p=top_p,
        batch_size=batch_size,
        generator=generator,
    )
    rewards = score_code(texts, [p["tests"] for p in problems for _ in range(samples)])
    passed = [
        sum(r == 1.0 for r in rewards[i * samples : (i + 1) * samples])
        for i in range(len(problems))
    ]
    common = {
        "n": len(problems),
        "samples": samples,
        "temperature": temperature,
        "top_p": top_p,
        "prompt_format": prompter.format,
        "max_new_tokens": max_new_tokens,
    }
    rows = [
        {
            "metric": f"pass@{k}",
            "k": k,
            "value": sum(pass_at_k(samples, c, k) for c in passed) / len(problems),
            **common,
        }
        for k in sorted(set(ks))
    ]
    rows.append({"metric": "mean_test_fraction", "value": sum(rewards) / len(rewards), **common})
    records = [
        {
            "id": problems[i // samples]["id"],
            "sample": i % samples,
            "completion": text,
            "score": reward,
        }
        for i, (text, reward) in enumerate(zip(texts, rewards, strict=True))
    ]
    return rows, records
