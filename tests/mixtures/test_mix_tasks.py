"""RL / evaluation task stages: task JSONL reading (exactly one of answer and tests; malformed
records skipped and counted, or --strict), `sharpen mix tasks` read back through
StageShards.tasks, and the bundled RL set (right answers, no problem shared with the others)."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import pytest

from mixtures.chat import MalformedRecordError, ReadStats, read_tasks
from mixtures.chat_stages import mix_tasks
from mixtures.shard_format import TASKS, ShardError, load_manifest
from mixtures.shards import StageShards, StageWriter
from mixtures.tokenizer import (
    ASSISTANT,
    chat_token_ids,
    load_tokenizer,
    render_chats,
    save_tokenizer,
    tokenizer_info,
    train_bpe,
)
from sharpen.cli import main

DATA = Path(__file__).parents[2] / "data"
TEXTS = ["What is 37 + 45? The answer is 82. def test_add(): assert add(2, 3) == 5"] * 20
SYSTEM = {"role": "system", "content": "Be brief."}
USER = {"role": "user", "content": "What is 2 + 3?"}
TESTS = "def test_add():\n    assert add(2, 3) == 5\n"


@pytest.fixture(scope="module")
def tok_path(tmp_path_factory) -> Path:
    return save_tokenizer(train_bpe(TEXTS, 320, 1), tmp_path_factory.mktemp("tok") / "t.json")


def _jsonl(path: Path, records: list) -> Path:
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    path.write_text("\n".join(lines) + "\n\n", encoding="utf-8")
    return path


MALFORMED = [
    ("{nope", "invalid_json"),
    ({"answer": "5"}, "missing_field"),  # no prompt
    ({"prompt": "q"}, "missing_field"),  # neither answer nor tests
    ({"prompt": "q", "answer": None, "tests": None}, "missing_field"),  # null is absent
    ({"prompt": "q", "answer": "5", "tests": TESTS}, "answer_and_tests"),
    ({"prompt": "q", "answer": 5}, "wrong_type"),
    ({"prompt": 7, "answer": "5"}, "wrong_type"),
    ({"prompt": "q", "tests": ["assert 1"]}, "wrong_type"),
    ({"prompt": "q", "answer": " "}, "empty_target"),
    ({"prompt": "", "answer": "5"}, "empty_turn"),
    ({"prompt": [USER, {"role": "assistant", "content": "5"}], "answer": "5"}, "wrong_role_order"),
    ({"prompt": "q", "answer": "5", "id": True}, "wrong_type"),
]


def test_malformed_tasks_are_skipped_and_counted_by_reason(tmp_path):
    good = [
        {"prompt": "What is 2 + 3?", "answer": "5", "id": 9},
        {"prompt": [SYSTEM, USER], "tests": TESTS, "answer": None, "domain": "code"},
    ]
    path = _jsonl(tmp_path / "t.jsonl", [good[0], *[r for r, _ in MALFORMED], good[1]])
    stats = ReadStats(str(path))
    kept = list(read_tasks(path, stats=stats))
    assert [(t.line, t.id, t.answer, t.tests, t.domain) for t in kept] == [
        (1, "9", "5", None, None),
        (len(MALFORMED) + 2, f"t.jsonl:{len(MALFORMED) + 2}", None, TESTS, "code"),
    ]
    assert kept[0].prompt == [USER] and kept[1].prompt == [SYSTEM, USER]
    expected: dict[str, int] = {}
    for _, reason in MALFORMED:
        expected[reason] = expected.get(reason, 0) + 1
    assert stats.record()["skipped"] == dict(sorted(expected.items()))
    assert stats.record()["lines"] == len(MALFORMED) + 2 and stats.kept == 2


@pytest.mark.parametrize("record, reason", MALFORMED[1::2])
def test_strict_fails_on_the_first_malformed_task_naming_file_and_line(tmp_path, record, reason):
    path = _jsonl(tmp_path / "t.jsonl", [{"prompt": "q", "answer": "1"}, record])
    with pytest.raises(MalformedRecordError, match=rf"t\.jsonl:2: {reason}: "):
        list(read_tasks(path, strict=True))


def _tasks(n: int) -> list[dict]:
    out: list[dict] = []
    for i in range(n):
        if i % 3 == 2:
            out.append(
                {"id": f"t{i}", "domain": "code", "prompt": f"Write add {i}.", "tests": TESTS}
            )
        else:
            prompt = f"What is {i} + {i + 1}?"
            out.append({"id": f"t{i}", "prompt": [SYSTEM, {"role": "user", "content": prompt}]
                        if i % 4 == 0 else prompt, "answer": str(2 * i + 1)})  # fmt: skip
    return out


def test_mix_tasks_writes_prompts_with_answer_or_tests(tmp_path, tok_path):
    tok = load_tokenizer(tok_path)
    long = {"prompt": "What is " + "1 + " * 40 + "1?", "answer": "41"}
    records = _tasks(30) + [long, {"prompt": "q", "answer": "1", "tests": TESTS}]
    src = _jsonl(tmp_path / "tasks.jsonl", records)
    out = tmp_path / "out"
    summary = mix_tasks([src], tok_path, out, rows_per_shard=8, max_tokens=40, domain="math")
    stage = StageShards.open(out / "tasks", verify=True)
    m = stage.manifest
    assert (m["format_version"], m["kind"], stage.kind) == (3, "tasks", TASKS)
    assert m["records"]["skipped"] == {"answer_and_tests": 1, "too_long": 1}
    assert m["records"]["kept"] == summary["rows"] == stage.total_rows == 30
    assert summary["trainable_tokens"] is None and stage.num_shards == 4
    assert stage.domains == ["code", "math"]
    by_id = {r["id"]: r for r in records[:30]}
    assistant, seen, tokens = chat_token_ids(tok)[ASSISTANT], [], 0
    for i in range(stage.num_shards):
        arrays = stage.tasks(i)
        table = stage.shard(i)
        assert arrays.first_index == stage.row_starts[i] == len(seen)
        values, offsets = arrays.prompt
        assert values.dtype == np.uint32 and offsets[0] == 0
        for row, doc in enumerate(table.column("doc_id").to_pylist()):
            record = by_id[doc]
            prompt = record["prompt"]
            messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
            ((want, _),) = render_chats(tok, [messages], generation_prompt=True)
            got = values[offsets[row] : offsets[row + 1]]
            assert got.tolist() == want.tolist() and got[-1] == assistant
            assert arrays.answers[row] == record.get("answer")
            assert arrays.tests[row] == record.get("tests")
            assert (arrays.answers[row] is None) != (arrays.tests[row] is None)
            domain = stage.domains[int(arrays.domains[row])]
            assert domain == record.get("domain", "math")
            assert table.column("source")[row].as_py() == "tasks.jsonl"
            seen.append(doc)
        tokens += int(offsets[-1])
    assert tokens == stage.total_tokens == summary["tokens"]  # tokens are the prompts'
    assert sorted(seen) == sorted(by_id) and seen != [f"t{i}" for i in range(30)]  # shuffled
    with pytest.raises(ShardError, match="holds prompts, not a token stream"):
        stage.tokens(0)
    # Same inputs and seed: byte-identical shards; another seed: another order.
    mix_tasks([src], tok_path, tmp_path / "again", rows_per_shard=8, max_tokens=40, domain="math")
    shas = load_manifest(tmp_path / "again" / "tasks" / "manifest.json")["shards"]
    assert [s["sha256"] for s in shas] == [s["sha256"] for s in m["shards"]]
    mix_tasks([src], tok_path, tmp_path / "other", rows_per_shard=8, max_tokens=40, seed=1)
    other = StageShards.open(tmp_path / "other" / "tasks")
    assert [d for i in range(4) for d in other.shard(i).column("doc_id").to_pylist()] != seen


def test_tasks_wait_for_verification_and_refuse_a_corrupt_shard(tmp_path, tok_path):
    mix_tasks(
        [_jsonl(tmp_path / "t.jsonl", _tasks(12))], tok_path, tmp_path / "o", rows_per_shard=4
    )
    stage_dir = tmp_path / "o" / "tasks"
    stage = StageShards.open(stage_dir, verify="on_read")
    assert stage.hashes_completed == 0
    stage.tasks(1)
    assert stage.hash_requests == [1] and stage.hashes_completed == 1
    # Flip a bit of a doc_id's text: size, footer and offsets hold, only sha256 can tell.
    doc = stage.shard(2).column("doc_id")[0].as_py().encode()
    shard = stage_dir / "shard-00002.arrow"
    data = bytearray(shard.read_bytes())
    data[data.find(doc) + len(doc) - 1] ^= 1
    shard.write_bytes(bytes(data))
    stage = StageShards.open(stage_dir, verify="on_read")
    with pytest.raises(ShardError, match="checksum mismatch"):
        stage.tasks(2)
    with pytest.raises(ShardError, match="checksum mismatch"):
        StageShards.open(stage_dir, verify=True)
    with pytest.raises(ShardError, match="a tasks stage has no preference pairs"):
        StageShards.open(stage_dir, verify=False).pairs(0)


def test_a_hand_written_task_with_both_answer_and_tests_is_refused_on_read(tmp_path, tok_path):
    tok = load_tokenizer(tok_path)
    stage_dir = tmp_path / "tasks"
    with StageWriter(
        stage_dir, stage="tasks", tokenizer=tokenizer_info(tok, tok_path), recipe={}, seed=0,
        lineage={}, kind=TASKS,
    ) as writer:  # fmt: skip
        writer.write(
            {"prompt": [np.array([4, 7, 5], dtype=np.uint32)] * 2, "answer": ["5", "6"],
             "tests": [None, TESTS], "doc_id": ["ok", "both"], "domain": ["math"] * 2,
             "source": ["hand"] * 2}
        )  # fmt: skip
    stage = StageShards.open(stage_dir, verify=True)  # checksums and counts hold
    assert stage.total_tokens == 6
    with pytest.raises(ShardError, match="task 'both' \\(row 1\\) has both of answer and tests"):
        stage.tasks(0)


def test_cli_mix_tasks(tmp_path, tok_path, capsys):
    src = _jsonl(tmp_path / "t.jsonl", _tasks(6) + [{"prompt": "q"}])
    out = tmp_path / "mix"
    argv = ["mix", "tasks", "--input", str(src), "--tokenizer", str(tok_path)]
    assert main([*argv, "--output", str(out), "--stage", "rl"]) == 0
    printed = capsys.readouterr().out
    assert "stage rl (tasks): 6 tasks" in printed and "missing_field 1" in printed
    assert StageShards.open(out / "rl").kind == "tasks"
    assert main([*argv, "--strict", "--output", str(tmp_path / "strict")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sharpen mix: error: ") and "t.jsonl:7: missing_field" in err
    assert not (tmp_path / "strict").exists()


# ---- the bundled RL set ---------------------------------------------------------------


def _builder():
    spec = importlib.util.spec_from_file_location(
        "build_post_training", DATA / "build_post_training.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _problem_parser():
    """question text -> (a, op, b), from the builder's own word-problem templates."""
    builder = _builder()
    patterns = []
    for op, templates in builder.WORD_PROBLEMS.items():
        for t in templates:
            rx = re.escape(t).replace(r"\{a\}", r"(?P<a>\d+)").replace(r"\{b\}", r"(?P<b>\d+)")
            patterns.append((re.compile(f"^{rx}$"), op))

    def parse(question: str) -> tuple[int, str, int]:
        for rx, op in patterns:
            if m := rx.match(question):
                return int(m["a"]), op, int(m["b"])
        raise AssertionError(f"not a bundled word problem: {question!r}")

    return builder, parse


