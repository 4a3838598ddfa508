"""Fault matrix, curation outputs: one writer per output, atomic stage commits, unusable
outputs refused up front, a full disk, and a driver killed at each stage
(docs/reliability.md)."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from contextlib import nullcontext
from pathlib import Path

import psutil
import pytest
from curate_fault_fixture import (
    one_line_error,
    output_digest,
    remount,
    sharpen,
    sharpen_bg,
    tmpfs,
    write_corpus,
)

from curation.config import CurationConfig
from curation.io.output_lock import LOCK_NAME, OutputInUse
from curation.pipeline import CurationJob
from sharpen.cli import main


@pytest.fixture(scope="module")
def lone(spark, tmp_path_factory):
    """A corpus and the outputs of one undisturbed run over it."""
    root = tmp_path_factory.mktemp("lone")
    corpus = write_corpus(root)
    CurationJob(spark, [str(corpus)], str(root / "out"), CurationConfig()).run()
    return corpus, root / "out"


def _wait_for(*paths: Path, proc, timeout: float = 240) -> Path:
    """The first of `paths` to exist (polling every 20 ms) while `proc` runs."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for p in paths:
            if p.exists():
                return p
        if proc.poll() is not None:
            raise AssertionError(f"job ended before {paths} appeared: {proc.stderr.read()[-3000:]}")
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {paths}")


def _kill(proc) -> None:
    """SIGKILL the driver and every process under it (some may exit meanwhile)."""
    for child in psutil.Process(proc.pid).children(recursive=True):
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


@pytest.mark.slow
def test_second_job_on_the_same_output_is_refused_and_the_first_is_intact(lone, tmp_path):
    corpus, lone_out = lone
    out = tmp_path / "out"
    first = sharpen_bg("curate", "--input", str(corpus), "--output", str(out))
    _wait_for(out / LOCK_NAME, proc=first)
    started = time.time()
    second = sharpen("curate", "--input", str(corpus), "--output", str(out))
    line = one_line_error(second.stderr)
    assert second.returncode == 2
    assert f"pid {first.pid} on {socket.gethostname()} since " in line and LOCK_NAME in line
    assert time.time() - started < 60  # refused at once: no input read, no stage run
    assert first.wait(timeout=300) == 0, first.stderr.read()[-3000:]
    assert output_digest(out) == output_digest(lone_out)
    assert not (out / LOCK_NAME).exists()


def test_live_lock_refuses_and_stale_lock_is_taken_over(spark, lone, tmp_path):
    corpus, lone_out = lone
    me = psutil.Process()
    live = {"pid": me.pid, "host": socket.gethostname(), "proc_started": me.create_time(),
            "started": "2026-01-01T00:00:00+00:00", "token": "someone-else"}
    dead = psutil.Popen(["true"])
    dead.wait()
    old = time.time() - 600
    cases = [  # (lock content, its age in seconds or None, refused?)
        (live, None, f"pid {me.pid} on {socket.gethostname()} since 2026"),
        ({**live, "host": "another-host"}, None, "on another-host"),  # fresh heartbeat
        ({**live, "host": "another-host"}, old, None),  # no heartbeat for 10 minutes
        ({**live, "pid": dead.pid}, None, None),  # its process is gone
    ]
    for i, (holder, mtime, refused) in enumerate(cases):
        out = tmp_path / f"out{i}"
        out.mkdir()
        (out / LOCK_NAME).write_text(json.dumps(holder))
        if mtime is not None:
            os.utime(out / LOCK_NAME, (mtime, mtime))
        job = CurationJob(spark, [str(corpus)], str(out), CurationConfig())
        if refused:
            with pytest.raises(OutputInUse, match=refused):
                job.run()
            assert not (out / "_stages").exists() and (out / LOCK_NAME).exists()
        else:
            job.run()
            assert output_digest(out) == output_digest(lone_out)
            assert not (out / LOCK_NAME).exists()


