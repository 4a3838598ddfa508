"""Resumable, rank-sharded stream of packed windows over a stage's shards.

All ranks walk the same global token stream (shards in manifest order, documents in
row order; the mixture step already shuffled them globally). An optimizer step consumes
`world * grad_accum * batch_size` consecutive windows, as `grad_accum` micro-batches of
`world * batch_size` windows each; in micro-batch m, rank r takes windows
[r*B, (r+1)*B) of it. So the windows a step consumes depend on the global batch only,
not on how it is split between ranks and accumulation (1 rank x 2 micro-batches reads
what 2 ranks x 1 micro-batch read), and the state, a pointer into the stream, is the
same on every rank:

    (epoch, shard position, row, token offset) + the rng that orders the next epoch's shards

Saving and restoring that state between steps reproduces the exact token stream. Should
a stage ask for more tokens than its shards hold, the stream wraps into a new epoch
whose shard order is drawn from the seeded rng (logged: it repeats data beyond the
mixture's plan).

Each token also carries its document's domain (an index into `domains`, the stage's
sorted domain names), which `PackedBatch.domain_ids` reports per label for per-domain
loss; it follows from the stream position, so the saved state is unchanged.

Shards opened with ``verify="on_read"`` are verified as they are first read: opening
shard k also starts the background hash of the next shard in the order, and
`StageShards.rows` blocks until the shard it returns is verified. Every rank walks the
whole stream, so every rank verifies (and, on a mismatch, fails on) the same shard in
the same step, and none is left waiting in a collective.

An SFT stage (``kind == "sft"``) packs whole conversations back to back with document
masking: one that does not fit the rest of a window starts the next window, and the rest
is padding (a segment of its own, no loss), so every assistant token sees its whole
conversation; only a conversation longer than a window is split (mix with
``--max-tokens seq_len+1`` to skip those). The loss mask travels with the stream, and
labels hold `IGNORE_INDEX` wherever the label token is not an assistant token
(`packing.pack_windows`). The state is the same stream pointer; `tokens_consumed` counts
conversation tokens read, not padding. A preference stage is refused here: it is read by
`training.data.preferences.PreferenceLoader`.
"""

from __future__ import annotations

import copy
import logging
from typing import Any, Protocol

import numpy as np

from training.data.packing import PackedBatch, pack_windows

log = logging.getLogger(__name__)


