"""Fault matrix, curation inputs and settings: oversized records, corrupt files, null
text, Spark settings that must reach the JVM, invalid YAML (docs/reliability.md)."""

from __future__ import annotations

import gzip
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from curate_fault_fixture import real_texts, sharpen, write_jsonl

from curation.config import CurationConfig
from curation.pipeline import CurationJob
from curation.spark_session import JVM_OPTIONS, SparkSettingError, get_spark
from sharpen.cli import main


def _write_with_big_line(path: Path, big_mb: int, good: list[dict]) -> None:
    """Good records around one record of `big_mb` MB, written without holding it whole."""
    half = len(good) // 2
    with open(path, "wb") as f:
        for r in good[:half]:
            f.write(json.dumps(r).encode() + b"\n")
        f.write(b'{"id": "huge", "text": "')
        block = b"lorem ipsum " * (1 << 16)  # 768 KiB
        for _ in range(big_mb * (1 << 20) // len(block) + 1):
            f.write(block)
        f.write(b'"}\n')
        for r in good[half:]:
            f.write(json.dumps(r).encode() + b"\n")


def _good(n: int) -> list[dict]:
    return [{"id": f"g{i:02d}", "text": t} for i, t in enumerate(real_texts(n))]


def _quarantine(out: Path) -> list[dict]:
    return pq.read_table(out / "quarantine").to_pylist()


@pytest.mark.slow
def test_50mb_line_is_quarantined_by_the_cli_with_default_memory(tmp_path):
    _write_with_big_line(tmp_path / "in.jsonl", 50, _good(20))
    r = sharpen("curate", "dedup", "--input", str(tmp_path / "in.jsonl"),
                "--output", str(tmp_path / "out"))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "in 21 = kept " in r.stdout and " + quarantined 1\n" in r.stdout
    q = _quarantine(tmp_path / "out")
    assert [(x["reason"], x["id"]) for x in q] == [("text_too_large", "huge")]
    assert "not decoded" in q[0]["detail"] and len(q[0]["raw"]) <= 2048
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    c = stats["counts"]
    assert c["reconciled"] and c["read_from_files"] == 21 and c["kept"] + c["removed"] == 20
    assert stats["spark"]["driver_max_heap_mb"] > 3000  # the default 4g reached the JVM


@pytest.mark.slow
def test_500mb_line_is_quarantined_and_good_records_kept(spark, tmp_path):
    _write_with_big_line(tmp_path / "in.jsonl", 500, _good(20))
    stats = CurationJob(spark, [str(tmp_path / "in.jsonl")], str(tmp_path / "out"),
                        CurationConfig(), mode="dedup").run()
    c = stats["counts"]
    assert (c["input"], c["read_from_files"], c["quarantined"], c["kept"] + c["removed"]) == (
        21, 21, 1, 20)
    assert [x["reason"] for x in _quarantine(tmp_path / "out")] == ["text_too_large"]
    dedup = pq.read_table(tmp_path / "out" / "dedup").to_pylist()  # every good record, decided
    assert sorted(r["id"] for r in dedup if r["reason"] != "quarantine:text_too_large") == [
        f"g{i:02d}" for i in range(20)]


def test_corrupt_gzip_files_are_contained(spark, tmp_path):
    good = _good(30)
    corpus = tmp_path / "in"
    corpus.mkdir()
    write_jsonl(corpus / "ok.jsonl", good[:10])
    write_jsonl(corpus / "whole.jsonl.gz", good[10:20])
    data = (corpus / "whole.jsonl.gz").read_bytes()
    (corpus / "truncated.jsonl.gz").write_bytes(data[: len(data) * 2 // 3])
    (corpus / "whole.jsonl.gz").unlink()
    write_jsonl(corpus / "plain.jsonl", good[20:30])
    (corpus / "plain.jsonl").rename(corpus / "notgzip.jsonl.gz")  # plain text named .gz
    stats = CurationJob(spark, [str(corpus)], str(tmp_path / "out"), CurationConfig(),
                        mode="dedup").run()
    with gzip.open(corpus / "truncated.jsonl.gz", "rb") as f:
        readable = 0
        try:
            for _ in f:
                readable += 1
        except EOFError:
            pass
    failed = {Path(f["file"]).name: f for f in stats["failed_files"]}
    assert set(failed) == {"truncated.jsonl.gz", "notgzip.jsonl.gz"}
    assert failed["truncated.jsonl.gz"]["records_kept_before_error"] == readable > 0
    assert failed["notgzip.jsonl.gz"]["records_kept_before_error"] == 0
    assert "EOFError" in failed["truncated.jsonl.gz"]["error"]
    assert "BadGzipFile" in failed["notgzip.jsonl.gz"]["error"]
    q = [x for x in _quarantine(tmp_path / "out") if x["reason"] == "corrupt_file"]
    assert sorted(Path(x["file"]).name for x in q) == sorted(failed)
    assert all(Path(x["file"]).name in x["file"] and x["detail"] for x in q)
    c = stats["counts"]
    assert c["input"] == 10 + readable + 2 == c["kept"] + c["removed"] + c["quarantined"]
    assert c["quarantined"] == 2


def test_null_text_is_reported_as_null_not_missing(spark, tmp_path):
    write_jsonl(tmp_path / "in.jsonl", [*_good(3), {"id": "n", "text": None}, {"id": "m"}])
    CurationJob(spark, [str(tmp_path / "in.jsonl")], str(tmp_path / "out"), CurationConfig(),
                mode="dedup").run()
    reasons = {x["id"]: (x["reason"], x["detail"]) for x in _quarantine(tmp_path / "out")}
    assert reasons == {"n": ("null_text", "`text` is null"), "m": ("missing_text", "no `text` field")}


@pytest.mark.slow
def test_spark_settings_from_config_and_conf_reach_the_jvm(tmp_path):
    write_jsonl(tmp_path / "in.jsonl", _good(5))
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("spark:\n  spark.driver.memory: 1g\n  spark.executor.memory: 1234m\n")
    args = ("curate", "dedup", "--input", str(tmp_path / "in.jsonl"), "--config", str(cfg))
    with ThreadPoolExecutor(max_workers=2) as pool:  # two JVMs at once: mostly start-up
        runs = [pool.submit(sharpen, *args, "--output", str(tmp_path / "a")),
                pool.submit(sharpen, *args, "--output", str(tmp_path / "b"),
                            "--conf", "spark.driver.memory=1536m")]
    for run in runs:
        assert run.result().returncode == 0, run.result().stderr[-3000:]
    spark_a = json.loads((tmp_path / "a" / "stats.json").read_text())["spark"]
    assert 800 < spark_a["driver_max_heap_mb"] <= 1024
    assert spark_a["conf"]["spark.executor.memory"] == "1234m"
    spark_b = json.loads((tmp_path / "b" / "stats.json").read_text())["spark"]
    assert 1200 < spark_b["driver_max_heap_mb"] <= 1536  # --conf wins over the config


def test_a_static_setting_that_cannot_apply_is_an_error(spark):
    with pytest.raises(SparkSettingError, match="spark.driver.memory=3g"):
        get_spark(user_conf={"spark.driver.memory": "3g"})
    get_spark(user_conf={"spark.sql.shuffle.partitions": "4"})  # runtime keys apply


def test_our_jvm_runs_with_the_default_jvm_options(spark):
    """C1-only JIT and the parallel collector (`JVM_OPTIONS`) reach the running JVM."""
    bean = spark._jvm.java.lang.management.ManagementFactory.getRuntimeMXBean()
    assert set(JVM_OPTIONS.split()) <= set(bean.getInputArguments())


def test_invalid_yaml_config_is_one_line_with_file_and_line(tmp_path, capsys):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("dedup:\n  threshold: 0.8\n  ngram: [5\nfilters: {}\n")
    rc = main(["curate", "--input", str(tmp_path), "--output", str(tmp_path / "o"),
               "--config", str(cfg)])
    err = capsys.readouterr().err
    assert rc == 2 and f"{cfg}:4:" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_bad_conf_option_is_one_line(tmp_path, capsys):
    rc = main(["curate", "--input", str(tmp_path), "--output", str(tmp_path / "o"),
               "--conf", "driver.memory"])
    err = capsys.readouterr().err
    assert rc == 2 and "spark.KEY=VALUE" in err and len(err.strip().splitlines()) == 1

