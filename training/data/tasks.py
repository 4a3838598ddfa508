"""RL and evaluation tasks: a resumable, rank-sharded stream of prompts with what scores them.

A task stage (`mixtures.chat_stages.mix_tasks`) stores per task the rendered prompt (ending
with ``<|assistant|>``, so a sampled completion continues it) and exactly one of a reference
``answer`` (the math reward's final answer) or ``tests`` (the code reward's test code). GRPO
samples a group of completions per task and scores them; nothing here pads or collates,
because the batch the objective trains on is built from the completions, not the prompts.

``task_index`` is a task's row in the stage (shards in manifest order, rows in shard order):
stable for a stage, whose shards are checksummed, so results can be keyed by it, and
`iter_tasks` visits every task once in that order (evaluation).

The stream is walked like `PreferenceLoader`'s: every rank reads the same global task
stream, a step takes ``world * grad_accum * batch_size`` consecutive tasks, micro-batch m of
rank r is tasks [r*B, (r+1)*B) of the m-th ``world * B``; the state (epoch, shard order,
position, row, rng) depends on the global batch only, and an epoch past the end reorders
the shards with the seeded rng.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from training.data.loader import LoaderStateError

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)  # eq=False: an ndarray field has no boolean equality
class Task:
    prompt: np.ndarray  # int64 token ids of the rendered prompt, ending with <|assistant|>
    answer: str | None  # the reference final answer (math reward), or None
    tests: str | None  # test code (code reward), or None; exactly one of the two is set
    index: int  # the stable task_index: the task's row in the stage
    domain: str


def _task(arrays: Any, row: int, domains: list[str]) -> Task:
    values, offsets = arrays.prompt
    return Task(
        prompt=values[offsets[row] : offsets[row + 1]].astype(np.int64),
        answer=arrays.answers[row],
        tests=arrays.tests[row],
        index=arrays.first_index + row,
        domain=domains[int(arrays.domains[row])],
    )


def iter_tasks(shards: Any) -> Iterator[Task]:
    """Every task of the stage once, in ``task_index`` order (an evaluation pass)."""
    domains = list(shards.domains)
    for i in range(shards.num_shards):
        shards.prefetch(i)
        if i + 1 < shards.num_shards:
            shards.prefetch(i + 1)
        arrays = shards.tasks(i)
        for row in range(len(arrays.answers)):
            yield _task(arrays, row, domains)


class TaskLoader:
    """B tasks per micro-batch, `grad_accum` micro-batches per step."""

    batch_type = list

    def __init__(
        self,
        shards: Any,
        *,
        batch_size: int,
        rank: int = 0,
        world_size: int = 1,
        grad_accum: int = 1,
        seed: int = 0,
        vocab_size: int | None = None,
        name: str = "stage",
    ) -> None:
        kind = getattr(shards, "kind", "pretrain")
        if kind != "tasks":
            raise ValueError(f"{name}: a {kind} stage has no tasks (mix one with `mix tasks`)")
        if shards.num_shards < 1 or shards.total_rows < 1:
            raise ValueError(f"{name}: stage has no tasks")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        if batch_size < 1 or grad_accum < 1:
            raise ValueError(
                f"batch_size and grad_accum must be >= 1, got {batch_size}, {grad_accum}"
            )
        self.shards, self.name = shards, name
        self.batch_size, self.vocab_size = batch_size, vocab_size
        self.rank, self.world_size, self.grad_accum = rank, world_size, grad_accum
        self._rng = np.random.Generator(np.random.PCG64(seed))
        self._epoch, self._order = 0, list(range(shards.num_shards))
        self._pos = self._row = 0
        self._tasks_consumed = self._tokens_consumed = 0
        self._cache: tuple[int, Any] | None = None

    @property
    def domains(self) -> list[str]:
        return list(self.shards.domains)

    @property
    def tasks_consumed(self) -> int:
        """Tasks this stage's steps have read so far, over all ranks."""
        return self._tasks_consumed

    @property
    def tokens_consumed(self) -> int:
        """Prompt tokens of those tasks, as the manifest counts them."""
        return self._tokens_consumed

    def _shard(self) -> Any:
        index = self._order[self._pos]
        if self._cache is None or self._cache[0] != index:
            self.shards.prefetch(index)
            if self._pos + 1 < len(self._order):
                self.shards.prefetch(self._order[self._pos + 1])
            arrays = self.shards.tasks(index)
            values = arrays.prompt[0]
            if self.vocab_size is not None and len(values) and int(values.max()) >= self.vocab_size:
                raise ValueError(
                    f"{self.name}: shard {index} has token id {int(values.max())} "
                    f">= vocab_size {self.vocab_size}"
                )
            self._cache = (index, arrays)
        return self._cache[1]

    def _take(self, n: int, out: list[Task] | None) -> None:
        """Consume n tasks of the stream; with `out`, collect them."""
        while n > 0:
            arrays = self._shard()
            if self._row >= len(arrays.answers):
                self._pos, self._row = self._pos + 1, 0
                if self._pos == len(self._order):
                    self._epoch, self._pos = self._epoch + 1, 0
                    self._order = [int(i) for i in self._rng.permutation(self.shards.num_shards)]
                    log.warning(
                        "%s: tasks exhausted, epoch %d (data repeats)", self.name, self._epoch
                    )
                continue
            offsets = arrays.prompt[1]
            self._tokens_consumed += int(offsets[self._row + 1] - offsets[self._row])
            self._tasks_consumed += 1
            if out is not None:
                out.append(_task(arrays, self._row, self.shards.domains))
            self._row += 1
            n -= 1

    def next_batch(self) -> list[Task]:
        """This rank's B tasks of the next `world * batch_size` tasks."""
        tasks: list[Task] = []
        self._take(self.rank * self.batch_size, None)
        self._take(self.batch_size, tasks)
        self._take((self.world_size - self.rank - 1) * self.batch_size, None)
        return tasks

    def next_batches(self) -> list[list[Task]]:
        """This rank's `grad_accum` micro-batches of the next optimizer step."""
        return [self.next_batch() for _ in range(self.grad_accum)]

    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch": self._epoch,
            "shard_order": list(self._order),
            "shard_pos": self._pos,
            "row": self._row,
            "rng": copy.deepcopy(self._rng.bit_generator.state),
            "tasks_consumed": self._tasks_consumed,
            "tokens_consumed": self._tokens_consumed,
            "num_shards": self.shards.num_shards,
            "global_batch_tasks": self.world_size * self.grad_accum * self.batch_size,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["num_shards"] != self.shards.num_shards:
            raise LoaderStateError(
                f"{self.name}: saved loader state is for {state['num_shards']} shards, "
                f"stage has {self.shards.num_shards}"
            )
        tasks = self.world_size * self.grad_accum * self.batch_size
        if state["global_batch_tasks"] != tasks:
            raise LoaderStateError(
                f"{self.name}: saved global batch is {state['global_batch_tasks']} tasks, now "
                f"{tasks} (world_size * grad_accum * batch_size must match)"
            )
        self._epoch = int(state["epoch"])
        self._order = [int(i) for i in state["shard_order"]]
        self._pos, self._row = int(state["shard_pos"]), int(state["row"])
        self._rng.bit_generator.state = copy.deepcopy(state["rng"])
        self._tasks_consumed = int(state["tasks_consumed"])
        self._tokens_consumed = int(state["tokens_consumed"])
        self._cache = None
