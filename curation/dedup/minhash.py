"""Vectorised MinHash signatures over whole Arrow batches.

Why not datasketch: it hashes every shingle with a Python call (sha1) and runs one numpy
call per document. Here a batch of documents becomes one byte buffer; token hashes come
from prefix sums of a polynomial hash (mod 2^64, which numpy's uint64 wrap-around gives
for free), shingle hashes from a few shifted adds over the token hashes, and the
permutations from one multiply-shift per (permutation, shingle) over a whole block of
documents. No Python loop runs per shingle or per permutation.

Permutation i is the multiply-shift hash `h_i(x) = (a_i * x mod 2^64) >> 32` with a
random odd `a_i`, applied to shingle hashes that are already well mixed (splitmix64). The
shift is monotone, so the minimum is taken over the 64-bit products and shifted once per
signature value: two memory passes per (permutation, shingle) instead of four for the
affine variant, with an estimator bias within noise of it (checked in the tests and in
benchmarks/RESULTS.md).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

import numpy as np

_P_TOKEN = np.uint64(0x100000001B3)  # FNV prime: odd, so invertible mod 2^64
_P_NGRAM = np.uint64(0x9E3779B97F4A7C15)
_NON_WORD_RUN = re.compile(r"\W+")
CHUNK_BYTES = 2 << 20
# ASCII: upper case -> lower, word characters ([a-z0-9_], as `\w`) kept, the rest -> space
_ASCII_FOLD = bytes(
    c + 32 if 65 <= c <= 90 else c if chr(c).isalnum() and c < 128 or c == 95 else 32
    for c in range(256))
# the same on UTF-8 bytes: bytes of non-ASCII characters pass through unchanged
_UTF8_FOLD = bytes(c if c >= 128 else _ASCII_FOLD[c] for c in range(256))
_NON_ASCII_NON_WORD = re.compile(r"[^\x00-\x7f\w]")


def normalize_for_hashing(text: str) -> str:
    """NFKC, lower case, punctuation to spaces, whitespace collapsed.

    Used by both exact dedup and shingling, so that formatting-only differences
    (case, smart quotes, re-wrapped lines) do not hide duplicates. The result is the
    text's maximal runs of word characters (regex `\\w`) joined by single spaces
    (`plain_normalize` is the definition; the tests hold this to it).
    """
    if text.isascii():  # NFKC is the identity there: fold bytes in C, 5x the regex path
        return b" ".join(text.encode("ascii").translate(_ASCII_FOLD).split()).decode("ascii")
    # mostly ASCII in practice: only the rare non-ASCII non-word characters (smart quotes,
    # dashes, no-break spaces) go through a regex; the ASCII ones are folded on the bytes
    # (1.8x the one-regex path on the benchmark corpus' non-ASCII documents)
    folded = unicodedata.normalize("NFKC", text).lower()
    if _NON_ASCII_NON_WORD.search(folded):
        folded = _NON_ASCII_NON_WORD.sub(" ", folded)
    return b" ".join(folded.encode("utf-8").translate(_UTF8_FOLD).split()).decode("utf-8")


def plain_normalize(text: str) -> str:
    """The definition `normalize_for_hashing` implements faster: every run of non-word
    characters (punctuation and whitespace alike) of the NFKC, lower-cased text -> " "."""
    return _NON_WORD_RUN.sub(" ", unicodedata.normalize("NFKC", text).lower()).strip(" ")


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """Finaliser that spreads polynomial hashes over all 64 bits."""
    x = x ^ (x >> np.uint64(30))
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x


@dataclass(frozen=True)
class ShingleSpec:
    """How a normalised document becomes a set of shingles."""

    kind: str = "word"  # "word" n-grams or "char" n-grams (over UTF-8 bytes)
    n: int = 5

    def __post_init__(self) -> None:
        if self.kind not in ("word", "char"):
            raise ValueError(f"shingle kind must be 'word' or 'char', got {self.kind!r}")
        if self.n < 1:
            raise ValueError(f"shingle n must be >= 1, got {self.n}")


def _powers(base: np.uint64, n: int) -> np.ndarray:
    out = np.empty(n, dtype=np.uint64)
    out[0] = 1
    out[1:] = base
    return np.cumprod(out, out=out)


def _span_hashes(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Polynomial hash of every byte span [starts[i], ends[i]) of `buf`, vectorised.

    H[j] = sum_{k<j} (buf[k]+1) * P^k (mod 2^64); span hash = (H[e] - H[s]) * P^-s.
    """
    n = buf.shape[0]
    inv = np.uint64(pow(int(_P_TOKEN), -1, 1 << 64))
    prefix = np.zeros(n + 1, dtype=np.uint64)
    np.cumsum((buf.astype(np.uint64) + np.uint64(1)) * _powers(_P_TOKEN, n), out=prefix[1:])
    h = (prefix[ends] - prefix[starts]) * _powers(inv, n + 1)[starts]
    return _splitmix64(h)


