"""Parquet input goes through the same validation and dedup as JSONL."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
from corpus_fixture import edit, real_texts

from curation.config import CurationConfig
from curation.pipeline import CurationJob


def test_parquet_input_dedup(spark, tmp_path):
    texts = real_texts(10)
    rows = {
        "id": [f"p{i}" for i in range(10)] + ["copy", "near", None, "p0"],
        "text": texts + [texts[3], edit(texts[4], 80), texts[5] + " tail", "repeated id"],
        "source": ["pq"] * 14,
        "lang": ["en"] * 14,  # an extra column: kept in `meta`
    }
    pq.write_table(pa.table(rows), tmp_path / "in.parquet")
    stats = CurationJob(spark, [str(tmp_path / "in.parquet")], str(tmp_path / "out"),
                        CurationConfig(), mode="dedup").run()
    out = {r["id"]: r for r in pq.read_table(tmp_path / "out" / "dedup").to_pylist()}
    assert stats["counts"]["input"] == 14 and stats["quarantined_by_reason"] == {"duplicate_id": 1}
    # same quality and source: the smaller id keeps
    assert out["p3"]["reason"] == "exact_dup" and out["p3"]["duplicate_of"] == "copy"
    assert out["copy"]["keep"] and out["copy"]["exact_dup_count"] == 2
    cluster = [r for r in out.values() if r["cluster_id"] == out["near"]["cluster_id"]]
    assert "p4" in {r["id"] for r in cluster}  # the edited copy joined its original
    assert sum(r["keep"] for r in cluster) == 1
    assert all(r["cluster_size"] == len(cluster) for r in cluster)
