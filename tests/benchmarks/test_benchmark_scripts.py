"""Smoke tests: each benchmark script's core functions on a handful of real-ish documents.

The truth builder is checked against brute-force all-pairs Jaccard (it must be exact and
complete); the scorer, the signature timers, the datasketch baseline and the memory
sampler run on tiny inputs; the Spark-backed paths (quality scoring of a real dedup run,
the subprocess runner) are marked slow.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from benchmarks.dedup_labelled_set import (
    Doc,
    jaccard,
    shingle_sets,
    similar_pairs,
    write_labelled_set,
)
from benchmarks.dedup_quality import read_dedup, score
from benchmarks.minhash_speed import (
    chunk_text,
    datasketch_dedup,
    datasketch_shingles,
    ours_signatures,
    signature_benchmark,
    speed_documents,
)
from benchmarks.process_tree_memory import TreeSampler
from curation.dedup.minhash import ShingleSpec, normalize_for_hashing, shingle_hashes

BASE = ("The quick brown fox jumps over the lazy dog while the farmer watches from the porch "
        "and counts the sheep that wander across the green hill behind the old stone barn. ")


def _docs() -> list[Doc]:
    words = (BASE * 3).split()
    edited = list(words)
    edited[7] = "cat"  # one word changed: high Jaccard
    half = words[:12] + [f"other{i}" for i in range(30)]  # shares a few shingles: J < 0.5
    return [
        Doc("a", " ".join(words), "s1"),
        Doc("b", " ".join(words).upper(), "s2"),  # exact after normalisation
        Doc("c", " ".join(edited), "s1"),
        Doc("d", " ".join(half), "s2"),
        Doc("e", "import os\nimport sys\n\ndef main():\n    return os.getcwd()\n", "code"),
        Doc("f", "short text", "code"),
        Doc("g", "short text", "code"),
    ]


def test_similar_pairs_is_exact_and_complete() -> None:
    docs = _docs()
    sets = shingle_sets([d.text for d in docs], ShingleSpec("word", 5))
    for t in (0.3, 0.5, 0.8):
        ii, jj, js = similar_pairs(sets, t)
        got = {(int(i), int(j)): round(float(x), 12) for i, j, x in zip(ii, jj, js, strict=True)}
        brute = {(i, j): round(jaccard(sets[i], sets[j]), 12)
                 for i, j in itertools.combinations(range(len(sets)), 2)
                 if jaccard(sets[i], sets[j]) >= t}
        assert got == brute
    assert (0, 1) in got and (5, 6) in got  # exact copies found


def test_shingle_sets_match_engine_hashes() -> None:
    texts = [d.text for d in _docs()]
    sets = shingle_sets(texts, ShingleSpec("word", 5), batch=3)
    hashes, offsets = shingle_hashes([normalize_for_hashing(t) for t in texts], ShingleSpec("word", 5))
    for i, s in enumerate(sets):
        assert np.array_equal(s, np.unique(hashes[offsets[i] : offsets[i + 1]]))


def test_write_labelled_set_and_score(tmp_path: Path) -> None:
    docs = _docs()
    summary = write_labelled_set(docs, tmp_path, ShingleSpec("word", 5), 0.5)
    assert summary["documents"] == len(docs) and summary["pairs_exact_1.0"] >= 2
    truth = pq.read_table(tmp_path / "truth_pairs.parquet").to_pydict()
    sets = dict(zip([d.id for d in docs], shingle_sets([d.text for d in docs], ShingleSpec()),
                    strict=True))
    # a hand-made dedup result: a,b,c clustered (keeper a); d wrongly removed into that cluster
    dedup = {"id": list("abcdefg"), "cluster_id": [0, 0, 0, 0, 4, 5, 5],
             "keep": [True, False, False, False, True, True, False],
             "reason": [None, "exact_dup", "near_dup", "near_dup", None, None, "exact_dup"]}
    res = score(dedup, truth, sets, threshold=0.7)
    assert res["recall_ge_0.8"] == 1.0 and res["removed"] == 4
    assert res["wrong_removals"] == 1 and res["wrong_removal_rate"] == pytest.approx(0.25)
    dedup["cluster_id"][2] = 2  # c split off: the (a, c) and (b, c) pairs are now missed
    res = score(dedup, truth, sets, threshold=0.7)
    assert res["recall_ge_0.8"] < 1.0 and res["missed_pairs_ge_0.8"] == 2


def test_signature_benchmark_and_datasketch_baseline(tmp_path: Path) -> None:
    docs = _docs()
    texts = [normalize_for_hashing(d.text) for d in docs]
    sh = datasketch_shingles(texts)
    hashes, offsets = shingle_hashes(texts, ShingleSpec("word", 5))
    assert [len(set(s)) for s in sh] == [np.unique(hashes[offsets[i]:offsets[i + 1]]).size
                                         for i in range(len(texts))]
    assert ours_signatures(texts, 16).shape == (len(texts), 16)
    res = signature_benchmark(texts, [16], repeats=1)
    assert res["perm_16"]["ratio_cpu"] > 0
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps({"id": d.id, "text": d.text}) + "\n" for d in docs))
    info = datasketch_dedup(path, tmp_path / "ds", threshold=0.7, num_perm=64)
    out = pq.read_table(tmp_path / "ds/dedup.parquet").to_pydict()
    cluster = dict(zip(out["id"], out["cluster_id"], strict=True))
    assert cluster["a"] == cluster["b"] and cluster["f"] == cluster["g"]
    assert cluster["e"] != cluster["a"] and info["kept"] < len(docs)


def test_chunking_and_speed_documents(tmp_path: Path) -> None:
    text = "".join(f"line {i} " + "x" * 60 + "\n" for i in range(200))
    pieces = chunk_text(text, 2048)
    assert "".join(pieces) == text and all(len(p) >= 2048 for p in pieces[:-1])
    path = tmp_path / "docs.jsonl"
    path.write_text(json.dumps({"id": "t", "text": text, "source": "s"}) + "\n")
    docs = speed_documents(path, 3, min_bytes=100)
    assert [d["id"] for d in docs] == ["t#0", "t#1", "t#2"]


def test_tree_sampler_sees_child_memory() -> None:
    code = "import time; x = bytearray(64 << 20); time.sleep(1.0)"
    proc = subprocess.Popen([sys.executable, "-c", code])
    with TreeSampler(os.getpid(), interval_s=0.05) as s:
        proc.wait()
        time.sleep(0.1)
    peaks = s.result.as_mib()
    assert s.result.samples > 3
    assert max(peaks["peak_single_mib"].values()) >= 64


@pytest.mark.slow
def test_quality_on_a_real_dedup_run(tmp_path: Path, spark) -> None:
    from benchmarks.dedup_quality import run_variant

    docs = _docs()
    write_labelled_set(docs, tmp_path / "set", ShingleSpec("word", 5), 0.5)
    stats, _ = run_variant(tmp_path / "set/docs.jsonl", tmp_path / "run", {}, "local[2]")
    truth = pq.read_table(tmp_path / "set/truth_pairs.parquet").to_pydict()
    sets = dict(zip([d.id for d in docs], shingle_sets([d.text for d in docs], ShingleSpec()),
                    strict=True))
    res = score(read_dedup(tmp_path / "run"), truth, sets, stats["lsh"]["threshold"])
    assert res["documents"] == len(docs)
    assert res["recall_ge_0.8"] == 1.0 and res["wrong_removals"] == 0
