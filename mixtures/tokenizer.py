"""Tokenizer for the stage shards: train a byte-level BPE on curated text, or load one.

Byte-level BPE never meets an unknown character, so every curated document encodes
losslessly. The trained tokenizer.json is hashed into every stage manifest, so a trainer
can refuse shards that were tokenised with a different vocabulary.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

BOS, EOS, PAD = "<|bos|>", "<|eos|>", "<|pad|>"
# Chat roles come after bos/eos/pad (ids 3..6 in a trained tokenizer), so those ids stay.
SYSTEM, USER, ASSISTANT, END = "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"
ROLE_TOKENS = {"system": SYSTEM, "user": USER, "assistant": ASSISTANT}
CHAT_TOKENS = (SYSTEM, USER, ASSISTANT, END)
SPECIAL_TOKENS = (BOS, EOS, PAD, *CHAT_TOKENS)
# The one chat template (`render_chats`): each message is its role token, its content as
# plain text, then END; a generation prompt is the conversation so far plus ASSISTANT, and
# a reply ends at END. The loss falls on assistant content and its END only.
CHAT_TEMPLATE = "{role_token}{content}<|end|> per message; prompt: ...<|assistant|>"


class TokenizerError(ValueError):
    """A tokenizer file is missing, unreadable, or lacks the special tokens shards need."""


def train_bpe(texts: Iterable[str], vocab_size: int, min_frequency: int = 2):
    """Train a byte-level BPE (specials first: bos=0, eos=1, pad=2, then the chat roles);
    deterministic for equal input."""
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


def sample_for_training(
    texts: Sequence[str], ids: Sequence[str], sample_bytes: int, seed: int
) -> list[str]:
    """Whole documents, up to ``sample_bytes`` UTF-8 bytes, taken in the order of a key
    hashed from (seed, id): the same sample whatever the order of the rows."""
    from mixtures.doc_keys import id_hashes

    order = np.argsort(id_hashes(ids, seed, "tokenizer"), kind="stable")
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
    """Encode documents to (uint32 token values, int64 offsets), EOS appended to each.

    Special-token strings inside a document ("<|eos|>", "<|assistant|>" in a web page or a
    tokenizer's source code) are read as plain text: otherwise a document could end itself
    early or plant chat turns in pre-training data.
    """
    eos = tok.token_to_id(EOS)
    if append_eos and eos is None:
        raise TokenizerError(f"tokenizer has no {EOS} token")
    before = tok.encode_special_tokens
    tok.encode_special_tokens = True
    try:
        return _encode_documents(tok, texts, batch_size, eos if append_eos else None)
    finally:
        tok.encode_special_tokens = before


def _encode_documents(
    tok, texts: Sequence[str], batch_size: int, eos: int | None
) -> tuple[np.ndarray, np.ndarray]:
    append_eos = eos is not None
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


def chat_token_ids(tok, where: str | Path = "tokenizer") -> dict[str, int]:
    """Ids of the chat tokens. A tokenizer trained before they existed is refused, naming
    them: adding them now would grow the vocabulary past a pre-trained model's embedding."""
    ids = {t: tok.token_to_id(t) for t in CHAT_TOKENS}
    missing = [t for t, i in ids.items() if i is None]
    if missing:
        raise TokenizerError(
            f"{where}: tokenizer lacks the chat tokens {missing} (it was trained before they "
            "existed); mix and pre-train with a tokenizer trained by this version"
        )
    return ids


def encode_plain(tok, texts: Sequence[str]) -> list[list[int]]:
    """Encode texts with special-token strings read as plain text, so content that spells
    "<|assistant|>" or "<|end|>" cannot open or close a turn."""
    before = tok.encode_special_tokens
    tok.encode_special_tokens = True
    try:
        encode = getattr(tok, "encode_batch_fast", tok.encode_batch)
        return [e.ids for e in encode(list(texts), add_special_tokens=False)]
    finally:
        tok.encode_special_tokens = before


def render_chats(
    tok, conversations: Sequence[Sequence[Mapping[str, str]]], *, generation_prompt: bool = False
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(uint32 token ids, uint8 loss mask) per conversation under `CHAT_TEMPLATE`.

    mask[i] == 1 when token i is a target the loss falls on: assistant content and the END
    closing it; role tokens, system and user turns are context only. `generation_prompt`
    appends ASSISTANT (mask 0), the prompt a reply (`render_replies`) continues.
    """
    ids = chat_token_ids(tok)
    bodies = iter(encode_plain(tok, [m["content"] for conv in conversations for m in conv]))
    out = []
    for conv in conversations:
        tokens: list[int] = []
        mask: list[int] = []
        for message in conv:
            role = ROLE_TOKENS.get(message["role"])
            if role is None:
                raise ValueError(
                    f"unknown chat role {message['role']!r}; known {list(ROLE_TOKENS)}"
                )
            body = next(bodies)
            trainable = int(role == ASSISTANT)
            tokens += [ids[role], *body, ids[END]]
            mask += [0] + [trainable] * (len(body) + 1)
        if generation_prompt:
            tokens.append(ids[ASSISTANT])
            mask.append(0)
        out.append((np.asarray(tokens, dtype=np.uint32), np.asarray(mask, dtype=np.uint8)))
    return out


def render_replies(tok, replies: Sequence[str]) -> list[np.ndarray]:
    """Each assistant reply as it follows a generation prompt: its content, then END
    (prompt + reply is exactly the rendered conversation with that reply appended)."""
    end = chat_token_ids(tok)[END]
    return [np.asarray([*body, end], dtype=np.uint32) for body in encode_plain(tok, replies)]
