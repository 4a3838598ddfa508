"""Peak resident memory of a process tree, split into the JVM and the Python workers.

A local Spark job is one Python driver, one JVM (driver and the single executor) and
the pyspark daemon with its forked Python workers. We sample the tree every 0.2 s with
psutil and keep, per role, the peak of the summed RSS and the peak of any one process.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import psutil


def role_of(proc: psutil.Process) -> str:
    """'jvm', 'python_worker' (pyspark daemon/worker), 'driver' (the root) or 'other'."""
    try:
        name = proc.name().lower()
        cmd = " ".join(proc.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return "other"
    if name == "java" or "org.apache.spark" in cmd:
        return "jvm"
    if "pyspark.daemon" in cmd or "pyspark.worker" in cmd or "pyspark/daemon" in cmd:
        return "python_worker"
    if "python" in name:
        return "python_worker" if "pyspark" in cmd else "driver"
    return "other"


@dataclass
class TreeMemory:
    """Peaks in bytes, by role: sum over processes and the largest single process."""

    peak_sum: dict[str, int] = field(default_factory=dict)
    peak_single: dict[str, int] = field(default_factory=dict)
    max_processes: dict[str, int] = field(default_factory=dict)
    samples: int = 0
    cpu_by_pid: dict[int, float] = field(default_factory=dict)  # last seen user + system s

    @property
    def cpu_seconds(self) -> float:
        """CPU seconds of every process seen in the tree (as of its last sample)."""
        return sum(self.cpu_by_pid.values())

    def add(self, rss_by_role: dict[str, list[int]]) -> None:
        self.samples += 1
        for role, values in rss_by_role.items():
            self.peak_sum[role] = max(self.peak_sum.get(role, 0), sum(values))
            self.peak_single[role] = max(self.peak_single.get(role, 0), max(values))
            self.max_processes[role] = max(self.max_processes.get(role, 0), len(values))

    def as_mib(self) -> dict:
        mib = 1 << 20
        return {"peak_sum_mib": {k: round(v / mib, 1) for k, v in sorted(self.peak_sum.items())},
                "peak_single_mib": {k: round(v / mib, 1) for k, v in sorted(self.peak_single.items())},
                "max_processes": dict(sorted(self.max_processes.items())), "samples": self.samples}


def sample_tree(root_pid: int, cpu: dict[int, float] | None = None) -> dict[str, list[int]]:
    """RSS of each process of the tree by role; also records each one's CPU seconds in
    `cpu` (by pid) when given."""
    try:
        root = psutil.Process(root_pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return {}
    out: dict[str, list[int]] = {}
    for p in procs:
        try:
            rss = p.memory_info().rss
            if cpu is not None:
                t = p.cpu_times()
                cpu[p.pid] = t.user + t.system
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        role = "driver" if p.pid == root_pid else role_of(p)
        out.setdefault(role, []).append(rss)
    return out


class TreeSampler:
    """Context manager: samples `root_pid`'s tree in a thread until exit."""

    def __init__(self, root_pid: int, interval_s: float = 0.2):
        self.root_pid, self.interval_s = root_pid, interval_s
        self.result = TreeMemory()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            sample = sample_tree(self.root_pid, self.result.cpu_by_pid)
            if sample:
                self.result.add(sample)
            time.sleep(self.interval_s)

    def __enter__(self) -> TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
