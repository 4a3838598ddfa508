"""A large .jsonl.gz is one reading task (gzip does not split), but its lines are spread
over many parsing tasks, so one big file does not serialise the job; the records are
exactly those of the same file read uncompressed in byte-range splits."""

from __future__ import annotations

import gzip
from pathlib import Path

from pyspark.sql import functions as F

from curation.config import CurationConfig
from curation.io.jsonl_splits import plan_splits
from curation.io.reader import read_documents, split_bytes_gz

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample" / "books.jsonl.gz"
COLUMNS = ("id", "source", "domain", "text", "meta", "q_reason")


def _read(spark, path: Path, cfg: CurationConfig):
    splits = plan_splits([(str(path), path.stat().st_size)], cfg.input_split_mb << 20)
    return splits, read_documents(spark, splits, [], cfg)


def test_large_gzip_is_parsed_in_parallel_with_the_same_records(spark, tmp_path):
    cfg = CurationConfig(input_split_mb=1)
    assert SAMPLE.stat().st_size > split_bytes_gz(cfg)  # 1.4 MB compressed > 256 KB
    plain = tmp_path / "books.jsonl"
    plain.write_bytes(gzip.decompress(SAMPLE.read_bytes()))

    splits, gz = _read(spark, SAMPLE, cfg)
    assert len(splits) == 1  # one reading task ...
    assert gz.rdd.getNumPartitions() >= spark.sparkContext.defaultParallelism * 2  # many parsers
    plain_splits, flat = _read(spark, plain, cfg)
    assert len(plain_splits) > 1  # byte-range splits: read and parsed in one step each

    def records(df):
        docs = df.where(F.col("kind") == "doc").select(*COLUMNS)
        return sorted(tuple(r) for r in docs.collect())

    got = records(gz)
    assert len(got) > 50 and got == records(flat)
    summary = gz.where(F.col("kind") == "split").collect()
    assert len(summary) == 1 and summary[0]["pos"] == len(got) and summary[0]["q_detail"] is None