class TokenShards(Protocol):
    """What the loader needs from `mixtures.shards.StageShards`."""

    @property
    def num_shards(self) -> int: ...

    @property
    def domains(self) -> list[str]: ...

    def rows(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...

    def prefetch(self, i: int) -> None: ...


class MaskedTokenShards(TokenShards, Protocol):
    """An SFT stage: ``kind == "sft"`` and a loss mask aligned with each shard's tokens."""

    kind: str

    def loss_mask(self, i: int) -> np.ndarray: ...


# (token slice, its first token opens a document, domain index, loss-mask slice or None)
Piece = tuple[np.ndarray, bool, int, np.ndarray | None]


class LoaderStateError(ValueError):
    """A saved loader state does not fit the shards or settings it is restored onto."""


class PackedLoader:
    batch_type = PackedBatch  # what next_batch returns (objectives check their fields)

    def __init__(
        self,
        shards: TokenShards,
        *,
        seq_len: int,
        batch_size: int,
        rank: int = 0,
        world_size: int = 1,
        grad_accum: int = 1,
        seed: int = 0,
        vocab_size: int | None = None,
        name: str = "stage",
    ) -> None:
        if shards.num_shards < 1:
            raise ValueError(f"{name}: stage has no shards")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        if grad_accum < 1:
            raise ValueError(f"grad_accum must be >= 1, got {grad_accum}")
        kind = getattr(shards, "kind", "pretrain")
        if kind not in ("pretrain", "sft"):
            raise ValueError(
                f"{name}: a {kind} stage holds pairs, not a token stream; "
                "read it with training.data.preferences.PreferenceLoader"
            )
        self.masked = kind == "sft"  # labels of non-assistant tokens become IGNORE_INDEX
        template = getattr(shards, "manifest", {}).get("chat_template", {})
        self.pad_id = int(template.get("pad_id") or 0)  # padding: a segment of its own
        self.shards, self.name = shards, name
        self.seq_len, self.batch_size = seq_len, batch_size
        self.rank, self.world_size, self.grad_accum = rank, world_size, grad_accum
        self.vocab_size = vocab_size
        self.window = seq_len + 1
        self._rng = np.random.Generator(np.random.PCG64(seed))
        self._epoch, self._order = 0, list(range(shards.num_shards))
        self._pos = self._row = self._offset = 0
        self._tokens_consumed = 0
        # (shard index, values, offsets, domain codes, loss mask or None)
        self._cache: tuple[int, np.ndarray, np.ndarray, np.ndarray, Any] | None = None

    @property
    def domains(self) -> list[str]:
        """The stage's domain names; `PackedBatch.domain_ids` index into this list."""
        return list(self.shards.domains)

    # ---- stream walking -------------------------------------------------------------
    def _shard(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
        index = self._order[self._pos]
        if self._cache is None or self._cache[0] != index:
            self.shards.prefetch(index)  # this shard first: one worker hashes in order
            if self._pos + 1 < len(self._order):
                self.shards.prefetch(self._order[self._pos + 1])
            values, offsets, domains = self.shards.rows(index)
            if len(offsets) < 1 or offsets[-1] > len(values) or len(domains) != len(offsets) - 1:
                raise ValueError(f"{self.name}: shard {index} has inconsistent list offsets")
            if self.vocab_size is not None and len(values) and int(values.max()) >= self.vocab_size:
                raise ValueError(
                    f"{self.name}: shard {index} has token id {int(values.max())} "
                    f">= vocab_size {self.vocab_size}"
                )
            mask = self.shards.loss_mask(index) if self.masked else None  # type: ignore
            if mask is not None and len(mask) != len(values):
                raise ValueError(f"{self.name}: shard {index} loss_mask does not fit its tokens")
            self._cache = (index, values, offsets, domains, mask)
        return self._cache[1:]

    def _next_shard(self) -> None:
        self._pos, self._row, self._offset = self._pos + 1, 0, 0
        if self._pos == len(self._order):
            self._epoch += 1
            self._pos = 0
            self._order = [int(i) for i in self._rng.permutation(self.shards.num_shards)]
            log.warning(
                "%s: shards exhausted, starting epoch %d (data repeats)", self.name, self._epoch
            )

    def _advance(self, n: int, out: list[Piece] | None) -> None:
        """Consume n stream tokens; with `out`, collect (token slice, first-is-doc-start,
        domain index, loss-mask slice or None)."""
        empty_shards = 0
        while n > 0:
            values, offsets, domains, mask = self._shard()
            if self._row >= len(offsets) - 1:
                empty_shards += 1
                if empty_shards > self.shards.num_shards:
                    raise ValueError(f"{self.name}: shards hold no tokens")
                self._next_shard()
                continue
            empty_shards = 0
            begin, end = int(offsets[self._row]), int(offsets[self._row + 1])
            take = min(n, end - begin - self._offset)
            if take > 0 and out is not None:
                start, stop = begin + self._offset, begin + self._offset + take
                flags = None if mask is None else mask[start:stop]
                out.append((values[start:stop], self._offset == 0, domains[self._row], flags))
            n -= max(take, 0)
            self._offset += max(take, 0)
            if begin + self._offset >= end:
                self._row, self._offset = self._row + 1, 0

    def _fill_windows(self, n: int, out: list[Piece] | None) -> int:
        """SFT: consume n windows of whole conversations, padding a window's rest when the
        next conversation does not fit it (but would fit a window); returns the stream
        tokens read. With `out`, collect pieces as `_advance` does, padding included."""
        read = 0
        for _ in range(n):
            room, empty_shards = self.window, 0
            while room > 0:
                values, offsets, domains, mask = self._shard()
                if self._row >= len(offsets) - 1:
                    empty_shards += 1
                    if empty_shards > self.shards.num_shards:
                        raise ValueError(f"{self.name}: shards hold no tokens")
                    self._next_shard()
                    continue
                empty_shards = 0
                begin, end = int(offsets[self._row]), int(offsets[self._row + 1])
                left = end - begin - self._offset
                if self._offset == 0 and room < min(left, self.window):
                    if out is not None:  # its own segment; every label ignored
                        pad = np.full(room, self.pad_id, dtype=np.uint32)
                        out.append((pad, True, domains[self._row], np.zeros(room, np.uint8)))
                    break
                take = min(left, room)
                if take > 0 and out is not None:
                    start = begin + self._offset
                    piece = values[start : start + take], mask[start : start + take]
                    out.append((piece[0], self._offset == 0, domains[self._row], piece[1]))
                read, room, self._offset = read + take, room - take, self._offset + take
                if begin + self._offset >= end:
                    self._row, self._offset = self._row + 1, 0
        return read

    def next_batches(self) -> list[PackedBatch]:
        """This rank's `grad_accum` micro-batches of the next optimizer step."""
        return [self.next_batch() for _ in range(self.grad_accum)]

    def next_batch(self) -> PackedBatch:
        """This rank's (batch_size, seq_len) slice of the next `world * batch_size` windows."""
        span = self.batch_size * self.window
        pieces: list[Piece] = []
        if self.masked:  # whole conversations: windows read a varying number of tokens
            b, after = self.batch_size, self.world_size - self.rank - 1
            read = self._fill_windows(self.rank * b, None) + self._fill_windows(b, pieces)
            self._tokens_consumed += read + self._fill_windows(after * b, None)
        else:
            self._advance(self.rank * span, None)
            self._advance(span, pieces)
            self._advance((self.world_size - self.rank - 1) * span, None)
            self._tokens_consumed += self.world_size * span
        tokens = np.concatenate([p[0] for p in pieces])
        doc_start = np.zeros(span, dtype=bool)
        domains = np.empty(span, dtype=np.int32)  # widened once, per label, in pack_windows
        at = 0
        for piece, starts_doc, domain, _ in pieces:  # a few pieces per batch: a plain loop
            doc_start[at] = starts_doc
            domains[at : at + len(piece)] = domain
            at += len(piece)
        trainable = np.concatenate([p[3] for p in pieces]) if self.masked else None
        return pack_windows(tokens, doc_start, self.seq_len, domains, trainable)

    @property
    def tokens_consumed(self) -> int:
        """Stream tokens this stage's steps have read so far, over all ranks."""
        return self._tokens_consumed

    # ---- resumable state --------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch": self._epoch,
            "shard_order": list(self._order),
            "shard_pos": self._pos,
            "row": self._row,
            "token_offset": self._offset,
            "rng": copy.deepcopy(self._rng.bit_generator.state),
            "tokens_consumed": self._tokens_consumed,
            "num_shards": self.shards.num_shards,
            "global_batch_tokens": self._global_batch_tokens(),
        }

    def _global_batch_tokens(self) -> int:
        """Stream tokens per optimizer step (with grad_accum 1, what older states recorded)."""
        return self.world_size * self.grad_accum * self.batch_size * self.window

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["num_shards"] != self.shards.num_shards:
            raise LoaderStateError(
                f"{self.name}: saved loader state is for {state['num_shards']} shards, "
                f"stage has {self.shards.num_shards}"
            )
        global_tokens = self._global_batch_tokens()
        if state["global_batch_tokens"] != global_tokens:
            raise LoaderStateError(
                f"{self.name}: saved global batch is {state['global_batch_tokens']} tokens, "
                f"now {global_tokens} "
                "(world_size * grad_accum * batch_size * (seq_len + 1) must match)"
            )
        self._epoch = int(state["epoch"])
        self._order = [int(i) for i in state["shard_order"]]
        self._pos, self._row = int(state["shard_pos"]), int(state["row"])
        self._offset = int(state["token_offset"])
        self._rng.bit_generator.state = copy.deepcopy(state["rng"])
        self._tokens_consumed = int(state["tokens_consumed"])
        self._cache = None
