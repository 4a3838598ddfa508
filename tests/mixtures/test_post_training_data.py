"""The bundled post-training sets: valid, small, correct, disjoint, and rebuilt byte for byte."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

from mixtures.chat import ReadStats, read_conversations, read_preferences

DATA = Path(__file__).parents[2] / "data"
OUT = DATA / "post_training"
EQUATION = re.compile(r"^(\d+) ([-+*]) (\d+) = (-?\d+)\. The answer is (-?\d+)\.$")
OPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}


def _builder():
    spec = importlib.util.spec_from_file_location(
        "build_post_training", DATA / "build_post_training.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _checked(text: str) -> tuple[int, bool]:
    """(result, whether it is right) of one "a op b = c. The answer is c." reply."""
    m = EQUATION.match(text)
    assert m, text
    a, op, b, c, answer = m.groups()
    assert c == answer
    return int(c), OPS[op](int(a), int(b)) == int(c)


def test_bundled_sets_read_without_a_skip_and_stay_small():
    sizes = {p.name: p.stat().st_size for p in OUT.iterdir()}
    assert set(sizes) == {
        "sft.jsonl",
        "preferences.jsonl",
        "arithmetic_eval.jsonl",
        "arithmetic_rl.jsonl",
        "code_eval.jsonl",  # hand-written (data/SOURCES.md), not built by the script
    }
    assert sum(sizes.values()) < 1_000_000
    stats = ReadStats("sft")
    conversations = list(read_conversations(OUT / "sft.jsonl", strict=True, stats=stats))
    pairs = list(read_preferences(OUT / "preferences.jsonl", strict=True))
    assert len(conversations) >= 300 and len(pairs) >= 250 and not stats.skipped
    assert {c.domain for c in conversations} == {p.domain for p in pairs} == {"code", "math"}
    assert any(c.messages[0]["role"] == "system" for c in conversations)
    assert any(len(c.messages) >= 4 for c in conversations)  # multi-turn


def test_arithmetic_replies_are_right_and_rejected_ones_wrong():
    problems = set()
    for c in read_conversations(OUT / "sft.jsonl"):
        for m in c.messages:
            if c.domain == "math" and m["role"] == "assistant":
                assert _checked(m["content"])[1]
        problems.add(next(m["content"] for m in c.messages if m["role"] == "user"))
    for p in read_preferences(OUT / "preferences.jsonl"):
        if p.domain == "math":
            right, wrong = _checked(p.chosen), _checked(p.rejected)
            assert right[1] and not wrong[1] and wrong[0] >= 0
        else:
            assert p.chosen.split(": ")[0] == p.rejected.split(": ")[0]  # same signature
        assert p.prompt[-1]["content"] not in problems
    for line in (OUT / "arithmetic_eval.jsonl").read_text().splitlines():
        record = json.loads(line)
        assert set(record) == {"id", "domain", "prompt", "answer"}
        assert record["prompt"] not in problems and int(record["answer"]) >= 0


def test_the_seeded_script_rebuilds_the_files_byte_for_byte(tmp_path):
    builder = _builder()
    files = builder.build(0)
    builder.write(files, tmp_path)
    for name in ("sft.jsonl", "preferences.jsonl", "arithmetic_eval.jsonl", "arithmetic_rl.jsonl"):
        assert (tmp_path / name).read_bytes() == (OUT / name).read_bytes(), name
    assert builder.build(1)["sft.jsonl"] != files["sft.jsonl"]


@pytest.mark.parametrize("name", ["sft.jsonl", "preferences.jsonl"])
def test_docstring_answers_quote_the_bundled_stdlib(name):
    builder = _builder()
    summaries = {f["summary"] for f in builder.stdlib_functions()}
    for line in (OUT / name).read_text().splitlines():
        record = json.loads(line)
        if record["domain"] != "code":
            continue
        if "messages" in record:
            text = next(m["content"] for m in record["messages"] if m["role"] == "assistant")
        else:
            text = record["chosen"]
        assert text.split("`: ", 1)[1] in summaries
