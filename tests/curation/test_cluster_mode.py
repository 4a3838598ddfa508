"""Cluster mode: the curation job submitted to a real Spark standalone cluster (master +
worker on 127.0.0.1, from the pyspark package) writes the same bytes as local mode."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import psutil
import pyarrow.parquet as pq
import pytest

import curation.submit
from curation.cluster import ClusterError, LocalStandaloneCluster
from curation.config import CurationConfig
from curation.pipeline import CurationJob
from curation.spark_session import JVM_OPTIONS
from curation.submit import curate_argv

PYTHON = sys.executable
JOB_TIMEOUT = 300
# stats.json keys that name the run rather than its result
RUN_KEYS = {"output", "seconds", "stages", "spark"}


def _real_texts(limit: int = 160) -> list[str]:
    """Debian copyright files: real, varied prose, with natural exact duplicates."""
    texts = []
    for path in sorted(Path("/usr/share/doc").glob("*/copyright")):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        if 400 <= len(text) <= 12_000:
            texts.append(text)
        if len(texts) == limit:
            break
    if len(texts) < 60:
        pytest.skip("too few /usr/share/doc/*/copyright files for a realistic corpus")
    return texts


def _edit(text: str, k: int) -> str:
    """A near duplicate: every 40th word changed (Jaccard of 5-word shingles stays high)."""
    words = text.split(" ")
    for i in range(k % 40, len(words), 40):
        words[i] = words[i] + "x"
    return " ".join(words)


def _write_corpus(root: Path) -> Path:
    texts = _real_texts()
    corpus = root / "corpus"
    corpus.mkdir()
    docs_a, docs_b = [], []
    for i, text in enumerate(texts):
        (docs_a if i % 2 == 0 else docs_b).append({"id": f"deb-{i:04d}", "text": text,
                                                   "source": "debian"})
    for i, text in enumerate(texts[:50]):  # near duplicates from another source
        docs_b.append({"id": f"near-{i:04d}", "text": _edit(text, i), "source": "mirror"})
    for i, text in enumerate(texts[50:70]):  # exact copies (case and spacing folded)
        docs_a.append({"id": f"copy-{i:04d}", "text": "  " + text.upper() + "\n",
                       "source": "mirror"})
    lines_a = [json.dumps(d).encode() for d in docs_a]
    lines_b = [json.dumps(d, ensure_ascii=False).encode() for d in docs_b]
    lines_a += [b'{"id": "broken-1", "text": "unterminated', b"[1, 2, 3]",
                b'{"id": "notext-1", "title": "no text"}',
                json.dumps({"id": "deb-0000", "text": "a repeated id"}).encode()]
    lines_b += [b'{"id": "bad-utf8", "text": "caf\xe9"}', b'{"id": 7, "text": "   "}']
    (corpus / "debian-a.jsonl").write_bytes(b"\n".join(lines_a) + b"\n")
    with gzip.open(corpus / "debian-b.jsonl.gz", "wb") as f:
        f.write(b"\n".join(lines_b) + b"\n")
    return corpus


def _run(cmd: list[str], env: dict[str, str], what: str) -> None:
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=JOB_TIMEOUT)
    assert res.returncode == 0, f"{what} failed ({res.returncode}):\n{res.stdout}\n{res.stderr[-4000:]}"


@contextmanager
def _local_run_alongside(spark, mode: str, corpus: tuple[Path, Path], out: Path) -> Iterator[None]:
    """The local reference run (the test session's local[2] Spark), in a thread while the
    body runs (the cluster run, mostly waiting on executor JVMs and Python workers
    starting); on leaving, it must have succeeded. In the session's warm JVM rather than a
    fresh `sharpen` process, whose JVM start-up competed with the cluster's JVMs for the
    two cores."""
    inputs, config = corpus
    job = CurationJob(spark, [str(inputs)], str(out), CurationConfig.load(config), mode)
    with ThreadPoolExecutor(max_workers=1) as pool:
        run = pool.submit(job.run)
        yield
        run.result(timeout=JOB_TIMEOUT)


def _files(root: Path) -> dict[str, str]:
    """sha256 of each output file; Hadoop's `.<name>.crc` side files are not outputs."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and not p.name.endswith(".crc")}


def _assert_same_output(local: Path, cluster: Path, name: str) -> None:
    a, b = _files(local / name), _files(cluster / name)
    assert a, f"local run wrote nothing under {name}/"
    if a != b:  # say whether the rows differ or only their layout/encoding
        rows_equal = (sorted(map(repr, pq.read_table(local / name).to_pylist()))
                      == sorted(map(repr, pq.read_table(cluster / name).to_pylist())))
        different = sorted(f for f in a.keys() | b.keys() if a.get(f) != b.get(f))
        pytest.fail(f"{name}/: files differ: {different} (local {sorted(a)}, cluster "
                    f"{sorted(b)}); same rows as a multiset: {rows_equal}")


def _stats(out: Path) -> dict:
    stats = json.loads((out / "stats.json").read_text())
    return {k: v for k, v in stats.items() if k not in RUN_KEYS}


def _spark_processes(cluster: LocalStandaloneCluster) -> list[int]:
    """Live processes whose command line mentions this cluster's directory or ports."""
    marks = (str(cluster.root), f":{cluster.port}", f"--webui-port {cluster.ui_port}")
    found = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if any(m in cmd for m in marks) and p.pid != os.getpid():
            found.append(p.pid)
    return found


def test_submit_argv_is_sharpen_curate() -> None:
    assert curate_argv(["dedup", "--input", "a", "--output", "b"]) == [
        "curate", "dedup", "--input", "a", "--output", "b"]
    assert curate_argv(["-v", "--input", "a", "-o", "b"])[:2] == ["-v", "curate"]
    with pytest.raises(ValueError, match="spark-submit's --master"):
        curate_argv(["--input", "a", "--output", "b", "--master", "local[2]"])


def test_the_local_clusters_jvms_get_a_local_jobs_flags(monkeypatch) -> None:
    cluster = LocalStandaloneCluster(cores=2, workers=2)
    cmd = cluster.submit_command("app.py", ["x"])
    assert f"spark.driver.extraJavaOptions={JVM_OPTIONS}" in cmd and cmd[-2:] == ["app.py", "x"]
    mine = cluster.submit_command("app.py", [], conf={"spark.driver.extraJavaOptions": "-Xss4m"})
    assert "spark.driver.extraJavaOptions=-Xss4m" in mine and JVM_OPTIONS not in " ".join(mine)
    assert cluster.daemon_env()["SPARK_DAEMON_JAVA_OPTS"] == JVM_OPTIONS
    monkeypatch.setenv("SPARK_DAEMON_JAVA_OPTS", "-Xss4m")  # the user's own win
    assert cluster.daemon_env()["SPARK_DAEMON_JAVA_OPTS"] == "-Xss4m"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory, bundled_models) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("cluster_mode")
    config = root / "curation.yaml"
    # both modes share it; every learned model runs (shipped to the executors with addFile),
    # and the records carry no domain, so the domain classifier decides it
    sections: dict[str, dict[str, str]] = {}
    for field, path in bundled_models.items():
        sec, name = field.split(".")
        sections.setdefault(sec, {})[name] = path
    config.write_text(json.dumps(sections))  # JSON is YAML; the shuffle width by input size
    return _write_corpus(root), config


