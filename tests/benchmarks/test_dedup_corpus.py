"""The dedup corpus builder at ~3 MB of the committed sample and quality data.

The properties the 1 GB build relies on: the same seed gives byte-identical files, another
seed another corpus, planted counts follow the requested rates, every truth Jaccard is
what the engine's shingling gives, ids are unique, files are balanced, the base set has no
exact copies, and a machine with too little text still reaches the size (top-up).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import random
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from benchmarks.corpus_sources import records_group
from benchmarks.dedup_corpus import Plan, build, reusable
from benchmarks.near_duplicates import KINDS, plant_edit, plant_exact
from curation.dedup.minhash import ShingleSpec, normalize_for_hashing, shingle_hashes

REPO = Path(__file__).resolve().parents[2]
SOURCES = ("sample-books", "sample-code", "sample-math", "sample-reference", "sample-web",
           "quality-data")  # committed real text, so the test needs nothing from the machine
PLAN = Plan(size_gb=0.003, seed=0, files=4, max_doc_bytes=32 * 1024, sources=SOURCES)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("corpus") / "seed0"
    manifest, reused = build(PLAN, out)
    assert not reused
    return out, manifest


def _lines(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def _docs(out: Path, manifest: dict) -> dict[str, tuple[str, dict]]:
    """id -> (file name, record); fails on a repeated id."""
    docs: dict[str, tuple[str, dict]] = {}
    for f in manifest["files"]:
        for rec in _lines(out / f["name"]):
            assert rec["id"] not in docs, rec["id"]
            assert set(rec) == {"id", "text", "source"}
            docs[rec["id"]] = (f["name"], rec)
    return docs


def _shingles(text: str) -> np.ndarray:
    hashes, offsets = shingle_hashes([normalize_for_hashing(text)], ShingleSpec("word", 5))
    return np.unique(hashes[offsets[0]: offsets[1]])


def test_same_seed_is_byte_identical_and_reused(corpus, tmp_path):
    out, manifest = corpus
    again, reused = build(PLAN, tmp_path / "again")
    assert not reused
    names = [f["name"] for f in manifest["files"]] + [manifest["truth"]["name"], "manifest.json"]
    for name in names:
        assert (out / name).read_bytes() == (tmp_path / "again" / name).read_bytes(), name
    for f in manifest["files"]:
        assert hashlib.sha256((out / f["name"]).read_bytes()).hexdigest() == f["sha256"]
    assert build(PLAN, out) == (manifest, True)
    assert reusable(out, replace(PLAN, files=3)) is None  # other parameters: rebuild
    (tmp_path / "again" / names[0]).write_bytes(b"")  # a damaged file: rebuild
    assert reusable(tmp_path / "again", PLAN) is None


def test_other_seed_gives_another_corpus(corpus, tmp_path):
    _, manifest = corpus
    other, _ = build(replace(PLAN, seed=1), tmp_path / "seed1")
    assert not {f["sha256"] for f in manifest["files"]} & {f["sha256"] for f in other["files"]}
    assert other["truth"]["sha256"] != manifest["truth"]["sha256"]


def test_planted_counts_follow_the_rates(corpus):
    _, manifest = corpus
    docs = manifest["documents"]
    n = docs["base"]
    assert n > 250
    for rate, got in ((PLAN.near_rate, docs["base_with_near_copies"]),
                      (PLAN.exact_rate, docs["base_with_exact_copy"])):
        assert abs(got - n * rate) <= 4 * math.sqrt(n * rate * (1 - rate)), (rate, got, n)
    near = docs["planted"] - docs["by_kind"]["exact"]
    assert docs["by_kind"]["exact"] == docs["base_with_exact_copy"]
    assert 1.5 <= near / docs["base_with_near_copies"] <= 2.5  # 1..3 copies, mean 2
    assert all(docs["by_kind"][k] > 0 for k in KINDS), docs["by_kind"]
    assert PLAN.target_bytes <= manifest["text_bytes"]["total"] < PLAN.target_bytes + 200_000
    assert not manifest["sources_exhausted"]


def test_truth_jaccard_is_the_engines(corpus):
    out, manifest = corpus
    docs = _docs(out, manifest)
    truth = _lines(out / manifest["truth"]["name"])
    assert len(truth) == manifest["truth"]["pairs"] == manifest["documents"]["planted"]
    checked = Counter()
    for t in truth:
        assert docs[t["dup_id"]][0] == t["dup_file"]
        assert docs[t["source_id"]][0] == t["source_file"]
        if t["kind"] == "exact":
            dup, src = docs[t["dup_id"]][1]["text"], docs[t["source_id"]][1]["text"]
            assert dup != src and normalize_for_hashing(dup) == normalize_for_hashing(src)
            assert t["jaccard"] == 1.0
        else:
            assert 0.3 < t["jaccard"] < 1.0, t
        if checked[t["kind"]] < 3:  # recompute a few per kind from the written text
            a, b = _shingles(docs[t["source_id"]][1]["text"]), _shingles(docs[t["dup_id"]][1]["text"])
            shared = np.intersect1d(a, b).size
            assert t["jaccard"] == pytest.approx(shared / (a.size + b.size - shared), abs=1e-6)
            assert t["shingles"] == {"source": a.size, "dup": b.size, "shared": shared}
            checked[t["kind"]] += 1
    assert set(checked) == set(KINDS)
    at_t = sum(t["jaccard"] >= manifest["threshold"] for t in truth)
    assert at_t == manifest["truth"]["pairs_ge_threshold"]


def test_ids_files_and_base_set(corpus):
    out, manifest = corpus
    docs = _docs(out, manifest)
    assert len(docs) == manifest["documents"]["total"]
    sizes = [f["bytes"] for f in manifest["files"]]
    longest = max(len(json.dumps(r, ensure_ascii=False).encode()) for _, r in docs.values())
    assert max(sizes) - min(sizes) <= 2 * longest < 0.2 * sum(sizes) / len(sizes)
    # copies land in other files than their source, mostly (shuffled with the seed)
    truth = _lines(out / manifest["truth"]["name"])
    assert sum(t["dup_file"] != t["source_file"] for t in truth) > 0.5 * len(truth)
    # no two base documents are equal after normalisation
    dup_ids = {t["dup_id"] for t in truth}
    keys = [normalize_for_hashing(r["text"]) for i, (_, r) in docs.items() if i not in dup_ids]
    assert len(keys) == manifest["documents"]["base"] == len(set(keys))


def test_top_up_when_the_sources_run_out(tmp_path):
    """Five real documents cannot make 300 kB: further planted copies fill the rest."""
    with gzip.open(REPO / "data/sample/web.jsonl.gz", "rt", encoding="utf-8") as f:
        recs = [r for r in map(json.loads, f) if 1000 < len(r["text"]) < 8000][:5]
    src = tmp_path / "tiny.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in recs))
    plan = Plan(size_gb=0.0003, seed=3, files=2, sources=("tiny",))
    manifest, _ = build(plan, tmp_path / "out", groups=[records_group("tiny", [src])])
    assert manifest["sources_exhausted"] and manifest["topup_rounds"] >= 2
    assert manifest["documents"]["base"] == 5
    assert manifest["text_bytes"]["total"] >= plan.target_bytes
    truth = _lines(tmp_path / "out" / manifest["truth"]["name"])
    assert {t["source_id"] for t in truth} <= {f"tiny:{r['id']}" for r in recs}


def test_edit_and_exact_planting():
    words = [f"w{i % 300}x{i}" for i in range(1000)]
    text = " ".join(words)
    new, params = plant_edit(text, random.Random(0), 0.05)
    assert params["edits"] == 50 == sum(params.get(k, 0) for k in ("replace", "delete", "insert"))
    assert new != text
    src = "Line One\nline two  x\n" + text
    for seed in range(20):
        copy, params = plant_exact(src, random.Random(seed), normalize_for_hashing(src))
        assert copy != src and normalize_for_hashing(copy) == normalize_for_hashing(src)
        assert params["ops"] != ["trailing-space"]  # the guard's fallback is not needed