def _first_question(record: dict) -> str:
    messages = record.get("messages") or record["prompt"]
    if isinstance(messages, str):
        return messages
    return next(m["content"] for m in messages if m["role"] == "user")


def test_bundled_rl_tasks_are_right_and_share_no_problem_with_the_other_sets():
    builder, parse = _problem_parser()
    stats = ReadStats("rl")
    tasks = list(
        read_tasks(DATA / "post_training" / "arithmetic_rl.jsonl", strict=True, stats=stats)
    )
    assert len(tasks) == 300 and not stats.skipped and {t.domain for t in tasks} == {"math"}
    rl = set()
    for t in tasks:
        a, op, b = parse(t.prompt[-1]["content"])
        assert t.tests is None and t.answer == str(builder.OPS[op](a, b))
        rl.add((a, op, b))
    assert len(rl) == 300
    system = [t for t in tasks if t.prompt[0]["role"] == "system"]
    assert len(system) == 60 and system[0].prompt[0]["content"] == builder.SYSTEM_PROMPTS[0]
    for name in ("sft.jsonl", "preferences.jsonl", "arithmetic_eval.jsonl"):
        lines = (DATA / "post_training" / name).read_text(encoding="utf-8").splitlines()
        others = {
            parse(_first_question(r)) for r in map(json.loads, lines) if r["domain"] == "math"
        }
        assert len(others) >= 100 and not rl & others, name
    # The eval set is a task file too: `mix tasks` reads it without a skip.
    assert (
        len(list(read_tasks(DATA / "post_training" / "arithmetic_eval.jsonl", strict=True))) == 100
    )


def test_an_sft_style_reply_earns_the_math_reward_of_a_bundled_rl_task():
    pytest.importorskip("math_verify")
    from training.rewards.math_answer import math_reward

    builder, parse = _problem_parser()
    path = DATA / "post_training" / "arithmetic_rl.jsonl"
    for t in list(read_tasks(path))[:3]:
        a, op, b = parse(t.prompt[-1]["content"])
        assert math_reward(builder.solution(a, op, b), t.answer) == 1.0
        assert math_reward(f"{a} {op} {b} = 7. The answer is 7.", t.answer) == 0.0