def _cmdline(p: psutil.Process) -> list[str]:
    """Its argv, or [] for a process that exited or is a zombie waiting to be reaped."""
    try:
        return p.cmdline()
    except psutil.Error:
        return []


@pytest.fixture(scope="module")
def cluster():
    """One standalone cluster for the module, two workers of one core each (so a job's
    shuffles cross executors); on teardown, nothing of it may be left running."""
    with LocalStandaloneCluster(cores=2, memory="2g", python=PYTHON, workers=2) as c:
        assert len([w for w in c.state()["workers"] if w["state"] == "ALIVE"]) == 2
        # the daemons (master, two workers) run with a local job's JVM flags
        jvms = [cmd for cmd in map(_cmdline, c.processes()) if cmd and cmd[0].endswith("java")]
        assert len(jvms) == 3 and all(set(JVM_OPTIONS.split()) <= set(cmd) for cmd in jvms), jvms
        yield c
        pids = [p.pid for p in c.processes()]
    assert pids, "the cluster had no live processes before stopping"
    left = [p for p in pids if psutil.pid_exists(p)
            and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert left == [] and _spark_processes(c) == [], "cluster processes left running"


def _compare_modes(spark, mode: str, corpus: tuple[Path, Path], cluster: LocalStandaloneCluster,
                   out: Path, names: list[str]) -> dict:
    """Run `mode` locally and on the cluster; assert identical outputs; return the stats."""
    inputs, config = corpus
    sub = ["dedup"] if mode == "dedup" else []
    args = ["--config", str(config), "--input", str(inputs)]
    local, remote = out / "local", out / "cluster"
    before = len(cluster.state().get("completedapps", []))
    with _local_run_alongside(spark, mode, corpus, local):
        _run(cluster.submit_command(curation.submit.__file__, [*sub, *args, "--output", str(remote)],
                                    driver_memory="1g"), cluster.env(), f"cluster {mode} run")
    # the job ran on the cluster's executors, not in a local driver
    apps = cluster.state().get("completedapps", [])
    assert len(apps) == before + 1, apps
    assert json.loads((remote / "stats.json").read_text())["spark"]["master"] == cluster.master_url
    assert _stats(remote) == _stats(local), mode
    for name in names:
        _assert_same_output(local, remote, name)
    return _stats(local)


@pytest.mark.slow
def test_cluster_dedup_equals_local(spark, corpus, cluster, tmp_path: Path) -> None:
    stats = _compare_modes(spark, "dedup", corpus, cluster, tmp_path, ["dedup", "removed", "quarantine"])
    assert stats["removed_exact_dup"] > 0 and stats["removed_near_dup"] > 0, stats
    assert set(stats["quarantined_by_reason"]) >= {
        "malformed_json", "not_an_object", "missing_text", "duplicate_id", "invalid_utf8",
        "empty_text"}, stats["quarantined_by_reason"]


@pytest.mark.slow
def test_cluster_start_failure_is_clear_and_leaves_nothing(tmp_path: Path) -> None:
    cluster = LocalStandaloneCluster(cores=1, memory="not-a-size", workdir=tmp_path / "spark",
                                     start_timeout=60)
    with pytest.raises(ClusterError, match="worker"):
        with cluster:
            pytest.fail("the cluster must not start with an invalid worker memory")
    assert _spark_processes(cluster) == []


@pytest.mark.slow
def test_killed_executor_is_replaced_and_output_is_identical(spark, corpus, cluster, tmp_path: Path):
    """The full job (filters, the four models, dedup) on the cluster, with the executor
    JVMs killed -9 while it runs: the standalone master starts new executors, Spark
    retries the lost tasks, and every output matches a local run. (This also covers a
    plain full-job run on the cluster, which was a separate 75 s test.)"""
    inputs, config = corpus
    args = ["--config", str(config), "--input", str(inputs)]
    local, remote = tmp_path / "local", tmp_path / "cluster"
    with _local_run_alongside(spark, "full", corpus, local):
        job = subprocess.Popen(cluster.submit_command(curation.submit.__file__,
                                                      [*args, "--output", str(remote)],
                                                      driver_memory="1g"),
                               env=cluster.env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
        try:
            deadline = time.time() + JOB_TIMEOUT
            while not (remote / "_stages" / "annotated._writing").exists():
                assert job.poll() is None and time.time() < deadline, "job ended before the kill"
                time.sleep(0.05)
            executors = [p for p in psutil.process_iter(["cmdline"])
                         if "CoarseGrainedExecutorBackend" in " ".join(p.info["cmdline"] or [])]
            assert executors, "no executor process found"
            for p in executors:
                p.kill()
            assert job.wait(timeout=JOB_TIMEOUT) == 0, job.stderr.read()[-4000:]
        finally:
            if job.poll() is None:
                job.kill()
    # the workers ran new executors for the app (work/worker-<i>/<app id>/<executor id>/):
    # more than the one per worker it started with
    app = max((d for d in (cluster.root / "work").glob("worker-*/app-*")),
              key=lambda p: p.stat().st_mtime).name
    executors = [e for d in (cluster.root / "work").glob(f"worker-*/{app}") for e in d.iterdir()
                 if e.is_dir()]
    assert len(executors) > cluster.workers, executors
    stats = _stats(remote)
    assert stats == _stats(local)
    assert json.loads((remote / "stats.json").read_text())["spark"]["master"] == cluster.master_url
    for name in ("curated", "dedup", "removed", "quarantine"):
        _assert_same_output(local, remote, name)
    assert stats["counts"]["kept"] > 0 and stats["removed_near_dup"] > 0, stats
    assert len(stats["models"]) == 4, stats["models"]
    curated = pq.read_table(remote / "curated").to_pylist()
    assert all(r["quality_fasttext"] is not None and r["quality_kenlm_ppl"] is not None
               for r in curated)


@pytest.mark.slow
def test_cluster_mix_writes_the_local_engines_bytes(cluster, tmp_path: Path) -> None:
    """`sharpen mix --engine spark` under spark-submit (tokenising and writing shards on the
    cluster's executors) gives the pyarrow engine's shards byte for byte."""
    import yaml

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "mixtures"))
    from mix_corpus_fixture import corpus_rows, write_curated

    import mixtures.submit
    from mixtures.materialize import run_mix

    curated = write_curated(tmp_path / "curate", corpus_rows(max_chars=3000))
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({
        "seed": 3, "shard_tokens": 15_000,
        "tokenizer": {"vocab_size": 400, "sample_bytes": 150_000},
        "stages": [{"name": "broad", "token_budget": 60_000, "max_doc_tokens": 512,
                    "domain_shares": {"web": 0.4, "code": 0.4, "reference": 0.2}}]}))
    local = run_mix(str(curated), str(recipe), str(tmp_path / "local"), engine="pyarrow")
    before = len(cluster.state().get("completedapps", []))
    args = ["--curated", str(curated), "--recipe", str(recipe), "--output",
            str(tmp_path / "cluster")]
    _run(cluster.submit_command(mixtures.submit.__file__, args, driver_memory="1g"),
         cluster.env(), "cluster mix")
    assert len(cluster.state().get("completedapps", [])) == before + 1
    remote = json.loads((tmp_path / "cluster" / "plan.json").read_text())
    assert remote == local
    assert local["stages"]["broad"]["shards"] > 1
    assert _files(tmp_path / "local" / "broad") == _files(tmp_path / "cluster" / "broad")
