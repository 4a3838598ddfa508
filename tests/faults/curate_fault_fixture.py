"""Helpers for the curation fault tests: a small real corpus, CLI runs in a fresh JVM,
tmpfs mounts (root only) and byte-level comparison of job outputs."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "curation"))
from corpus_fixture import edit, real_texts, write_jsonl  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
OUTPUT_DIRS = ("curated", "removed", "quarantine", "dedup")
RUN_KEYS = {"output", "seconds", "stages", "spark", "inputs"}  # name the run, not its result


def write_corpus(root: Path, n: int = 60) -> Path:
    """Two JSONL files of real texts with exact and near duplicates."""
    texts = real_texts(n)
    corpus = root / "corpus"
    corpus.mkdir(parents=True)
    a = [{"id": f"a{i:03d}", "text": t} for i, t in enumerate(texts)]
    b = [{"id": f"b{i:03d}", "text": edit(t)} for i, t in enumerate(texts[: n // 3])]
    b += [{"id": f"c{i:03d}", "text": t} for i, t in enumerate(texts[: n // 6])]
    write_jsonl(corpus / "a.jsonl", a)
    write_jsonl(corpus / "b.jsonl.gz", b)
    return corpus


def sharpen(*args: str, timeout: int = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    """`sharpen ARGS` in a fresh process (its own JVM, the default settings)."""
    return subprocess.run([sys.executable, "-m", "sharpen.cli", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", **(env or {})})


def sharpen_bg(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "sharpen.cli", *args], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True,
                            env={**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"})


def output_digest(out: Path) -> dict[str, str]:
    """sha256 of every output file (Hadoop's .crc side files excluded) and the result
    part of stats.json."""
    digest = {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
              for d in OUTPUT_DIRS for p in sorted((out / d).rglob("*"))
              if p.is_file() and not p.name.endswith(".crc")}
    stats = json.loads((out / "stats.json").read_text())
    digest["stats.json"] = json.dumps({k: v for k, v in stats.items() if k not in RUN_KEYS},
                                      sort_keys=True)
    return digest


def one_line_error(stderr: str) -> str:
    """The `sharpen ...: error:` line; asserts there is exactly one and no trace."""
    lines = [ln for ln in stderr.splitlines() if ": error: " in ln]
    assert len(lines) == 1, stderr[-3000:]
    assert "Traceback" not in stderr and "\tat " not in stderr and "py4j" not in stderr.lower(), \
        stderr[-3000:]
    return lines[0]


@contextmanager
def tmpfs(path: Path, size: str, *options: str):
    """Mount a tmpfs of `size` at `path` (root only; the test is skipped otherwise)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    path.mkdir(parents=True, exist_ok=True)
    opts = ",".join([f"size={size}", *options])
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def remount(path: Path, *options: str) -> None:
    subprocess.run(["mount", "-o", ",".join(["remount", *options]), str(path)], check=True)
