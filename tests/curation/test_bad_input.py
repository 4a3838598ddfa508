"""Bad input never crashes the job: each bad record is quarantined with its reason and
the counts reconcile (in = kept + removed + quarantined)."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
from corpus_fixture import real_texts, write_jsonl
from pyspark.sql import functions as F

from curation import pipeline
from curation.config import CurationConfig
from curation.pipeline import CurationJob


@pytest.fixture(scope="module")
def bad_run(spark, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bad")
    texts = real_texts(12)
    records = [{"id": f"ok{i}", "text": t, "source": "copyright"} for i, t in enumerate(texts)]
    records += [
        '{"id": "broken", "text": "unterminated',         # malformed JSON
        b'{"id": "latin1", "text": "caf\xe9 cr\xe8me"}',   # invalid UTF-8
        {"id": "empty", "text": "   "},                    # empty
        {"id": "nul", "text": "abc\u0000def" * 10},         # binary (NUL)
        {"id": "ctrl", "text": "\u0001\u0002\u0003\u0004x" * 40},  # binary (control chars)
        {"id": "huge", "text": "word " * 60_000},           # over the size limit
        {"id": "notext"},                                  # missing text
        {"id": "numtext", "text": 42},                     # wrong type
        {"id": ["list"], "text": "an id of the wrong type"},
        '"just a string"',                                 # not an object
        '{"id": "surrogate", "text": "bad \\ud800 surrogate"}',
        {"text": texts[0] + "\nno id: gets a stable hash id"},  # missing id -> hash
        {"id": "ok3", "text": "a repeated id, second occurrence"},  # repeated id
        "",                                                 # blank line: not a record
    ]
    write_jsonl(tmp / "in.jsonl", records)
    write_jsonl(tmp / "more.jsonl.gz", [{"id": "gz1", "text": texts[5] + " gz"}, "{bad"])
    cfg = CurationConfig.model_validate({"validation": {"max_text_chars": 200_000}})
    job = CurationJob(spark, [str(tmp / "in.jsonl"), str(tmp / "more.jsonl.gz")],
                      str(tmp / "out"), cfg, mode="dedup")
    return job.run(), tmp / "out"


def test_every_bad_record_is_quarantined_with_its_reason(bad_run):
    stats, out = bad_run
    q = pq.read_table(out / "quarantine").to_pylist()
    reasons = sorted(r["reason"] for r in q)
    assert reasons == sorted([
        "malformed_json", "malformed_json", "invalid_utf8", "empty_text", "binary_text",
        "binary_text", "text_too_large", "missing_text", "text_not_string", "bad_id",
        "not_an_object", "invalid_unicode", "duplicate_id",
    ])
    assert all(r["detail"] for r in q) and all(r["file"] for r in q)
    dup = next(r for r in q if r["reason"] == "duplicate_id")
    assert dup["id"] == "ok3" and "already read" in dup["detail"]
    assert stats["quarantined_by_reason"]["binary_text"] == 2


def test_counts_reconcile_and_every_record_is_in_dedup_output(bad_run):
    stats, out = bad_run
    c = stats["counts"]
    assert c["input"] == 12 + 13 + 2  # blank line excluded
    assert c["input"] == c["kept"] + c["removed"] + c["quarantined"]
    dedup = pq.read_table(out / "dedup").to_pylist()
    assert len(dedup) == c["input"]
    assert sum(r["keep"] for r in dedup) == c["kept"]
    assert json.loads((out / "stats.json").read_text())["counts"] == c


def test_missing_id_gets_a_stable_hash_and_good_records_survive(bad_run):
    _, out = bad_run
    rows = pq.read_table(out / "dedup").to_pylist()
    kept = {r["id"] for r in rows if r["keep"]}
    assert {f"ok{i}" for i in range(12)} <= {r["id"] for r in rows if r["cluster_id"] is not None}
    assert "ok3" in kept  # the first occurrence of the repeated id
    assert "gz1" in {r["id"] for r in rows}  # the .gz input was read
    assert any(r["id"] and r["id"].startswith("h-") and r["cluster_id"] is not None for r in rows)


def test_unreadable_input_path_is_a_clear_error(spark, tmp_path):
    job = CurationJob(spark, [str(tmp_path / "missing.jsonl")], str(tmp_path / "o"),
                      CurationConfig(), mode="dedup")
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        job.run()


@pytest.mark.parametrize("broadcast_limit", [2_000_000, 0])
def test_repeated_ids_keep_the_first_copy_broadcast_or_shuffled(spark, tmp_path, monkeypatch,
                                                                broadcast_limit):
    """Later copies of an id are quarantined, in input order, whether the table of
    repeated ids is broadcast (small) or shuffle-joined (a messy input)."""
    monkeypatch.setattr(pipeline, "BROADCAST_REPEATED_IDS", broadcast_limit)
    rows = [("a", "f1", 0, 0, None), ("b", "f1", 0, 1, None), ("a", "f1", 0, 2, None),
            ("a", "f0", 64, 0, None), ("c", "f1", 0, 3, "malformed_json"), ("c", "f1", 0, 4, None),
            ("d", "f2", 0, 0, None)]
    docs = spark.createDataFrame(
        [(i, f"text {k}", f, b, p, q, None, None) for k, (i, f, b, p, q) in enumerate(rows)],
        "id string, text string, file string, block long, pos long, q_reason string, "
        "q_detail string, q_raw string")
    job = CurationJob(spark, [str(tmp_path)], str(tmp_path / "out"), CurationConfig())
    repeated = job._repeated_ids(docs.withColumn("kind", F.lit("doc")))
    marked = {(r["id"], r["file"], r["pos"]): r["q_reason"]
              for r in job._mark_repeated(docs, repeated).collect()}
    assert marked == {("a", "f1", 0): "duplicate_id", ("b", "f1", 1): None,
                      ("a", "f1", 2): "duplicate_id", ("a", "f0", 0): None,
                      ("c", "f1", 3): "malformed_json", ("c", "f1", 4): None,
                      ("d", "f2", 0): None}
