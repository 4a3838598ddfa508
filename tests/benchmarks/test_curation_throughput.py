"""The curation throughput benchmark on a ~2 MB corpus of the committed sample data.

The pieces without Spark (master -> cores, the --docs cut and its truth, recall, the
datasketch child process). The Spark side is `run_curation(mode="dedup")`, tested in
tests/curation; a whole benchmark run here (~50 s of fixed Spark costs even at this size)
would not fit the suite's time budget, and its real runs are in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.curation_throughput import (
    cores_of,
    planted_recall,
    read_clusters,
    run_datasketch,
    scaling,
    select_inputs,
)
from benchmarks.dedup_corpus import Plan, build

SOURCES = ("sample-books", "sample-code", "sample-math", "sample-reference", "sample-web",
           "quality-data")  # committed real text: nothing needed from the machine
PLAN = Plan(size_gb=0.002, seed=0, files=4, max_doc_bytes=32 * 1024, sources=SOURCES)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("corpus") / "c"
    manifest, _ = build(PLAN, out)
    return out, manifest


def test_cores_of_masters() -> None:
    assert [cores_of(m) for m in ("local", "local[1]", "local[2]", "local[3,2]")] == [1, 1, 2, 3]
    assert cores_of("local[*]") >= 1
    with pytest.raises(ValueError):
        cores_of("yarn")


def test_scaling_starts_from_the_fewest_cores_and_pairs_the_repeats() -> None:
    ours = {"local[2]": {"cores": 2, "job_s": 145.0, "job_all": [145.0, 140.9, 150.7],
                         "cpu_s": 261.5, "cpu_all": [261.5, 259.4, 272.6]},
            "local[1]": {"cores": 1, "job_s": 256.9, "job_all": [256.9, 217.4, 272.1],
                         "cpu_s": 276.2, "cpu_all": [276.2, 238.6, 288.0]}}
    s = scaling(ours)
    assert list(s) == ["local[1]->local[2]"]
    s = s["local[1]->local[2]"]
    assert s["speedup_wall"] == round(256.9 / 145.0, 3)
    assert s["speedup_per_repeat"] == [round(256.9 / 145.0, 3), round(217.4 / 140.9, 3),
                                       round(272.1 / 150.7, 3)]
    assert s["cpu_s"] == [276.2, 261.5] and s["cpu_all"][0] == [276.2, 238.6, 288.0]


def test_planted_recall() -> None:
    truth = [{"dup_id": "a#e0", "source_id": "a", "kind": "edit", "jaccard": 0.9},
             {"dup_id": "b#t0", "source_id": "b", "kind": "truncate", "jaccard": 0.8},
             {"dup_id": "c#i0", "source_id": "c", "kind": "insert", "jaccard": 0.5}]  # below t
    res = planted_recall({"a#e0": 1, "a": 1, "b#t0": 2, "b": 3, "c#i0": 4, "c": 4}, truth, 0.7)
    assert (res["pairs"], res["found"], res["recall"]) == (2, 1, 0.5)
    assert res["by_kind"] == {"edit": 1.0, "truncate": 0.0}
    assert planted_recall({"a#e0": None, "a": None}, truth[:1], 0.7)["recall"] == 0.0  # quarantined


def test_docs_cut_and_datasketch_child(corpus, tmp_path: Path) -> None:
    out, manifest = corpus
    full = select_inputs(out, manifest, None, tmp_path)
    assert full.engine == [str(out / "part-*")] and len(full.files) == 4
    assert full.documents == manifest["documents"]["total"]
    cut = select_inputs(out, manifest, 50, tmp_path)
    assert cut.documents == 50 and len(cut.files) == 1
    ids = {json.loads(line)["id"] for line in cut.files[0].read_text().splitlines()}
    assert len(ids) == 50 and 0 < cut.text_bytes < full.text_bytes
    assert all(t["dup_id"] in ids and t["source_id"] in ids for t in cut.truth)
    assert len(cut.truth) < len(full.truth)

    res = run_datasketch(full.files, tmp_path / "ds", 0.7, 256)
    assert res["documents"] == full.documents and res["wall_s"] > 0 and res["peak_rss_mib"] > 0
    cluster, kept = read_clusters(Path(res["dedup_path"]))
    assert kept == res["kept"] < full.documents
    assert planted_recall(cluster, full.truth, 0.7)["recall"] >= 0.8
