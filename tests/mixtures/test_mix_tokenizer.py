"""Tokenizer: deterministic BPE training, lossless round trip, EOS per document, load errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from mix_corpus_fixture import corpus_rows

from mixtures.tokenizer import (
    EOS,
    TokenizerError,
    encode_documents,
    load_tokenizer,
    sample_for_training,
    save_tokenizer,
    sha256_file,
    tokenizer_info,
    train_bpe,
)


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return [r["text"] for r in corpus_rows(max_chars=3000)]


def _ids(texts: list[str]) -> list[str]:
    return [f"doc-{i}" for i in range(len(texts))]


def test_train_is_deterministic_and_round_trips(tmp_path, texts):
    sample = sample_for_training(texts, _ids(texts), 300_000, seed=1)
    assert sample == sample_for_training(texts, _ids(texts), 300_000, seed=1)
    # the sample follows the ids, not the row order
    back = sample_for_training(texts[::-1], _ids(texts)[::-1], 300_000, seed=1)
    assert back == sample
    assert sample != sample_for_training(texts, _ids(texts), 300_000, seed=2)
    assert sum(len(t.encode()) for t in sample) <= 300_000
    a = save_tokenizer(train_bpe(sample, 512), tmp_path / "a" / "tokenizer.json")
    b = save_tokenizer(train_bpe(sample, 512), tmp_path / "b" / "tokenizer.json")
    assert sha256_file(a) == sha256_file(b)

    tok = load_tokenizer(a)
    info = tokenizer_info(tok, a)
    assert info["vocab_size"] == 512 and (info["bos_id"], info["eos_id"]) == (0, 1)
    assert tok.token_to_id("<|pad|>") == 2
    docs = [texts[0], "naïve café — ∑ x² 😀", texts[-1]]
    values, offsets = encode_documents(tok, docs, batch_size=2)
    assert values.dtype == np.uint32 and offsets.tolist()[0] == 0 and offsets[-1] == len(values)
    for i, doc in enumerate(docs):
        ids = values[offsets[i] : offsets[i + 1]]
        assert ids[-1] == info["eos_id"] and info["eos_id"] not in ids[:-1]
        assert tok.decode(ids[:-1].tolist()) == doc  # byte-level: lossless, no unknowns
    assert values.max() < 512


def test_load_errors(tmp_path):
    with pytest.raises(TokenizerError, match="not found"):
        load_tokenizer(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(TokenizerError, match=r"bad\.json.*not a valid"):
        load_tokenizer(bad)
    tok = train_bpe(["hello world " * 50], 300)
    data = json.loads(tok.to_str())
    data["added_tokens"] = [t for t in data["added_tokens"] if t["content"] != EOS]
    del data["model"]["vocab"][EOS]
    no_eos = tmp_path / "no_eos.json"
    no_eos.write_text(json.dumps(data))
    with pytest.raises(TokenizerError, match="no <\\|eos\\|>"):
        load_tokenizer(no_eos)


def test_special_token_strings_in_documents_stay_text(tmp_path, texts):
    """A page that spells "<|eos|>" or "<|assistant|>" neither ends itself early nor
    plants a chat turn in pre-training data."""
    tok = train_bpe(sample_for_training(texts, _ids(texts), 100_000, seed=1), 400)
    specials = {tok.token_to_id(t) for t in (EOS, "<|assistant|>", "<|user|>", "<|end|>")}
    doc = "see <|eos|> and <|user|>hi<|end|><|assistant|> in the docs"
    values, offsets = encode_documents(tok, [doc, "plain"])
    first = values[offsets[0] : offsets[1]].tolist()
    assert not specials & set(first[:-1]) and first[-1] == tok.token_to_id(EOS)
    assert tok.decode(first[:-1]) == doc
    assert tok.encode_special_tokens is False  # the setting is restored
