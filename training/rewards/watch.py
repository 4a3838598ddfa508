"""The trainer's side of one sandbox run: read its pipes, enforce the limits that only the
outside can enforce (wall time, total memory, output), kill it, wait until every process
is gone, and turn what the runner reported into a `Verdict`.

One thread, one selector loop: no reader threads per stream, so many runs can proceed at
once (GRPO scores a group of completions concurrently) at the cost of one thread each.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import time

import psutil

from training.rewards.sandbox import (
    _POLL_S,
    _RESULTS_CAP,
    SandboxError,
    SandboxLimits,
    Verdict,
    kill_tree,
)

OUTPUT_KILL_FACTOR = 16  # a stream this many times past output_bytes: the flood is stopped
_LAUNCH_FAILED = 125


class Watch:
    def __init__(
        self,
        proc: subprocess.Popen,
        result_fd: int,
        limits: SandboxLimits,
        infra: int,
        nonce: str,
        start: float,
    ) -> None:
        self.proc, self.result_fd, self.limits = proc, result_fd, limits
        self.infra, self.nonce, self.start = infra, nonce, start
        self.kept = {proc.stdout.fileno(): bytearray(), proc.stderr.fileno(): bytearray()}
        self.totals = dict.fromkeys(self.kept, 0)
        self.results = bytearray()
        self.procs: dict[int, psutil.Process] = {}
        self.limits_hit: list[str] = []
        self.killed: str | None = None
        self.max_cpu_s = 0.0
        self.duration_s = 0.0
        try:
            self.root: psutil.Process | None = psutil.Process(proc.pid)
        except psutil.NoSuchProcess:
            self.root = None

    def hit(self, limit: str) -> None:
        if limit not in self.limits_hit:
            self.limits_hit.append(limit)

    def kill(self, reason: str) -> None:
        self.hit(reason)
        if self.killed is None:
            self.killed = reason
        kill_tree(self.proc, list(self.procs.values()))

    def run(self) -> None:
        sel = selectors.DefaultSelector()
        for fd in (*self.kept, self.result_fd):
            os.set_blocking(fd, False)
            sel.register(fd, selectors.EVENT_READ)
        deadline = self.start + self.limits.wall_time_s
        next_poll = self.start
        killed_at = None
        while True:
            now = time.monotonic()
            if now >= deadline and self.killed is None:
                self.kill("wall_time")
            if self.killed and killed_at is None:
                killed_at = now
            if killed_at is not None and now - killed_at > 10:
                break  # cleanup() insists
            if now >= next_poll:
                self._poll()
                next_poll = now + _POLL_S
            timeout = max(0.0, min(deadline - now, next_poll - now, _POLL_S))
            if self.killed:  # past the deadline: wait for the pipes to close, without spinning
                timeout = _POLL_S / 2
            if sel.get_map():
                for key, _ in sel.select(timeout):
                    self._read(sel, key.fd)
            elif self.proc.poll() is None:
                time.sleep(timeout or 0.01)
            if not sel.get_map() and self.proc.poll() is not None:
                break
        self.duration_s = time.monotonic() - self.start
        sel.close()

    def _read(self, sel: selectors.BaseSelector, fd: int) -> None:
        try:
            data = os.read(fd, 1 << 16)
        except BlockingIOError:
            return
        if not data:
            sel.unregister(fd)
            return
        if fd == self.result_fd:
            if len(self.results) < _RESULTS_CAP:
                self.results += data
            return
        cap = self.limits.output_bytes
        self.totals[fd] += len(data)
        kept = self.kept[fd]
        if len(kept) < cap:
            kept += data[: cap - len(kept)]
        if self.totals[fd] > cap:
            self.hit("output")
        if self.totals[fd] > max(cap * OUTPUT_KILL_FACTOR, 1 << 20) and self.killed is None:
            self.kill("output")

    def _poll(self) -> None:
        """Sample the sandbox's processes: total memory, count, CPU time."""
        if self.root is None:
            return
        try:
            kids = self.root.children(recursive=True)
        except psutil.NoSuchProcess:
            return
        rss, total_cpu = 0, 0.0
        for p in kids:
            self.procs.setdefault(p.pid, p)
            try:
                rss += p.memory_info().rss
                cpu = p.cpu_times()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            self.max_cpu_s = max(self.max_cpu_s, cpu.user + cpu.system)
            total_cpu += cpu.user + cpu.system + cpu.children_user + cpu.children_system
        if len(kids) + 1 - self.infra >= self.limits.processes:
            self.hit("processes")
        if self.killed is None:
            if rss > 2 * self.limits.memory_mb << 20:
                self.kill("memory")
            elif total_cpu > self.limits.cpu_time_s + 0.5:  # many processes, one budget
                self.kill("cpu_time")

    def cleanup(self) -> None:
        """Return only when the sandbox's every process is gone and its pipes are closed."""
        if self.proc.poll() is None and self.killed is None:
            self.kill("aborted")  # we got here through an exception
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            kill_tree(self.proc, list(self.procs.values()))
            self.proc.wait()
        alive = _wait_gone(list(self.procs.values()), timeout=5)
        if alive:
            kill_tree(self.proc, alive)
            _wait_gone(alive, timeout=5)
        for f in (self.proc.stdout, self.proc.stderr):
            f.close()
        os.close(self.result_fd)