def shingle_hashes(texts: list[str], spec: ShingleSpec) -> tuple[np.ndarray, np.ndarray]:
    """Hash every shingle of every (already normalised) text.

    Returns `(hashes uint64, offsets int64)`: document i's shingles are
    `hashes[offsets[i]:offsets[i+1]]` (unsorted, may repeat). A document shorter than
    one shingle gets a single shingle of all it has, so it can still match an identical
    short document; an empty document gets none.

    Documents are hashed in groups of about `CHUNK_BYTES`: the temporaries are ~40 bytes
    per input byte, and below glibc's mmap threshold they reuse freed memory instead of
    page-faulting fresh arrays on every call (4x faster on 15 MB Arrow batches).
    """
    encoded = [t.encode("utf-8") for t in texts]
    parts, start, size = [], 0, 0
    for i, e in enumerate(encoded):
        size += len(e) + 1
        if size >= CHUNK_BYTES or i == len(encoded) - 1:
            parts.append(_encoded_shingle_hashes(encoded[start : i + 1], spec))
            start, size = i + 1, 0
    if not parts:
        return np.zeros(0, dtype=np.uint64), np.zeros(1, dtype=np.int64)
    if len(parts) == 1:
        return parts[0]
    offsets = [parts[0][1]]
    for _, off in parts[1:]:
        offsets.append(off[1:] + offsets[-1][-1])
    return np.concatenate([h for h, _ in parts]), np.concatenate(offsets)


def _encoded_shingle_hashes(encoded: list[bytes], spec: ShingleSpec) -> tuple[np.ndarray, np.ndarray]:
    n_docs = len(encoded)
    lengths = np.fromiter((len(e) for e in encoded), dtype=np.int64, count=n_docs)
    doc_start = np.zeros(n_docs + 1, dtype=np.int64)
    np.cumsum(lengths + 1, out=doc_start[1:])  # one space after each doc separates them
    buf = np.frombuffer(b" ".join(encoded) + b" ", dtype=np.uint8)

    if spec.kind == "word":
        is_space = buf == 0x20
        prev_space = np.empty_like(is_space)
        prev_space[0] = True
        prev_space[1:] = is_space[:-1]
        starts = np.flatnonzero(~is_space & prev_space)
        ends = np.flatnonzero(is_space & ~prev_space)
        units = _span_hashes(buf, starts, ends)
        unit_doc = np.searchsorted(doc_start, starts, side="right") - 1
    else:
        keep = np.ones(buf.shape[0], dtype=bool)
        keep[doc_start[1:] - 1] = False  # drop the separators
        units = _splitmix64(buf[keep].astype(np.uint64) + np.uint64(0x51ED))
        unit_doc = np.repeat(np.arange(n_docs), lengths)

    units_per_doc = np.bincount(unit_doc, minlength=n_docs).astype(np.int64)
    n = spec.n
    total = units.shape[0]
    # n-gram hashes over the flat unit array; those crossing a document boundary are dropped
    if total >= n:
        grams = np.zeros(total - n + 1, dtype=np.uint64)
        mult = np.uint64(1)
        for k in range(n):  # n is small: one vector op per n-gram position, not per shingle
            grams += units[k : total - n + 1 + k] * mult
            mult = np.uint64((int(mult) * int(_P_NGRAM)) & 0xFFFFFFFFFFFFFFFF)
        valid = unit_doc[: total - n + 1] == unit_doc[n - 1 :]
        gram_hashes = _splitmix64(grams[valid])
        gram_docs = unit_doc[: total - n + 1][valid]
    else:
        gram_hashes = np.zeros(0, dtype=np.uint64)
        gram_docs = np.zeros(0, dtype=np.int64)

    short = np.flatnonzero((units_per_doc > 0) & (units_per_doc < n))
    if short.size:
        unit_off = np.zeros(n_docs + 1, dtype=np.int64)
        np.cumsum(units_per_doc, out=unit_off[1:])
        pos = np.arange(total, dtype=np.int64) - np.repeat(unit_off[:-1], units_per_doc)
        contrib = units * _powers(_P_NGRAM, max(n, 1))[np.minimum(pos, n - 1)]
        csum = np.zeros(total + 1, dtype=np.uint64)
        np.cumsum(contrib, out=csum[1:])
        short_hashes = _splitmix64(csum[unit_off[short + 1]] - csum[unit_off[short]])
        gram_hashes = np.concatenate([gram_hashes, short_hashes])
        gram_docs = np.concatenate([gram_docs, short])
        order = np.argsort(gram_docs, kind="stable")  # two sorted runs: a linear merge
        gram_hashes, gram_docs = gram_hashes[order], gram_docs[order]

    offsets = np.zeros(n_docs + 1, dtype=np.int64)
    np.cumsum(np.bincount(gram_docs, minlength=n_docs), out=offsets[1:])
    return gram_hashes, offsets


