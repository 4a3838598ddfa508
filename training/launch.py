"""Run torchrun with its whole output in `OUTPUT/train.log`, and a failure on one line.

Why not let torchrun print to the terminal: when a rank fails, every rank and the agent
print a traceback or a report, some 80 lines in which the cause is hard to find. Instead
each rank's entry point is wrapped in torch.distributed.elastic's `record`, so a failing
rank writes its exception to an error file; the error file written *first* (by mtime) is
the root cause, since the other ranks usually fail only because their peer went away. A
rank killed by a signal (the OOM killer's SIGKILL, a segfault) writes no file; torchrun's
report names it, and it wins over any error file.

torchrun writes straight into the log file, not through a pipe to this process, so the
log stays complete even if this process dies; this process tails the file and echoes
rank 0's log lines (verbose: every line, tracebacks included).
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

log = logging.getLogger(__name__)

# `training.pretrain` logs as "HH:MM:SS rank0 INFO name: message".
_RANK0_LINE = re.compile(rb"^\S+ rank0 (INFO|WARNING|ERROR) ")
_MAX_LINE = 390  # `sharpen` clips error lines at 400 characters; keep the log path visible


class TrainingFailed(RuntimeError):
    """A rank failed: the message is its root error on one line, and where the full log is."""

    user_facing = True  # `sharpen` prints it as one line (`-v`: with the traceback)


def run_torchrun(
    nproc: int,
    module: str,
    args: list[str],
    log_path: Path,
    *,
    verbose: bool = False,
    timeout_s: float | None = None,
) -> None:
    """`torchrun --standalone -m module args`; raises TrainingFailed when it exits non-zero."""
    with tempfile.TemporaryDirectory(prefix="sharpen-torchrun-") as error_dir:
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            str(nproc),
            "--log-dir",
            error_dir,  # torchrun puts each rank's error.json here
            "-m",
            module,
            *args,
        ]
        marks = Path(error_dir) / "rank-marks"
        marks.mkdir()
        env = {
            **os.environ,
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
            "PYTHONUNBUFFERED": "1",
            "SHARPEN_RANK_MARKS": str(marks),
        }
        log.info("launching %d ranks; full log: %s", nproc, log_path)
        log.debug("command: %s", " ".join(cmd))
        code, start = _run_logged(cmd, env, log_path, verbose=verbose, timeout_s=timeout_s)
        if code != 0:
            text = _read_from(log_path, start)
            # torchrun's failure report names a killed rank; without a report (torchrun
            # itself died first) the ranks' own marks do
            killed = killed_ranks(text) if _REPORTED.search(text) else silent_ranks(Path(error_dir))
            cause = killed[0] if killed else root_cause(Path(error_dir))
            cause = cause or f"torchrun exited with code {code}"
            where = f" (full log: {log_path})"
            raise TrainingFailed(_one_line(cause, max(160, _MAX_LINE - len(where))) + where)


def _run_logged(
    cmd: list[str],
    env: dict[str, str],
    log_path: Path,
    *,
    verbose: bool,
    timeout_s: float | None,
) -> tuple[int, int]:
    """Run `cmd` appending to `log_path`, echo its lines as they come.

    Returns the exit code and the log offset where this run's output starts.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as sink:  # append: an earlier attempt's log is kept
        sink.write(
            f"==== {datetime.now().isoformat(timespec='seconds')} {' '.join(cmd)}\n".encode()
        )
        sink.flush()
        start = sink.tell()
        proc = subprocess.Popen(
            cmd, env=env, stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT
        )
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    pending = b""
    try:
        with log_path.open("rb") as tail:
            tail.seek(start)
            while True:
                code = proc.poll()  # poll before reading: once it is set, the log is complete
                chunk = tail.read()
                *lines, pending = (pending + chunk).split(b"\n")
                for line in lines:
                    _echo(line, verbose)
                if code is not None and not chunk:
                    _echo(pending, verbose)
                    return code, start
                if deadline is not None and time.monotonic() > deadline:
                    raise subprocess.TimeoutExpired(cmd, timeout_s or 0)
                if not chunk:
                    time.sleep(0.2)
    finally:
        if proc.poll() is None:  # timeout or Ctrl-C: torchrun passes SIGTERM on to its ranks
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _echo(line: bytes, verbose: bool) -> None:
    if line and (verbose or _RANK0_LINE.match(line)):
        sys.stderr.write(line.decode("utf-8", errors="replace") + "\n")
        sys.stderr.flush()


def root_cause(error_dir: Path) -> str | None:
    """`rank R failed: Type: message` from the first error file any rank wrote, or None.

    Layout (torchrun): `<error_dir>/<run id>/attempt_<n>/<local rank>/error.json`; with
    `--standalone` (one node) the local rank is the global rank.
    """
    errors = []
    for path in error_dir.rglob("error.json"):
        try:
            message = json.loads(path.read_text(encoding="utf-8"))["message"]
            text = message["message"] if isinstance(message, dict) else str(message)
            errors.append((path.stat().st_mtime_ns, int(path.parent.name), str(text)))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    if not errors:
        return None
    _, rank, text = min(errors)
    return f"rank {rank} failed: {text}"


# One rank's entry in torchrun's failure report (torch.distributed.elastic ChildFailedError).
_REPORTED = re.compile(
    r"rank\s*:\s*(\d+)[^\n]*\n\s*exitcode\s*:\s*(-?\d+)[^\n]*\n"
    r"\s*error_file\s*:\s*(\S+)[^\n]*\n\s*traceback\s*:\s*([^\n]*)"
)


def killed_ranks(log_text: str) -> list[str]:
    """`rank R failed: Signal 9 (SIGKILL) ...` for each rank torchrun reports killed by a signal.

    Such a rank is the root cause even when another rank's error file exists: the others
    only lose their peer and raise afterwards. SIGTERM is left out: torchrun sends it to
    stop the surviving ranks once one has failed.
    """
    causes = []
    for m in _REPORTED.finditer(log_text):
        rank, code, error_file, detail = int(m[1]), int(m[2]), m[3], m[4].strip()
        if code < 0 and code != -signal.SIGTERM and error_file == "<N/A>":
            cause = f"rank {rank} failed: {detail or f'exit code {code}'}"
            if cause not in causes:
                causes.append(cause)
    return causes


def silent_ranks(error_dir: Path) -> list[str]:
    """Ranks that started but neither ended nor wrote an error file: killed by a signal.

    Torchrun's own failure report names such a rank (`killed_ranks`), but torchrun can
    die before printing it (it reads the other ranks' error files while they are being
    written); the ranks' marks (`training/pretrain.py`) still tell.
    """
    marks = error_dir / "rank-marks"
    errored = {p.parent.name for p in error_dir.rglob("error.json")}
    started = sorted(int(p.stem) for p in marks.glob("*.started")) if marks.is_dir() else []
    return [
        f"rank {r} failed: killed by a signal without an error report (e.g. SIGKILL, "
        f"the OOM killer)"
        for r in started
        if not (marks / f"{r}.ended").exists() and str(r) not in errored
    ]


def _read_from(path: Path, offset: int, limit: int = 200_000) -> str:
    """The text of `path` from `offset` (at most its last `limit` bytes)."""
    try:
        with path.open("rb") as f:
            end = f.seek(0, os.SEEK_END)
            f.seek(max(offset, end - limit))
            return f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def _one_line(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
