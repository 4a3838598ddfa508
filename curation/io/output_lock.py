"""One writer per output directory: a lock file created atomically, with a heartbeat.

Two jobs on one `--output` interleave their stage writes and can commit a stage that
holds a fraction of the input. The first job creates `OUTPUT/_sharpen.lock` (Hadoop's
create-if-absent: atomic on local disks and HDFS); a second job finds it and is refused
at once, with the holder's pid, host and start time.

A lock is stale, and is taken over, when its holder is gone: on this host, its pid no
longer runs (or now belongs to a younger process); on another host, its heartbeat (the
file's modification time, refreshed every `HEARTBEAT_S`) is older than `STALE_AFTER_S`.
The holder checks, before it commits each stage, that the lock still carries its token,
so a job whose lock was taken over stops instead of overwriting the new owner's work.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import socket
import threading
import time
import uuid

import psutil

from curation.io.hadoop_fs import HadoopFS

log = logging.getLogger(__name__)

LOCK_NAME = "_sharpen.lock"
HEARTBEAT_S = 10.0
STALE_AFTER_S = 120.0


class OutputInUse(RuntimeError):
    """Another live job holds the output directory."""

    user_facing = True


class LockLost(RuntimeError):
    """This job's lock was taken over: it must not commit anything more."""

    user_facing = True


def _this_process() -> dict:
    me = psutil.Process()
    return {"pid": me.pid, "host": socket.gethostname(), "proc_started": me.create_time(),
            "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "token": uuid.uuid4().hex}


class OutputLock:
    def __init__(self, fs: HadoopFS, output: str, *, stale_after_s: float = STALE_AFTER_S,
                 heartbeat_s: float = HEARTBEAT_S):
        self.fs, self.path = fs, f"{output.rstrip('/')}/{LOCK_NAME}"
        self.stale_after_s, self.heartbeat_s = stale_after_s, heartbeat_s
        self.me = _this_process()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost = False

    # -- acquire / release -----------------------------------------------------------
    def acquire(self) -> OutputLock:
        for _ in range(3):
            if self.fs.create_new(self.path, json.dumps(self.me, sort_keys=True)):
                self._thread = threading.Thread(target=self._heartbeat, daemon=True,
                                                name="sharpen-output-lock")
                self._thread.start()
                log.info("locked %s", self.path)
                return self
            holder = self._holder()
            why = self._stale(holder)
            if why is None:
                raise OutputInUse(self._describe(holder))
            log.warning("taking over a stale lock %s (%s): %s", self.path, why,
                        self._describe(holder))
            self.fs.delete(self.path)
        raise OutputInUse(f"{self.path}: could not take the lock (another job keeps taking it)")

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
            if self._owned():
                self.fs.delete(self.path)

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    def assert_held(self) -> None:
        """Raise unless this job still owns the lock (called before each commit)."""
        if self.lost or not self._owned():
            self.lost = True
            raise LockLost(f"{self.path}: the output lock was taken over by another job; "
                           "this job stopped without committing more")

    # -- internals -------------------------------------------------------------------
    def _holder(self) -> dict:
        for _ in range(10):  # the creator may not have written its content yet
            try:
                holder = json.loads(self.fs.read_text(self.path))
                if isinstance(holder, dict):
                    return holder
            except Exception:  # missing, empty or half-written: look again
                pass
            time.sleep(0.2)
        return {}

    def _owned(self) -> bool:
        try:
            return json.loads(self.fs.read_text(self.path)).get("token") == self.me["token"]
        except Exception:  # gone or unreadable: not ours
            return False

    def _stale(self, holder: dict) -> str | None:
        """Why the holder is gone, or None when it may still be running."""
        if holder.get("host") == self.me["host"] and isinstance(holder.get("pid"), int):
            try:
                proc = psutil.Process(holder["pid"])
            except psutil.NoSuchProcess:
                return f"pid {holder['pid']} is not running"
            if abs(proc.create_time() - float(holder.get("proc_started", 0))) > 1:
                return f"pid {holder['pid']} now belongs to another process"
            return None
        try:
            age = self.fs.age_seconds(self.path)
        except Exception:  # it vanished meanwhile: free to take
            return "the lock vanished"
        if age > self.stale_after_s:
            return f"no heartbeat for {age:.0f}s"
        return None

    def _describe(self, holder: dict) -> str:
        if not holder:
            return f"output in use: {self.path} exists but is unreadable; if no job runs, delete it"
        return (f"output in use by pid {holder.get('pid')} on {holder.get('host')} since "
                f"{holder.get('started')} (lock {self.path}); wait for that job, or delete the "
                "lock if it is gone")

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                if not self._owned():
                    self.lost = True
                    log.error("%s: lock taken over by another job", self.path)
                    return
                self.fs.touch(self.path)
            except Exception as e:  # JVM gone at shutdown: stop quietly
                log.debug("lock heartbeat stopped: %s", e)
                return

