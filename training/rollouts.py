"""Rollouts for online RL: the batch source of a GRPO stage.

Each step, every rank takes its share of the task stream (`training/data/tasks.py`),
samples G completions per prompt with the policy being trained (KV-cached generation,
`training/generation/`), decodes them and scores them with a verifiable reward: a math
final answer (`math_reward`) or code run against tests in the sandbox (`code_reward`).
Rewards become group-normalised advantages, and the completions a `RolloutBatch` with
the sampling log-probs the clipped ratio needs (`training/objectives/grpo.py`).

Sampling is seeded per step and rank from the stage seed and the task stream's
position, so a resumed run draws the same completions without saving generator state.
Rollout time is measured apart from the update, so rollout tokens/s and training
tokens/s are reported separately.
"""

from __future__ import annotations

import time
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from training.generation import generate
from training.objectives.base import IGNORE_INDEX
from training.objectives.grpo import RolloutBatch, label_logps
from training.objectives.grpo_loss import group_advantages


def collate_rollouts(
    prompts: list[list[int]],
    completions: list[list[int]],
    logprobs: torch.Tensor,
    advantages: torch.Tensor,
    pad_id: int,
) -> RolloutBatch:
    """Right-padded rows of prompt + completion; labels and old log-probs on the completion."""
    rows = [p + c for p, c in zip(prompts, completions, strict=True)]
    width = max(max(len(r) for r in rows) - 1, 1)
    n = len(rows)
    inputs = torch.full((n, width), pad_id, dtype=torch.long)
    labels = torch.full((n, width), IGNORE_INDEX, dtype=torch.long)
    old = torch.zeros(n, width)
    segment = torch.ones(n, width, dtype=torch.long)
    position = torch.zeros(n, width, dtype=torch.long)
    for i, (p, c) in enumerate(zip(prompts, completions, strict=True)):
        row = torch.tensor(rows[i], dtype=torch.long)
        length = len(rows[i]) - 1
        inputs[i, :length] = row[:-1]
        segment[i, :length] = 0
        position[i, :length] = torch.arange(length)
        position[i, length:] = torch.arange(width - length)
        start = len(p) - 1  # the position whose next token is the completion's first
        labels[i, start : start + len(c)] = torch.tensor(c, dtype=torch.long)
        old[i, start : start + len(c)] = logprobs[i, : len(c)].float().cpu()
    return RolloutBatch(inputs, labels, position, segment, old, advantages.float())


class RolloutSource:
    """`next_batches()` like the other loaders, but each batch is sampled and scored now."""

    batch_type = RolloutBatch

    def __init__(
        self,
        tasks: Any,
        model: nn.Module,
        tokenizer: Any,
        *,
        group_size: int,
        max_new_tokens: int,
        temperature: float,
        top_p: float,
        advantage_scale: str,
        stop_ids: list[int],
        pad_id: int,
        seed: int,
        rank: int,
        device: torch.device,
        reference: nn.Module | None = None,
    ) -> None:
        self.tasks, self.model, self.tokenizer = tasks, model, tokenizer
        self.group_size, self.max_new_tokens = group_size, max_new_tokens
        self.temperature, self.top_p, self.advantage_scale = temperature, top_p, advantage_scale
        self.stop_ids, self.pad_id, self.seed, self.rank = stop_ids, pad_id, seed, rank
        self.device, self.reference = device, reference
        self.domains = tasks.domains
        self.last: dict[str, float] = {}

    @property
    def tokens_consumed(self) -> int:
        return self.tasks.tokens_consumed

    def state_dict(self) -> dict[str, Any]:
        return self.tasks.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.tasks.load_state_dict(state)

    def next_batches(self) -> list[RolloutBatch]:
        t0 = time.perf_counter()
        position = self.tasks.tasks_consumed
        batches, rewards, generated = [], [], 0
        for m, tasks in enumerate(self.tasks.next_batches()):
            batch, scores, n_tokens = self._rollout(tasks, seed_key=(position, m))
            batches.append(batch)
            rewards += scores
            generated += n_tokens
        seconds = time.perf_counter() - t0
        totals = torch.tensor([sum(rewards), len(rewards), generated], dtype=torch.float64)
        if dist.is_initialized():
            dist.all_reduce(totals)
        self.last = {
            "reward_mean": float(totals[0] / max(totals[1], 1)),
            "rollout_tokens": int(totals[2]),
            "rollout_s": seconds,
            "rollout_tokens_per_s": float(totals[2]) / seconds,
        }
        return batches

    def _rollout(
        self, tasks: list[Any], seed_key: tuple[int, int]
    ) -> tuple[RolloutBatch, list[float], int]:
        g = self.group_size
        prompts = [[int(t) for t in task.prompt] for task in tasks for _ in range(g)]
        generator = torch.Generator(device=self.device)
        generator.manual_seed(hash((self.seed, self.rank, *seed_key)) % (2**63))
        out = generate(
            self.model,
            prompts,
            max_new_tokens=self.max_new_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            stop_ids=self.stop_ids,
            pad_id=self.pad_id,
            generator=generator,
            return_logprobs=True,
        )
        completions = out.sequences()
        texts = self.tokenizer.decode_batch(completions, skip_special_tokens=True)
        scores = [score(tasks[i // g], text) for i, text in enumerate(texts)]
        advantages = group_advantages(
            torch.tensor(scores, dtype=torch.float64), g, scale=self.advantage_scale
        )
        batch = collate_rollouts(prompts, completions, out.logprobs, advantages, self.pad_id)
        if self.reference is not None:
            with torch.no_grad():
                on_device = batch.to(self.device)
                logits = self.reference(
                    on_device.inputs, on_device.position_ids, on_device.segment_ids
                )
                ref = label_logps(logits, on_device.labels).cpu()
            batch = RolloutBatch(**{**dict(batch.items()), "ref_logps": ref})
        return batch, scores, int(out.lengths.sum())


def score(task: Any, completion: str) -> float:
    """The task's verifiable reward: its math answer, or its tests in the sandbox."""
    from training.rewards import code_reward, math_reward

    if task.answer is not None:
        return math_reward(completion, task.answer)
    if task.tests is not None:
        return code_reward(completion, task.tests)
    raise ValueError(f"task {task.index} has neither an answer nor tests")
