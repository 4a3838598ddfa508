"""Preference pairs for DPO: a resumable, rank-sharded stream of padded (chosen, rejected) rows.

A preference stage (`mixtures.chat_stages.mix_preferences`) stores per pair the rendered
prompt (ending with ``<|assistant|>``) and the chosen and rejected replies (each ending with
``<|end|>``). A batch of B pairs is 2B rows, ``prompt + chosen`` for rows [0, B) and
``prompt + rejected`` for rows [B, 2B) (row i and row B + i are pair i), right-padded to the
longest row of the micro-batch: padding is simple, and pairs are short beside a
pre-training window. Each row is one document (segment 0, positions 0..), its padding a
second segment, so no attention backend mixes them; labels are the next token on reply
positions only (the prompt and the padding hold `IGNORE_INDEX`), so a per-row sum of
label log-probs is the reply's log-probability that DPO compares.

``pair_index`` is a pair's row in the stage (shards in manifest order, rows in shard
order): stable for a stage, whose shards are checksummed, so reference log-probs computed
once can be stored beside the shards in an array indexed by it (`iter_pairs` visits every
pair once, in that order).

The stream is walked like `PackedLoader`'s: every rank reads the same global pair stream,
a step takes ``world * grad_accum * batch_size`` consecutive pairs, micro-batch m of rank
r is pairs [r*B, (r+1)*B) of the m-th ``world * B``; the state (epoch, shard order,
position, row, rng) depends on the global batch only, and an epoch past the end reorders
the shards with the seeded rng.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch

from training.data.loader import LoaderStateError

log = logging.getLogger(__name__)

Pair = tuple[np.ndarray, np.ndarray, np.ndarray, int]  # prompt, chosen, rejected, pair_index


@dataclass(frozen=True)
class PreferenceBatch:
    inputs: torch.Tensor  # (2B, T) int64: prompt + reply without its last token, padded
    labels: torch.Tensor  # (2B, T) int64: next token on reply positions, else IGNORE_INDEX
    position_ids: torch.Tensor  # (2B, T) int64: 0.. along the row; padding restarts at 0
    segment_ids: torch.Tensor  # (2B, T) int64: 0 on the sequence, 1 on its padding
    pair_index: torch.Tensor  # (B,) int64: each pair's stable row index in the stage

    @property
    def n_pairs(self) -> int:
        return int(self.pair_index.shape[0])

    def split(self, per_row: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(chosen, rejected) halves of a per-row tensor, e.g. summed reply log-probs."""
        return per_row[: self.n_pairs], per_row[self.n_pairs :]

    def to(self, device: torch.device) -> PreferenceBatch:
        return PreferenceBatch(**{k: t.to(device, non_blocking=True) for k, t in self.items()})

    def items(self) -> list[tuple[str, torch.Tensor]]:
        return [(f.name, getattr(self, f.name)) for f in fields(self)]

    def astuple(self) -> tuple[torch.Tensor, ...]:
        return tuple(t for _, t in self.items())


def collate_pairs(pairs: list[Pair], pad_id: int, max_len: int | None = None) -> PreferenceBatch:
    """Right-pad the chosen then the rejected sequences of `pairs` into one batch;
    ``max_len`` (the model's longest input) refuses a longer row, naming its pair."""
    from training.objectives.base import IGNORE_INDEX  # here: objectives may import data

    seqs = [np.concatenate([p, c]) for p, c, _, _ in pairs]
    seqs += [np.concatenate([p, r]) for p, _, r, _ in pairs]
    prompt_lens = [len(p) for p, _, _, _ in pairs] * 2
    width = max(len(s) for s in seqs) - 1
    if max_len is not None and width > max_len:
        worst = int(np.argmax([len(s) for s in seqs])) % len(pairs)
        raise ValueError(
            f"preference pair {pairs[worst][3]} needs {width} input positions, more than "
            f"max_len {max_len} (mix it with --max-tokens {max_len + 1})"
        )
    rows = len(seqs)
    inputs = np.full((rows, width), pad_id, dtype=np.int64)
    labels = np.full((rows, width), IGNORE_INDEX, dtype=np.int64)
    segment_ids = np.ones((rows, width), dtype=np.int64)
    position_ids = np.empty((rows, width), dtype=np.int64)
    for i, (seq, n_prompt) in enumerate(zip(seqs, prompt_lens, strict=True)):
        n = len(seq) - 1
        inputs[i, :n] = seq[:-1]
        labels[i, n_prompt - 1 : n] = seq[n_prompt:]  # label j is token j + 1
        segment_ids[i, :n] = 0
        position_ids[i, :n] = np.arange(n)
        position_ids[i, n:] = np.arange(width - n)
    return PreferenceBatch(
        inputs=torch.from_numpy(inputs),
        labels=torch.from_numpy(labels),
        position_ids=torch.from_numpy(position_ids),
        segment_ids=torch.from_numpy(segment_ids),
        pair_index=torch.tensor([p[3] for p in pairs], dtype=torch.int64),
    )


def iter_pairs(
    shards: Any, batch_size: int, pad_id: int, max_len: int | None = None
) -> Iterator[PreferenceBatch]:
    """Every pair of the stage once, in ``pair_index`` order (the last batch may be
    smaller): the pass that computes and stores reference log-probs."""
    batch: list[Pair] = []
    for i in range(shards.num_shards):
        shards.prefetch(i)
        arrays = shards.pairs(i)
        for row in range(len(arrays.prompt[1]) - 1):
            batch.append(_pair(arrays, row))
            if len(batch) == batch_size:
                yield collate_pairs(batch, pad_id, max_len)
                batch = []
    if batch:
        yield collate_pairs(batch, pad_id, max_len)


