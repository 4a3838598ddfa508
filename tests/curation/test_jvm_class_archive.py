"""The JVM class archive (curation/jvm_class_archive.py): mapped only when complete and made
for this pyspark and these JVM options, and a job's outputs are the same with or without it."""

from __future__ import annotations

import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from curation.config import CurationConfig
from curation.jvm_class_archive import _key, archive_path, java_options
from curation.pipeline import CurationJob
from curation.spark_session import JVM_OPTIONS

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "faults"))
from curate_fault_fixture import output_digest, sharpen, write_corpus  # noqa: E402


def _write(dir_: Path, size: int, key: dict) -> Path:
    path = dir_ / "spark-driver-classes.jsa"
    path.write_bytes(b"\0" * size)
    path.with_suffix(".json").write_text(json.dumps({"key": key, "bytes": size}))
    return path


def test_only_a_complete_archive_of_this_key_is_mapped(tmp_path, monkeypatch):
    monkeypatch.setenv("SHARPEN_JVM_ARCHIVE_DIR", str(tmp_path))
    monkeypatch.delenv("SHARPEN_JVM_ARCHIVE", raising=False)
    assert archive_path().parent == tmp_path
    assert java_options(JVM_OPTIONS) == ""  # none built
    path = _write(tmp_path, 4096, _key(JVM_OPTIONS))
    flags = java_options(JVM_OPTIONS)
    assert f"-XX:SharedArchiveFile={path}" in flags and "-Xlog:cds=off" in flags
    assert java_options("-XX:+UseG1GC") == ""  # made under other JVM options
    with path.open("r+b") as f:  # cut short (a full disk, a killed build): the JVM would crash
        f.truncate(1000)
    assert java_options(JVM_OPTIONS) == ""
    _write(tmp_path, 4096, {**_key(JVM_OPTIONS), "pyspark": "0.0.0"})  # another pyspark
    assert java_options(JVM_OPTIONS) == ""
    _write(tmp_path, 4096, _key(JVM_OPTIONS))
    monkeypatch.setenv("SHARPEN_JVM_ARCHIVE", "0")
    assert java_options(JVM_OPTIONS) == ""
    (tmp_path / "spark-driver-classes.json").write_text("{not json")
    monkeypatch.delenv("SHARPEN_JVM_ARCHIVE")
    assert java_options(JVM_OPTIONS) == ""


@pytest.mark.slow
def test_jobs_with_and_without_the_archive_write_the_same_bytes(spark, tmp_path):
    """A CLI job without the archive beside one in this test session's JVM, which mapped
    it (the session is built by `get_spark` like a job's): the same bytes."""
    if not java_options(JVM_OPTIONS):
        pytest.skip("no class archive in this environment (make builds it: "
                    "python -m curation.jvm_class_archive)")
    flags = spark.sparkContext.getConf().get("spark.driver.extraJavaOptions")
    assert "-XX:SharedArchiveFile=" in flags, flags
    corpus = write_corpus(tmp_path)
    with ThreadPoolExecutor(max_workers=1) as pool:  # a fresh JVM: mostly start-up
        off = pool.submit(sharpen, "curate", "dedup", "--input", str(corpus), "--output",
                          str(tmp_path / "off"), env={"SHARPEN_JVM_ARCHIVE": "0"}, timeout=600)
        CurationJob(spark, [str(corpus)], str(tmp_path / "on"), CurationConfig(), "dedup").run()
        r = off.result()
    assert r.returncode == 0, r.stderr[-3000:]
    assert "cds" not in r.stdout.lower()
    on, off_ = output_digest(tmp_path / "on"), output_digest(tmp_path / "off")
    assert on == off_ and any(k.startswith("dedup/") for k in on)
