"""The JVM class archive (curation/jvm_class_archive.py): mapped only when complete and made
for this pyspark and these JVM options, and a job's outputs are the same with or without it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from curation.jvm_class_archive import _key, archive_path, java_options
from curation.spark_session import JVM_OPTIONS

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "faults"))
from curate_fault_fixture import REPO, output_digest, sharpen, write_corpus  # noqa: E402


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
def test_jobs_with_and_without_the_archive_write_the_same_bytes(tmp_path):
    if not java_options(JVM_OPTIONS):
        pytest.skip("no class archive in this environment (make builds it: "
                    "python -m curation.jvm_class_archive)")
    corpus = write_corpus(tmp_path)
    probe = ("from curation.spark_session import get_spark; s = get_spark('local[2]'); "
             "print(s.sparkContext.getConf().get('spark.driver.extraJavaOptions'))")
    runs = {}
    with ThreadPoolExecutor(max_workers=2) as pool:  # two JVMs at once: mostly start-up
        for on in ("1", "0"):
            runs[on] = pool.submit(sharpen, "curate", "dedup", "--input", str(corpus), "--output",
                                   str(tmp_path / f"out{on}"), env={"SHARPEN_JVM_ARCHIVE": on},
                                   timeout=600)
        # a session's JVM gets the flags (without them: test above)
        out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True,
                             text=True, timeout=300, check=True,
                             env={**os.environ, "SHARPEN_JVM_ARCHIVE": "1"}).stdout
        assert "-XX:SharedArchiveFile=" in out, out
    digests = []
    for on, run in runs.items():
        r = run.result()
        assert r.returncode == 0, r.stderr[-3000:]
        assert "cds" not in r.stdout.lower()
        digests.append(output_digest(tmp_path / f"out{on}"))
    assert digests[0] == digests[1] and any(k.startswith("dedup/") for k in digests[0])