class MinHasher:
    """`num_perm` multiply-shift permutations drawn from `seed`.

    `signatures(hashes, offsets)` returns a (n_docs, num_perm) uint32 matrix; a document
    without shingles gets all-0xFFFFFFFF (it never collides with a real one because
    the LSH stage skips empty documents).
    """

    def __init__(self, num_perm: int = 128, seed: int = 42, block_elems: int = 1 << 20,
                 keep: int | None = None):
        """`keep`: compute only the first `keep` of the `num_perm` permutations (those the
        LSH bands use: 36 x 7 = 252 of 256 by default), each the same as in a full set."""
        if num_perm < 1:
            raise ValueError(f"num_perm must be >= 1, got {num_perm}")
        if keep is not None and not 1 <= keep <= num_perm:
            raise ValueError(f"keep must be in [1, num_perm={num_perm}], got {keep}")
        rng = np.random.default_rng(seed)
        a = rng.integers(0, 1 << 63, size=num_perm, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
        self.a = a[:keep]
        self.num_perm = self.a.shape[0]
        self.block_elems = block_elems  # bound on num_perm * shingles held at once

    def signatures(self, hashes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        n_docs = offsets.shape[0] - 1
        sig = np.full((n_docs, self.num_perm), np.uint32(0xFFFFFFFF), dtype=np.uint32)
        counts = np.diff(offsets)
        nonempty = np.flatnonzero(counts > 0)
        if nonempty.size == 0:
            return sig
        step = max(1, self.block_elems // self.num_perm)  # shingles per block
        a = self.a[:, None]
        shift = np.uint64(32)
        # group documents into blocks of about `step` shingles (vectorised); a document
        # with more than `step` shingles is hashed alone, in slices
        block = offsets[nonempty] // step
        cuts = np.flatnonzero(np.diff(block)) + 1
        for docs in np.split(nonempty, cuts):
            lo, hi = offsets[docs[0]], offsets[docs[-1] + 1]
            if hi - lo <= 2 * step:
                mins = np.minimum.reduceat(a * hashes[lo:hi][None, :], offsets[docs] - lo, axis=1)
                sig[docs] = (mins >> shift).T
                continue
            for d in docs:  # rare: a block holding at least one very large document
                s0, s1 = offsets[d], offsets[d + 1]
                best = np.full(self.num_perm, np.iinfo(np.uint64).max, dtype=np.uint64)
                for s in range(s0, s1, step):
                    part = (a * hashes[s : min(s1, s + step)][None, :]).min(axis=1)
                    np.minimum(best, part, out=best)
                sig[d] = best >> shift
        return sig
