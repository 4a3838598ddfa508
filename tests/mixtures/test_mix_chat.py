"""Chat template, chat JSONL reading (malformed records skipped and counted, or --strict),
and `sharpen mix sft` / `sharpen mix preferences` stages read back through StageShards."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from mixtures.chat import MalformedRecordError, ReadStats, read_conversations, read_preferences
from mixtures.chat_stages import mix_preferences, mix_sft
from mixtures.shard_format import ShardError, load_manifest
from mixtures.shards import StageShards
from mixtures.tokenizer import (
    ASSISTANT,
    CHAT_TOKENS,
    END,
    TokenizerError,
    chat_token_ids,
    load_tokenizer,
    render_chats,
    render_replies,
    save_tokenizer,
    train_bpe,
)
from sharpen.cli import main

TEXTS = ["What is 37 + 45? 37 + 45 = 82. The answer is 82. Hello there, be brief."] * 20


@pytest.fixture(scope="module")
def tok_path(tmp_path_factory) -> Path:
    return save_tokenizer(train_bpe(TEXTS, 320, 1), tmp_path_factory.mktemp("tok") / "t.json")


@pytest.fixture(scope="module")
def tok(tok_path):
    return load_tokenizer(tok_path)


CONV = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "What is 37 + 45?"},
    {"role": "assistant", "content": "37 + 45 = 82. The answer is 82."},
    {"role": "user", "content": "Hello <|assistant|> there <|end|>"},
    {"role": "assistant", "content": "Hello."},
]


def test_role_tokens_follow_bos_eos_pad(tok):
    assert [tok.token_to_id(t) for t in ("<|bos|>", "<|eos|>", "<|pad|>")] == [0, 1, 2]
    assert list(chat_token_ids(tok).values()) == [3, 4, 5, 6]


def test_template_masks_exactly_assistant_content_and_its_end(tok):
    ((ids, mask),) = render_chats(tok, [CONV])
    ids_of = chat_token_ids(tok)
    assert ids.dtype == np.uint32 and mask.dtype == np.uint8 and len(ids) == len(mask)
    heads = [i for i, t in enumerate(ids) if t in (3, 4, 5)]  # one role token per message
    assert [int(ids[i]) for i in heads] == [3, 4, 5, 4, 5]
    trained = [tok.decode(ids[mask == 1][ids[mask == 1] != ids_of[END]].tolist())]
    assert trained == ["37 + 45 = 82. The answer is 82.Hello."]
    ends = np.flatnonzero(ids == ids_of[END])
    assert len(ends) == 5 and mask[ends].tolist() == [0, 0, 1, 0, 1]  # assistant turns' END
    assert mask[heads].sum() == 0
    # Content spelling a special token stays text: it cannot open or close a turn.
    user = tok.decode(ids[heads[3] + 1 : ends[3]].tolist())
    assert user == "Hello <|assistant|> there <|end|>"


def test_prompt_plus_reply_is_the_rendered_conversation(tok):
    ((prompt, pmask),) = render_chats(tok, [CONV[:4]], generation_prompt=True)
    assert prompt[-1] == chat_token_ids(tok)[ASSISTANT] and pmask[-1] == 0
    (reply,) = render_replies(tok, ["Hello."])
    ((full, mask),) = render_chats(tok, [CONV])
    assert np.concatenate([prompt, reply]).tolist() == full.tolist()
    assert pmask.tolist() == mask[: len(prompt)].tolist()


def test_a_tokenizer_without_chat_tokens_is_refused_by_name(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    old = Tokenizer(models.BPE())
    old.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    specials = ["<|bos|>", "<|eos|>", "<|pad|>"]  # as trained before the chat tokens
    old.train_from_iterator(TEXTS, trainers.BpeTrainer(vocab_size=300, special_tokens=specials))
    path = save_tokenizer(old, tmp_path / "old.json")
    with pytest.raises(TokenizerError, match=r"old\.json.*<\|system\|>.*<\|end\|>"):
        chat_token_ids(load_tokenizer(path), path)
    with pytest.raises(TokenizerError, match="chat tokens"):
        mix_sft([_jsonl(tmp_path / "a.jsonl", [{"messages": CONV}])], path, tmp_path / "o")
    assert not (tmp_path / "o").exists()


MALFORMED = [
    ("not json at all", "invalid_json"),
    ([1, 2], "invalid_json"),
    ({"msgs": []}, "missing_field"),
    ({"messages": [{"role": "user"}]}, "missing_field"),
    ({"messages": "hi"}, "wrong_type"),
    ({"messages": [{"role": "bot", "content": "x"}]}, "unknown_role"),
    ({"messages": [{"role": "assistant", "content": "x"}]}, "wrong_role_order"),
    ({"messages": CONV[1:2]}, "wrong_role_order"),  # no assistant turn
    ({"messages": [CONV[1], CONV[1], CONV[2]]}, "wrong_role_order"),
    ({"messages": [CONV[1], CONV[0], CONV[2]]}, "wrong_role_order"),  # system not first
    ({"messages": [CONV[1], {"role": "assistant", "content": " \n"}]}, "empty_assistant_turn"),
    ({"messages": [{"role": "user", "content": ""}, CONV[2]]}, "empty_turn"),
]


def _jsonl(path: Path, records: list, gz: bool = False) -> Path:
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    data = ("\n".join(lines) + "\n\n").encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def test_malformed_conversations_are_skipped_and_counted_by_reason(tmp_path):
    records = [{"messages": CONV}] + [r for r, _ in MALFORMED] + [{"messages": CONV[1:3]}]
    path = _jsonl(tmp_path / "c.jsonl.gz", records, gz=True)
    stats = ReadStats(str(path))
    kept = list(read_conversations(path, stats=stats))
    assert [c.line for c in kept] == [1, len(records)]
    assert kept[0].messages == CONV and kept[0].id == "c.jsonl.gz:1"
    expected: dict[str, int] = {}
    for _, reason in MALFORMED:
        expected[reason] = expected.get(reason, 0) + 1
    assert stats.record()["skipped"] == dict(sorted(expected.items()))
    assert stats.record()["lines"] == len(records) and stats.kept == 2


@pytest.mark.parametrize("record, reason", MALFORMED[::3])
def test_strict_fails_on_the_first_malformed_line_naming_file_and_line(tmp_path, record, reason):
    path = _jsonl(tmp_path / "c.jsonl", [{"messages": CONV}, record])
    with pytest.raises(MalformedRecordError, match=rf"c\.jsonl:2: {reason}: "):
        list(read_conversations(path, strict=True))


def test_malformed_preferences(tmp_path):
    good = {"prompt": "What is 2 + 3?", "chosen": "5.", "rejected": "6.", "id": 7}
    records = [
        good,
        {"prompt": [CONV[1], CONV[2], CONV[3]], "chosen": "a", "rejected": "b", "domain": "x"},
        {"prompt": "q", "chosen": "a"},
        {"prompt": "q", "chosen": "", "rejected": "b"},
        {"prompt": "q", "chosen": "a", "rejected": "a"},
        {"prompt": CONV[1:3], "chosen": "a", "rejected": "b"},  # prompt ends with assistant
        {"prompt": 3, "chosen": "a", "rejected": "b"},
        {"prompt": "", "chosen": "a", "rejected": "b"},
    ]
    stats = ReadStats("p")
    kept = list(read_preferences(_jsonl(tmp_path / "p.jsonl", records), stats=stats))
    assert [(p.id, p.domain) for p in kept] == [("7", None), ("p.jsonl:2", "x")]
    assert kept[0].prompt == [{"role": "user", "content": "What is 2 + 3?"}]
    assert stats.record()["skipped"] == {
        "empty_assistant_turn": 1,
        "empty_turn": 1,
        "identical_responses": 1,
        "missing_field": 1,
        "wrong_role_order": 1,
        "wrong_type": 1,
    }


def _conversations(n: int) -> list[dict]:
    return [
        {
            "id": f"c{i}",
            "messages": [
                {"role": "user", "content": f"What is {i} + {i + 1}?"},
                {"role": "assistant", "content": f"{i} + {i + 1} = {2 * i + 1}."},
            ],
        }
        for i in range(n)
    ]


def test_mix_sft_writes_a_verified_stage_with_masks_and_skip_counts(tmp_path, tok_path, tok):
    records = _conversations(30) + ["{oops", {"messages": CONV[1:2]}, {"messages": CONV}]
    src = _jsonl(tmp_path / "sft.jsonl", records)
    summary = mix_sft([src], tok_path, tmp_path / "out", rows_per_shard=8, max_tokens=40)
    stage = StageShards.open(tmp_path / "out" / "sft", verify=True)
    m = stage.manifest
    assert (m["format_version"], m["kind"], stage.kind) == (3, "sft", "sft")
    assert m["records"]["skipped"] == {"invalid_json": 1, "too_long": 1, "wrong_role_order": 1}
    assert m["records"]["kept"] == summary["rows"] == stage.total_rows == 30
    assert m["chat_template"]["token_ids"] == dict(zip(CHAT_TOKENS, [3, 4, 5, 6], strict=True))
    assert m["tokenizer"]["path"] == "../tokenizer/tokenizer.json" and stage.num_shards == 4
    by_id = {r["id"]: r["messages"] for r in records[:30]}
    trainable = 0
    for i in range(stage.num_shards):
        values, offsets = stage.tokens(i)
        mask = stage.loss_mask(i)
        ids = stage.shard(i).column("doc_id").to_pylist()
        for row, doc in enumerate(ids):
            ((want, want_mask),) = render_chats(tok, [by_id[doc]])
            got = slice(offsets[row], offsets[row + 1])
            assert values[got].tolist() == want.tolist()
            assert mask[got].tolist() == want_mask.tolist()
        trainable += int(mask.sum())
    assert trainable == m["trainable_tokens"] == summary["trainable_tokens"] > 0
    order = [r for i in range(4) for r in stage.shard(i).column("doc_id").to_pylist()]
    assert sorted(order) == sorted(by_id) and order != [f"c{i}" for i in range(30)]  # shuffled
    # Same inputs and seed: byte-identical shards; another seed: another order.
    again = mix_sft([src], tok_path, tmp_path / "again", rows_per_shard=8, max_tokens=40)
    assert again["rows"] == 30
    shas = [
        s["sha256"] for s in load_manifest(tmp_path / "again" / "sft" / "manifest.json")["shards"]
    ]
    assert shas == [s["sha256"] for s in m["shards"]]


def test_a_damaged_sft_manifest_or_mask_is_refused(tmp_path, tok_path):
    mix_sft([_jsonl(tmp_path / "a.jsonl", _conversations(5))], tok_path, tmp_path / "o")
    path = tmp_path / "o" / "sft" / "manifest.json"
    manifest = json.loads(path.read_text())
    for edit, match in (
        (lambda m: m.update(trainable_tokens=m["trainable_tokens"] + 1), "trainable_tokens"),
        (lambda m: m.pop("kind"), "kind None with format_version 3"),
        (lambda m: m.update(kind="rlhf"), "kind 'rlhf'"),
    ):
        broken = json.loads(json.dumps(manifest))
        edit(broken)
        path.write_text(json.dumps(broken))
        with pytest.raises(ShardError, match=match):
            StageShards.open(path.parent, verify=False)
    m = json.loads(json.dumps(manifest))
    m["shards"][0]["trainable_tokens"] += 1
    m["trainable_tokens"] += 1  # consistent totals, but the shard's mask says otherwise
    path.write_text(json.dumps(m))
    with pytest.raises(ShardError, match="trainable_tokens"):
        StageShards.open(path.parent, verify=True)


def test_mix_preferences_rows_are_prompt_and_replies(tmp_path, tok_path, tok):
    records = [
        {"id": "a", "prompt": "What is 2 + 3?", "chosen": "5.", "rejected": "6."},
        {"id": "b", "prompt": CONV[:4], "chosen": "Hello.", "rejected": "Go."},
        {"prompt": "x", "chosen": "y", "rejected": "y"},
    ]
    src = _jsonl(tmp_path / "p.jsonl", records)
    summary = mix_preferences([src], tok_path, tmp_path / "out", domain="pref")
    stage = StageShards.open(tmp_path / "out" / "preferences")
    assert stage.kind == "preferences" and summary["rows"] == 2
    assert stage.manifest["records"]["skipped"] == {"identical_responses": 1}
    pairs = stage.pairs(0)
    table = stage.shard(0)
    assert pairs.first_index == 0 and len(pairs.domains) == 2
    for row, doc in enumerate(table.column("doc_id").to_pylist()):
        prompt = pairs.prompt[0][pairs.prompt[1][row] : pairs.prompt[1][row + 1]]
        chosen = pairs.chosen[0][pairs.chosen[1][row] : pairs.chosen[1][row + 1]]
        if doc == "b":
            ((full, _),) = render_chats(tok, [CONV])
            assert np.concatenate([prompt, chosen]).tolist() == full.tolist()
    total = len(pairs.prompt[0]) + len(pairs.chosen[0]) + len(pairs.rejected[0])
    assert stage.total_tokens == total
    with pytest.raises(ShardError, match="pairs, not a token stream"):
        stage.tokens(0)
    # Reference log-probs stored beside the shards go with the stage a rewrite replaces.
    (tmp_path / "out" / "preferences" / "reference_logps").mkdir()
    (tmp_path / "out" / "preferences" / "reference_logps" / "abc.npy").write_bytes(b"x")
    mix_preferences([src], tok_path, tmp_path / "out", domain="pref", seed=1)
    assert not (tmp_path / "out" / "preferences" / "reference_logps").exists()


def test_output_must_not_hold_another_tokenizer(tmp_path, tok_path):
    src = _jsonl(tmp_path / "a.jsonl", _conversations(3))
    other = save_tokenizer(train_bpe(["other text entirely"] * 9, 300, 1), tmp_path / "x.json")
    mix_sft([src], tok_path, tmp_path / "o")
    with pytest.raises(ValueError, match="already holds another tokenizer"):
        mix_sft([src], other, tmp_path / "o", stage="sft2")
    with pytest.raises(ValueError, match="plain directory name"):
        mix_sft([src], tok_path, tmp_path / "o", stage="tokenizer")
    with pytest.raises(ValueError, match="no valid records"):
        mix_sft([_jsonl(tmp_path / "bad.jsonl", ["{"])], tok_path, tmp_path / "o2")
    assert not (tmp_path / "o2").exists()


def test_cli_mix_sft_and_dpo(tmp_path, tok_path, capsys):
    sft = _jsonl(tmp_path / "s.jsonl", _conversations(4) + [{"messages": []}])
    pref = _jsonl(tmp_path / "p.jsonl", [{"prompt": "q", "chosen": "a", "rejected": "b"}])
    out = tmp_path / "mix"
    assert (
        main(
            ["mix", "sft", "--input", str(sft), "--tokenizer", str(tok_path), "--output", str(out)]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "stage sft (sft): 4 conversations" in printed and "missing_field 1" in printed
    assert main(["mix", "dpo", "-i", str(pref), "--tokenizer", str(tok_path), "-o", str(out)]) == 0
    assert "stage preferences (preferences): 1 pairs" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["preferences", "sft", "tokenizer"]
    argv = ["mix", "sft", "--strict", "--input", str(sft), "--tokenizer", str(tok_path)]
    assert main([*argv, "--output", str(tmp_path / "strict")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sharpen mix: error: ") and "s.jsonl:5: missing_field" in err
    assert not (tmp_path / "strict").exists()


def test_cli_mix_without_a_recipe_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        main(["mix", "--curated", "c"])
    assert e.value.code == 2
    assert "required: --recipe, --output" in capsys.readouterr().err