def _pair(arrays: Any, row: int) -> Pair:
    def take(column: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        values, offsets = column
        return values[offsets[row] : offsets[row + 1]]

    index = arrays.first_index + row
    return take(arrays.prompt), take(arrays.chosen), take(arrays.rejected), index


class PreferenceLoader:
    """B pairs per micro-batch (2B rows), `grad_accum` micro-batches per step."""

    batch_type = PreferenceBatch

    def __init__(
        self,
        shards: Any,
        *,
        batch_size: int,
        pad_id: int,
        rank: int = 0,
        world_size: int = 1,
        grad_accum: int = 1,
        seed: int = 0,
        vocab_size: int | None = None,
        max_len: int | None = None,
        name: str = "stage",
    ) -> None:
        kind = getattr(shards, "kind", "pretrain")
        if kind != "preferences":
            raise ValueError(f"{name}: a {kind} stage has no preference pairs (use PackedLoader)")
        if shards.num_shards < 1 or shards.total_rows < 1:
            raise ValueError(f"{name}: stage has no pairs")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        if batch_size < 1 or grad_accum < 1:
            raise ValueError(
                f"batch_size and grad_accum must be >= 1, got {batch_size}, {grad_accum}"
            )
        self.shards, self.name = shards, name
        self.batch_size, self.pad_id, self.max_len = batch_size, pad_id, max_len
        self.rank, self.world_size, self.grad_accum = rank, world_size, grad_accum
        self.vocab_size = vocab_size
        self._rng = np.random.Generator(np.random.PCG64(seed))
        self._epoch, self._order = 0, list(range(shards.num_shards))
        self._pos = self._row = 0
        self._pairs_consumed = self._tokens_consumed = 0
        self._cache: tuple[int, Any] | None = None

    @property
    def domains(self) -> list[str]:
        return list(self.shards.domains)

    @property
    def pairs_consumed(self) -> int:
        """Pairs this stage's steps have read so far, over all ranks."""
        return self._pairs_consumed

    @property
    def tokens_consumed(self) -> int:
        """Stored tokens (prompt + chosen + rejected) of those pairs, as the manifest counts."""
        return self._tokens_consumed

    def _shard(self) -> Any:
        index = self._order[self._pos]
        if self._cache is None or self._cache[0] != index:
            self.shards.prefetch(index)
            if self._pos + 1 < len(self._order):
                self.shards.prefetch(self._order[self._pos + 1])
            arrays = self.shards.pairs(index)
            for values, _ in (arrays.prompt, arrays.chosen, arrays.rejected):
                if (
                    self.vocab_size is not None
                    and len(values)
                    and int(values.max()) >= self.vocab_size
                ):
                    raise ValueError(
                        f"{self.name}: shard {index} has token id {int(values.max())} "
                        f">= vocab_size {self.vocab_size}"
                    )
            self._cache = (index, arrays)
        return self._cache[1]

    def _take(self, n: int, out: list[Pair] | None) -> None:
        """Consume n pairs of the stream; with `out`, collect them."""
        while n > 0:
            arrays = self._shard()
            if self._row >= len(arrays.prompt[1]) - 1:
                self._pos, self._row = self._pos + 1, 0
                if self._pos == len(self._order):
                    self._epoch, self._pos = self._epoch + 1, 0
                    self._order = [int(i) for i in self._rng.permutation(self.shards.num_shards)]
                    log.warning(
                        "%s: pairs exhausted, epoch %d (data repeats)", self.name, self._epoch
                    )
                continue
            pair = _pair(arrays, self._row)
            self._tokens_consumed += sum(len(a) for a in pair[:3])
            self._pairs_consumed += 1
            if out is not None:
                out.append(pair)
            self._row += 1
            n -= 1

    def next_batch(self) -> PreferenceBatch:
        """This rank's B pairs of the next `world * batch_size` pairs."""
        pairs: list[Pair] = []
        self._take(self.rank * self.batch_size, None)
        self._take(self.batch_size, pairs)
        self._take((self.world_size - self.rank - 1) * self.batch_size, None)
        return collate_pairs(pairs, self.pad_id, self.max_len)

    def next_batches(self) -> list[PreferenceBatch]:
        """This rank's `grad_accum` micro-batches of the next optimizer step."""
        return [self.next_batch() for _ in range(self.grad_accum)]

    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch": self._epoch,
            "shard_order": list(self._order),
            "shard_pos": self._pos,
            "row": self._row,
            "rng": copy.deepcopy(self._rng.bit_generator.state),
            "pairs_consumed": self._pairs_consumed,
            "tokens_consumed": self._tokens_consumed,
            "num_shards": self.shards.num_shards,
            "global_batch_pairs": self.world_size * self.grad_accum * self.batch_size,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["num_shards"] != self.shards.num_shards:
            raise LoaderStateError(
                f"{self.name}: saved loader state is for {state['num_shards']} shards, "
                f"stage has {self.shards.num_shards}"
            )
        pairs = self.world_size * self.grad_accum * self.batch_size
        if state["global_batch_pairs"] != pairs:
            raise LoaderStateError(
                f"{self.name}: saved global batch is {state['global_batch_pairs']} pairs, now "
                f"{pairs} (world_size * grad_accum * batch_size must match)"
            )
        self._epoch = int(state["epoch"])
        self._order = [int(i) for i in state["shard_order"]]
        self._pos, self._row = int(state["shard_pos"]), int(state["row"])
        self._rng.bit_generator.state = copy.deepcopy(state["rng"])
        self._pairs_consumed = int(state["pairs_consumed"])
        self._tokens_consumed = int(state["tokens_consumed"])
        self._cache = None