def _running(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _wait_gone(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait until none of `procs` runs. A zombie counts as gone: bwrap's PID 1 can stay one
    until the machine's init reaps it, and it can do nothing."""
    deadline = time.monotonic() + timeout
    while (alive := [p for p in procs if _running(p)]) and time.monotonic() < deadline:
        time.sleep(0.02)
    return alive


def _records(watch: Watch) -> list[dict]:
    out = []
    for line in bytes(watch.results).splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and rec.get("n") == watch.nonce:
            out.append(rec)
    return out


def _status(watch: Watch) -> tuple[int | None, str | None]:
    rc = watch.proc.returncode
    sig = -rc if rc < 0 else rc - 128 if 128 < rc < 128 + 65 else None
    if watch.killed:
        sig = signal.SIGKILL
    if sig is None:
        return rc, None
    try:
        return None, signal.Signals(sig).name
    except ValueError:
        return rc, None


def verdict_from(watch: Watch, isolation: str, names: list[str]) -> Verdict:
    records = _records(watch)
    kinds = {r.get("t") for r in records}
    stdout, stderr = (bytes(b).decode(errors="replace") for b in watch.kept.values())
    if "start" not in kinds and (watch.killed is None or watch.proc.returncode == _LAUNCH_FAILED):
        tail = " ".join(stderr.split())[-400:]
        raise SandboxError(
            f"the {isolation} sandbox did not start (exit status "
            f"{watch.proc.returncode}): {tail or 'no message'}"
        )
    for r in records:
        if r.get("t") == "limit" and isinstance(r.get("limit"), str):
            watch.hit(r["limit"])
    exit_code, sig = _status(watch)
    hard_cpu = watch.max_cpu_s >= watch.limits.cpu_time_s - 2 * _POLL_S  # SIGKILL at soft+1
    if sig == "SIGXCPU" or (sig == "SIGKILL" and watch.killed is None and hard_cpu):
        watch.hit("cpu_time")
    errors = [r.get("err", "") for r in records if r.get("t", "").endswith("_error")]
    error = errors[0] if errors else None
    results: dict[str, tuple[bool, str]] = {}
    for r in records:
        if r.get("t") == "test" and r.get("name") in names and r["name"] not in results:
            results[r["name"]] = (r.get("ok") is True, str(r.get("err", "")))
    passed = [n for n in names if results.get(n, (False, ""))[0]]
    failed = [n for n in names if n not in passed]
    stopped = error or (
        f"stopped: {', '.join(watch.limits_hit)}"
        if watch.limits_hit
        else f"the runner stopped ({sig or f'exit status {exit_code}'})"
    )
    failures = {n: results[n][1] if n in results else f"not run: {stopped}" for n in failed}
    notes = [
        f"{name} truncated: {watch.totals[fd] - len(kept)} bytes dropped"
        for name, (fd, kept) in zip(("stdout", "stderr"), watch.kept.items(), strict=True)
        if watch.totals[fd] > len(kept)
    ]
    if watch.killed:
        notes.append(f"killed by the trainer: {watch.killed}")
    return Verdict(
        isolation=isolation,
        reward=len(passed) / len(names),
        passed=passed,
        failed=failed,
        failures=failures,
        exit_code=exit_code,
        signal=sig,
        limits_hit=list(watch.limits_hit),
        complete="done" in kinds,
        error=error,
        duration_s=round(watch.duration_s, 3),
        stdout=stdout,
        stderr=stderr,
        notes=notes,
    )