def test_half_written_stage_is_never_reused(spark, lone, tmp_path):
    """A kill mid-stage leaves `<stage>._writing/` (ignored) or a directory without its
    marker (never reused): the rerun recomputes and matches a lone run."""
    corpus, lone_out = lone
    out = tmp_path / "out"
    (out / "_stages" / "validated._writing").mkdir(parents=True)
    (out / "_stages" / "validated._writing" / "part-0.parquet").write_bytes(b"junk")
    (out / "_stages" / "annotated").mkdir()
    (out / "_stages" / "annotated" / "part-0.parquet").write_bytes(b"junk")
    stats = CurationJob(spark, [str(corpus)], str(out), CurationConfig()).run()
    assert stats["stages"]["resumed"] == []
    assert output_digest(out) == output_digest(lone_out)


STAGES = ("validated", "repeated_ids", "annotated", "exact", "members", "edges", "components",
          "assigned")


@pytest.mark.slow
def test_driver_killed_at_each_stage_resumes_to_the_same_output(spark, lone, tmp_path):
    """SIGKILL the whole driver (Python and JVM) of a CLI job on local[1] while each stage
    writes (or, for a stage too quick to catch, right after it commits), then once while
    writing `curated/`: the rerun resumes every stage and writes the bytes of an
    undisturbed run on local[2]. (Two chains of kills side by side took as long: each
    job start is CPU-bound.)"""
    corpus, lone_out = lone
    out = tmp_path / "out"
    for name in (*STAGES, "curated"):
        proc = sharpen_bg("curate", "--input", str(corpus), "--output", str(out),
                          "--master", "local[1]")
        root = out if name == "curated" else out / "_stages"
        _wait_for(root / f"{name}._writing", root / name, proc=proc)
        _kill(proc)
    assert (out / LOCK_NAME).exists()  # left by the killed driver: stale, taken over
    stats = CurationJob(spark, [str(corpus)], str(out), CurationConfig()).run()
    assert set(stats["stages"]["resumed"]) == set(STAGES)
    # a reused stage reports what it cost when it ran
    assert all(stats["stages"]["profile"][s]["resumed"] is True for s in STAGES)
    assert stats["stages"]["profile"]["validated"]["tasks"] > 0
    assert output_digest(out) == output_digest(lone_out)


def test_output_problems_are_one_line_before_any_input_is_read(lone, tmp_path, capsys):
    corpus, _ = lone
    (tmp_path / "afile").write_text("x")
    cases = {
        str(tmp_path / "afile"): "the output is a file",
        str(corpus / "out"): "lies inside the input directory",
    }
    for output, message in cases.items():
        rc = main(["curate", "--input", str(corpus), "--output", output])
        err = capsys.readouterr().err
        assert rc == 2 and message in err and output in err, err
        assert len(err.strip().splitlines()) == 1
    assert not (corpus / "out").exists()


def test_unwritable_output_is_one_line(lone, tmp_path, capsys):
    corpus, _ = lone
    if os.geteuid() == 0:  # root writes through permissions: use a read-only mount
        ctx = tmpfs(tmp_path / "ro", "1m", "ro")
    else:
        (tmp_path / "ro").mkdir()
        (tmp_path / "ro").chmod(0o555)
        ctx = nullcontext(tmp_path / "ro")
    with ctx as ro:
        rc = main(["curate", "--input", str(corpus), "--output", str(ro / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and "not writable" in err and str(ro / "out") in err, err
    assert len(err.strip().splitlines()) == 1


def _tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


@pytest.mark.slow
def test_full_disk_is_one_line_and_the_rerun_resumes(spark, lone, tmp_path):
    """The failing job is a `sharpen` process (its whole console is checked: Spark's JVM
    prints there too); the rerun resumes in the test session's Spark."""
    corpus, lone_out = lone
    stages = lone_out / "_stages"
    room = (_tree_bytes(stages / "validated") + _tree_bytes(stages / "annotated")) * 1.3
    with tmpfs(tmp_path / "disk", f"{int(room) // 1024 + 64}k") as disk:
        out = disk / "out"
        r = sharpen("curate", "--input", str(corpus), "--output", str(out))
        assert r.returncode == 2
        line = one_line_error(r.stderr)
        assert "No space left on device" in line and "resumes" in line
        assert (out / "_stages" / "validated").is_dir()  # committed before the disk filled
        remount(disk, "size=200m")
        assert main(["curate", "--input", str(corpus), "--output", str(out)]) == 0
        stats = json.loads((out / "stats.json").read_text())
        assert "validated" in stats["stages"]["resumed"]
        assert output_digest(out) == output_digest(lone_out)
