"""Tokenizer for the stage shards: train a byte-level BPE on curated text, or load one.

Byte-level BPE never meets an unknown character, so every curated document encodes
losslessly. The trained tokenizer.json is hashed into every stage manifest, so a trainer
can refuse shards that were tokenised with a different vocabulary.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

BOS, EOS, PAD = "<|bos|>", "<|eos|>", "<|pad|>"
SPECIAL_TOKENS = (BOS, EOS, PAD)


class TokenizerError(ValueError):
    """A tokenizer file is missing, unreadable, or lacks the special tokens shards need."""


def train_bpe(texts: Iterable[str], vocab_size: int, min_frequency: int = 2):
    """Train a byte-level BPE (specials first: bos=0, eos=1, pad=2); deterministic for equal input."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    log.info("trained byte-level BPE: %d tokens", tok.get_vocab_size())
    return tok


def sample_for_training(texts: Sequence[str], sample_bytes: int, seed: int) -> list[str]:
    """A seeded random sample of whole documents, up to ``sample_bytes`` UTF-8 bytes."""
    order = np.random.default_rng(seed).permutation(len(texts))
    picked, total = [], 0
    for i in order:
        text = texts[int(i)]
        data = text.encode("utf-8")
        room = sample_bytes - total
        if len(data) > room:  # the last document is cut to fit, then the sample is full
            if room > 0:
                picked.append(data[:room].decode("utf-8", errors="ignore"))
            break
        picked.append(text)
        total += len(data)
    return picked


def save_tokenizer(tok, path: str | Path) -> Path:
    """Write tokenizer.json (via a temp file + rename) and return its path."""
    return _write_atomic(Path(path), tok.to_str(pretty=True).encode("utf-8"))


def _write_atomic(path: Path, data: bytes) -> Path:
    """Write via a temp file + rename, so a full disk leaves no truncated tokenizer.json."""
    from mixtures.stage_writer import write_error

    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(data)
        tmp.replace(path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise write_error(e, path) from e
    return path


def load_tokenizer(path: str | Path):
    """Load a local tokenizer.json; it must define the eos token used to end documents."""
    from tokenizers import Tokenizer

    path = Path(path)
    if not path.is_file():
        raise TokenizerError(f"{path}: tokenizer file not found")
    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as e:  # the Rust side raises a bare Exception for bad JSON
        raise TokenizerError(f"{path}: not a valid tokenizer.json: {e}") from e
    if tok.token_to_id(EOS) is None:
        raise TokenizerError(f"{path}: tokenizer has no {EOS} token (documents need an EOS)")
    return tok


def install_tokenizer(source: str | Path, dest: str | Path) -> Path:
    """Copy a tokenizer.json into the output directory (so the output is self-contained)."""
    load_tokenizer(source)
    dest = Path(dest)
    if Path(source).resolve() != dest.resolve():
        _write_atomic(dest, Path(source).read_bytes())
    return dest


def sha256_file(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def tokenizer_info(tok, path: str | Path, manifest_path: str | None = None) -> dict:
    """The manifest's tokenizer record: path, sha256, vocab size, bos/eos ids."""
    return {
        "path": manifest_path if manifest_path is not None else str(path),
        "sha256": sha256_file(path),
        "vocab_size": tok.get_vocab_size(),
        "bos_id": tok.token_to_id(BOS),
        "eos_id": tok.token_to_id(EOS),
    }


def encode_documents(
    tok, texts: Sequence[str], batch_size: int = 2048, append_eos: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Encode documents to (uint32 token values, int64 offsets), EOS appended to each."""
    eos = tok.token_to_id(EOS)
    if append_eos and eos is None:
        raise TokenizerError(f"tokenizer has no {EOS} token")
    encode = getattr(tok, "encode_batch_fast", tok.encode_batch)
    pieces: list[np.ndarray] = []
    lengths = np.zeros(len(texts), dtype=np.int64)
    extra = 1 if append_eos else 0
    for start in range(0, len(texts), batch_size):
        batch = list(texts[start : start + batch_size])
        for j, enc in enumerate(encode(batch, add_special_tokens=False)):
            ids = np.asarray(enc.ids, dtype=np.uint32)
            pieces.append(ids)
            if append_eos:
                pieces.append(np.array([eos], dtype=np.uint32))
            lengths[start + j] = len(ids) + extra
        if (start // batch_size) % 20 == 0:
            log.info("tokenised %d / %d documents", min(start + batch_size, len(texts)), len(texts))
    values = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.uint32)
    offsets = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return values, offsets
