"""The full curation job on a small real corpus: outputs, keepers, signals and
determinism. (A job killed mid-way: tests/faults/test_curate_output_faults.py.)"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from corpus_fixture import edit, real_texts, write_jsonl

from curation.config import CurationConfig
from curation.outputs import CURATED_COLUMNS
from curation.pipeline import CurationJob
from curation.quality.heuristic_score import heuristic_quality

OUTPUTS = ("curated", "removed", "quarantine", "dedup")


def _corpus(tmp: Path) -> Path:
    texts = real_texts(60)
    recs = [{"id": f"d{i:03d}", "text": t, "source": "copyright", "domain": "legal"}
            for i, t in enumerate(texts)]
    recs += [
        {"id": "x-exact", "text": texts[1].upper(), "source": "mirror", "domain": "legal"},
        {"id": "a-near", "text": edit(texts[2]), "source": "mirror", "domain": "legal"},
        {"id": "z-near", "text": edit(texts[2], 50), "source": "upstream", "domain": "legal"},
        {"id": "spam", "text": "buy now " * 400, "source": "web", "domain": "web"},
        {"id": "code1", "text": "def f(x):\n    return {x: x}\n" * 30, "source": "py", "domain": "code"},
        '{"id": "bad"',
    ]
    write_jsonl(tmp / "in.jsonl", recs)
    return tmp / "in.jsonl"


CFG = {"source_priority": ["upstream", "copyright"],  # a taxonomy with a domain of our own
       "domains": ["web", "code", "legal"]}


@pytest.fixture(scope="module")
def run(spark, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pipe")
    src = _corpus(tmp)
    stats = CurationJob(spark, [str(src)], str(tmp / "out"),
                        CurationConfig.model_validate(CFG)).run()
    return stats, tmp


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*.parquet"))}


def test_curated_table_contract(run):
    stats, tmp = run
    curated = ds.dataset(tmp / "out" / "curated", format="parquet", partitioning="hive")
    table = curated.to_table()
    assert set(CURATED_COLUMNS) <= set(table.column_names)
    assert sorted(p.name for p in (tmp / "out" / "curated").iterdir() if p.is_dir()) == [
        "domain=code", "domain=legal"]
    rows = table.to_pylist()
    assert len(rows) == stats["counts"]["kept"]
    assert len({r["id"] for r in rows}) == len(rows)
    assert all(r["cluster_size"] >= r["exact_dup_count"] >= 1 for r in rows)


def test_quality_buckets_are_global_and_reported(run):
    """Buckets are cut at global percentiles of quality_score (not per domain): the same
    score falls in the same bucket in every domain, about a fifth of documents each."""
    stats, tmp = run
    rows = ds.dataset(tmp / "out" / "curated", format="parquet",
                      partitioning="hive").to_table().to_pylist()
    q = stats["quality"]
    cuts = q["cutoffs"]
    assert q["buckets"] == 5 and len(cuts) == 4 and cuts == sorted(cuts)
    for r in rows:
        assert r["quality_bucket"] == sum(r["quality_score"] > c for c in cuts)
    scores = sorted(r["quality_score"] for r in rows)
    for i, cut in enumerate(cuts, 1):  # cut i: smallest score with >= i/5 of docs at or below
        assert sum(x <= cut for x in scores) * 5 >= i * len(scores)
        assert sum(x < cut for x in scores) * 5 < i * len(scores)
    table = q["docs_by_domain_and_bucket"]
    assert sum(n for by in table.values() for n in by.values()) == len(rows)
    assert set(table) == {r["domain"] for r in rows}


def test_keepers_and_cluster_signals(run):
    _, tmp = run
    dedup = {r["id"]: r for r in pq.read_table(tmp / "out" / "dedup").to_pylist()}
    # exact duplicate (case only) of d001: the same quality, so priority decides: copyright
    assert dedup["x-exact"]["keep"] is False and dedup["x-exact"]["reason"] == "exact_dup"
    assert dedup["x-exact"]["duplicate_of"] == "d001"
    c = dedup["d002"]["cluster_id"]
    members = [r for r in dedup.values() if r["cluster_id"] == c]
    assert {"d002", "a-near", "z-near"} <= {r["id"] for r in members}
    assert all(r["cluster_size"] == len(members) for r in members)
    assert members[0]["n_sources"] >= 3
    assert sum(r["keep"] for r in members) == 1


def test_filters_write_removed_documents_with_their_rule(run):
    stats, tmp = run
    removed = {r["id"]: r for r in pq.read_table(tmp / "out" / "removed").to_pylist()}
    assert removed["spam"]["reason"].startswith("filter:gopher_repetition")
    assert removed["spam"]["text"].startswith("buy now")
    assert "code1" not in removed  # prose rules do not apply to code
    assert sum(stats["removed_by_filter"].values()) == sum(
        1 for r in removed.values() if r["reason"].startswith("filter:"))
    per_domain = stats["removed_by_filter_and_domain"]
    assert {k: sum(v.values()) for k, v in per_domain.items()} == {
        k: v for k, v in stats["removed_by_filter"].items() if v}
    for rule, by_domain in per_domain.items():
        for domain, n in by_domain.items():
            assert n == sum(1 for r in removed.values()
                            if r["reason"] == f"filter:{rule}" and r["domain"] == domain)
    c = stats["counts"]
    assert c["input"] == c["kept"] + c["removed"] + c["quarantined"] == 66


def test_shuffle_width_is_a_rule_of_the_input_size_unless_set(run):
    stats, _ = run
    assert stats["spark"]["shuffle_partitions"] == 2  # a small input pays 2 tasks per shuffle
    auto, MB = CurationConfig(), 1 << 20
    assert [auto.shuffle_width(n) for n in (0, 64 * MB - 1, 64 * MB, 128 * MB, 10**12)] == [
        2, 2, 4, 8, 8]
    assert CurationConfig(shuffle_partitions=5).shuffle_width(10**12) == 5


@pytest.mark.slow
def test_stats_profile_every_stage_from_spark_task_metrics(run):
    """stats.json says what each stage cost: wall seconds, tasks, task CPU and run time,
    records and bytes read, written and shuffled (Spark's own task metrics)."""
    stats, _ = run
    profile = stats["stages"]["profile"]
    assert set(profile) == set(stats["stages"]["seconds"]) >= {
        "validated", "repeated_ids", "annotated", "exact", "members", "edges", "assigned"}
    for name, p in profile.items():
        assert p["tasks"] > 0 and p["spark_stages"] > 0, name
        assert 0 < p["task_cpu_s"] <= p["task_run_s"] + 1.0, (name, p)
        assert p["wall_s"] <= stats["stages"]["seconds"][name] + 0.01, (name, p)
        if name != "repeated_ids":  # no id repeats in this corpus: an empty table
            assert p["bytes_written"] > 0 and p["records_written"] > 0, (name, p)
    # annotation adds columns, never rows; exact dedup keeps at most what it read
    assert 0 < profile["annotated"]["records_written"] <= profile["validated"]["records_written"]
    assert profile["exact"]["records_written"] <= profile["annotated"]["records_written"]
    assert profile["exact"]["shuffle_bytes_written"] > 0  # exact dedup groups by hash
    # Python workers' CPU (parsing, scoring, MinHash) is counted beside the JVM's
    for name in ("validated", "annotated", "edges"):
        assert profile[name]["python_cpu_s"] > 0, (name, profile[name])
        assert profile[name]["cpu_s"] == pytest.approx(
            profile[name]["task_cpu_s"] + profile[name]["python_cpu_s"], abs=0.002)


def _created_by(stage: Path) -> set[str]:
    return {pq.ParquetFile(f).metadata.created_by.split(" ")[0]
            for f in stage.glob("*.parquet")}


def _rows(root: Path) -> list[tuple]:
    table = ds.dataset(root, format="parquet", partitioning="hive").to_table()
    return sorted(tuple(map(str, r.values())) for r in table.to_pylist())


def test_stages_written_by_spark_give_the_same_rows(run, spark, tmp_path, monkeypatch):
    """Where pyarrow cannot open the output's filesystem, Spark writes `validated`,
    `annotated` and the outputs and the JVM reads the texts: the same rows as the tasks'
    own pyarrow writes (which the fixture's run used)."""
    import curation.io.parquet_output as parquet_output
    import curation.pipeline as pipeline

    _, ref = run
    assert _created_by(ref / "out" / "_stages" / "validated") == {"parquet-cpp-arrow"}
    assert _created_by(ref / "out" / "_stages" / "annotated") == {"parquet-cpp-arrow"}
    monkeypatch.setattr(pipeline, "arrow_filesystem", lambda uri: None)
    monkeypatch.setattr(parquet_output, "arrow_filesystem", lambda uri: None)
    out = tmp_path / "out"
    CurationJob(spark, [str(ref / "in.jsonl")], str(out), CurationConfig.model_validate(CFG)).run()
    assert _created_by(out / "_stages" / "validated") == {"parquet-mr"}
    assert _created_by(out / "_stages" / "annotated") == {"parquet-mr"}
    for name in OUTPUTS:
        assert _rows(out / name) == _rows(ref / "out" / name), name


def test_dedup_mode_scores_only_clustered_documents_and_keeps_the_same_copies(run, spark):
    """`curate dedup` defers quality to the documents of multi-member clusters; it keeps
    the copies the full job keeps (the full job scores every document)."""
    _, tmp = run
    # one more cluster, where quality must beat source priority: the upstream copy carries
    # mojibake (`clean_encoding`), the mirror's is clean
    text = real_texts(70)[65]
    extra = [{"id": "q-clean", "text": text, "source": "mirror", "domain": "legal"},
             {"id": "q-mojibake", "text": text.replace(". ", ". Ã© ", 8), "source": "upstream",
              "domain": "legal"}]
    assert heuristic_quality(extra[0]["text"]) > heuristic_quality(extra[1]["text"])
    src = tmp / "in-dedup.jsonl"
    src.write_text((tmp / "in.jsonl").read_text() + "".join(json.dumps(r) + "\n" for r in extra))
    stats = CurationJob(spark, [str(src)], str(tmp / "out-dedup"),
                        CurationConfig.model_validate(CFG), mode="dedup").run()
    dedup = {r["id"]: r for r in pq.read_table(tmp / "out-dedup" / "dedup").to_pylist()}
    full = {r["id"]: r for r in pq.read_table(tmp / "out" / "dedup").to_pylist()}
    clustered = [i for i, r in dedup.items() if (r["cluster_size"] or 0) > 1]
    assert stats["stages"]["profile"]["keeper_quality"]["records_written"] == len(clustered)
    assert 3 <= len(clustered) < len(full) / 4  # scored a few, not all
    # clusters the full job's filters left whole: the same partition and the same keepers
    removed = set(dedup) - set(full)
    by_cluster: dict[int, list[str]] = {}
    for i in clustered:
        by_cluster.setdefault(dedup[i]["cluster_id"], []).append(i)
    compared = 0
    for ids in by_cluster.values():
        if removed & set(ids):
            continue
        assert len({full[i]["cluster_id"] for i in ids}) == 1
        assert full[ids[0]]["cluster_size"] == len(ids)
        for i in ids:
            assert (dedup[i]["keep"], dedup[i]["reason"], dedup[i]["duplicate_of"]) == (
                full[i]["keep"], full[i]["reason"], full[i]["duplicate_of"]), i
            compared += 1
    assert compared >= 5  # d001 + x-exact, d002 + its two edits, ...
    assert dedup["x-exact"]["duplicate_of"] == "d001"
    assert dedup["q-mojibake"]["duplicate_of"] == "q-clean" and dedup["q-clean"]["keep"]
    # a job stopped after `components` resumes there and re-scores the same keepers
    # (the models are shipped again by the stage itself, not by the skipped annotation)
    before = {name: _digest(tmp / "out-dedup" / name) for name in OUTPUTS[1:]}
    for name in ("_stages/keeper_quality", "_stages/assigned", *OUTPUTS[1:], "stats.json"):
        target = tmp / "out-dedup" / name
        shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
    again = CurationJob(spark, [str(src)], str(tmp / "out-dedup"),
                        CurationConfig.model_validate(CFG), mode="dedup").run()
    assert {"annotated", "edges", "components"} <= set(again["stages"]["resumed"])
    assert "keeper_quality" not in again["stages"]["resumed"]
    assert {name: _digest(tmp / "out-dedup" / name) for name in OUTPUTS[1:]} == before
    assert all(before.values())


def test_rewritten_text_reaches_curated_and_removed(spark, tmp_path):
    """With C4 `modify_text` the annotated stage carries the rewritten text (otherwise it
    does not repeat the text at all): the curated table and removed/ hold the rewrite."""
    paragraphs = [
        "The committee met on a cold morning to review the annual budget of the library.",
        "Several members asked why the reading room had closed early during the winter.",
        "The treasurer explained that heating costs had risen faster than the city grant.",
        "After a long discussion they agreed to extend the opening hours again in spring.",
    ]
    page = "Home | About us | Contact\n" + "\n".join(paragraphs) + (
        "\nPlease enable JavaScript to view the comments on this page.")
    write_jsonl(tmp_path / "in.jsonl", [
        {"id": "page", "text": page, "source": "upstream", "domain": "web"},
        {"id": "page-copy", "text": page, "source": "mirror", "domain": "web"},
        *({"id": f"o{i}", "text": t, "source": "copyright", "domain": "web"}
          for i, t in enumerate(real_texts(8)))])
    cfg = CurationConfig.model_validate({
        "source_priority": ["upstream"],
        "filters": {name: {"enabled": False} for name in ("gopher_repetition", "gopher_quality",
                                                           "fineweb", "code")}
        | {"c4": {"modify_text": True}}})
    CurationJob(spark, [str(tmp_path / "in.jsonl")], str(tmp_path / "out"), cfg).run()
    assert "text" in pq.read_schema(next((tmp_path / "out" / "_stages" / "annotated").glob(
        "*.parquet"))).names
    curated = {r["id"]: r for r in ds.dataset(tmp_path / "out" / "curated",
                                              partitioning="hive").to_table().to_pylist()}
    assert curated["page"]["text"] == "\n".join(paragraphs)
    assert curated["page"]["n_chars"] == len("\n".join(paragraphs))
    removed = {r["id"]: r for r in pq.read_table(tmp_path / "out" / "removed").to_pylist()}
    assert removed["page-copy"]["text"] == "\n".join(paragraphs)
    assert removed["page-copy"]["duplicate_of"] == "page"
