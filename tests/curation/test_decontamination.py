"""Decontamination with planted contamination: documents that contain evaluation items are
removed (or flagged), counted per evaluation set; bad evaluation sets are clear errors."""

from __future__ import annotations

import json
import re

import pyarrow.parquet as pq
import pytest
from corpus_fixture import real_texts, write_jsonl

from curation.config import CurationConfig
from curation.pipeline import CurationJob


def _norm(text: str) -> str:
    return " " + " ".join(re.findall(r"\w+", text.lower())) + " "


def _excerpt(texts: list[str], i: int, n: int) -> str:
    """n words of texts[i] none of whose 13-grams (or which, when shorter, as a whole) occur
    in another text: copyright files share whole paragraphs of licence text."""
    others = [_norm(t) for j, t in enumerate(texts) if j != i]
    words = texts[i].split()
    for start in range(0, max(1, len(words) - n)):
        cand = " ".join(words[start:start + n])
        w = re.findall(r"\w+", cand.lower())
        if len(w) < n:
            continue
        k = min(13, len(w))
        grams = [" " + " ".join(w[a:a + k]) + " " for a in range(len(w) - k + 1)]
        if not any(g in o for g in grams for o in others):
            return cand
    raise AssertionError(f"no unique {n}-word excerpt in text {i}")


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    root = tmp_path_factory.mktemp("decon")
    texts = real_texts(24)
    # domain "code": the prose filters skip it, so decontamination decides alone
    write_jsonl(root / "in.jsonl", [{"id": f"d{i:02d}", "text": t, "domain": "code"}
                                    for i, t in enumerate(texts[:20])])
    # "qa": a 30-word passage of d03 and of d07 (plus items from texts not in the corpus)
    write_jsonl(root / "qa.jsonl", [{"text": _excerpt(texts, 3, 30)},
                                    {"text": _excerpt(texts, 7, 30)},
                                    {"text": _excerpt(texts, 21, 40)}])
    # "math": question/answer fields; d11's 10-word phrase is shorter than a 13-gram
    write_jsonl(root / "math.jsonl", [{"question": _excerpt(texts, 11, 10), "answer": ""},
                                      {"question": "two plus two", "answer": "four"},
                                      {"question": _excerpt(texts, 22, 30), "answer": "x"}])
    return root


def _cfg(root, action: str) -> CurationConfig:
    return CurationConfig.model_validate({"decontamination": {
        "eval_sets": {"qa": str(root / "qa.jsonl"), "math": str(root / "math.jsonl")},
        "fields": ["text", "question", "answer"], "action": action}})


def test_planted_contamination_is_removed_and_counted(spark, planted, tmp_path):
    stats = CurationJob(spark, [str(planted / "in.jsonl")], str(tmp_path / "out"),
                        _cfg(planted, "remove")).run()
    assert stats["decontamination"] == {"action": "remove",
                                        "docs_by_eval_set": {"math": 1, "qa": 2}}
    removed = {r["id"]: r["reason"] for r in pq.read_table(tmp_path / "out" / "removed").to_pylist()}
    assert {k for k, v in removed.items() if v == "filter:decontamination"} == {"d03", "d07", "d11"}
    assert stats["removed_by_filter"]["decontamination"] == 3
    c = stats["counts"]
    assert c["input"] == 20 == c["kept"] + c["removed"] + c["quarantined"]


def test_flag_keeps_the_documents_and_names_the_set(spark, planted, tmp_path):
    stats = CurationJob(spark, [str(planted / "in.jsonl")], str(tmp_path / "out"),
                        _cfg(planted, "flag")).run()
    curated = pq.read_table(tmp_path / "out" / "curated").to_pylist()
    flags = {r["id"]: [f for f in r["heuristic_flags"] if f.startswith("decontamination")]
             for r in curated}
    assert {k: v for k, v in flags.items() if v} == {
        "d03": ["decontamination:qa"], "d07": ["decontamination:qa"],
        "d11": ["decontamination:math"]}
    assert "decontamination" not in stats["removed_by_filter"]


@pytest.mark.parametrize("content, message", [
    (None, "not found"), ("", "has no records"), ("{oops\n", ":1: not a JSON line"),
    (json.dumps({"other": "x"}) + "\n", ":1: none of the fields"),
])
def test_bad_eval_sets_are_clear_errors_before_any_work(spark, planted, tmp_path, content, message):
    path = tmp_path / "eval.jsonl"
    if content is not None:
        path.write_text(content)
    cfg = CurationConfig.model_validate({"decontamination": {"eval_sets": {"e": str(path)}}})
    with pytest.raises(ValueError, match=message):
        CurationJob(spark, [str(planted / "in.jsonl")], str(tmp_path / "out"), cfg).run()
    assert not (tmp_path / "out" / "_stages" / "annotated").exists()
