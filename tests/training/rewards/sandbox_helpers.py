"""Checks shared by the sandbox tests: nothing the sandbox started outlives a run, and the
test process (standing in for the trainer) is as it was."""

from __future__ import annotations

import os
import time

import psutil

TAGS = ("sharpen-sandbox-launcher", "sharpen-sandbox-runner")


def strays(marker: str | None = None, tags: bool = True) -> list[str]:
    """Processes anywhere on the machine from a sandbox (by its argv tags, or `marker`);
    `tags=False`: only those whose argv holds `marker` (not any sandbox's, e.g. the one
    a previous test is still tearing down)."""
    found = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if (tags and any(tag in cmd for tag in TAGS)) or (marker and marker in cmd):
            found.append(f"{p.info['pid']}: {cmd[:120]}")
    return found


def assert_no_strays(marker: str | None = None, wait_s: float = 0.0) -> None:
    deadline = time.monotonic() + wait_s
    while (left := strays(marker)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert left == [], left


class TrainerState:
    """What a hostile program must not change in the process that ran it."""

    def __init__(self) -> None:
        self.me = psutil.Process()
        self.pid, self.ppid, self.cwd = os.getpid(), os.getppid(), os.getcwd()
        self.fds = sorted(os.listdir("/proc/self/fd"))
        self.rss = self.me.memory_info().rss
        # children the test process had before (e.g. the math reward's reused worker,
        # started by earlier tests in the same session) are not the sandbox's
        self.children = {c.pid for c in self.me.children(recursive=True)}

    def assert_unharmed(self) -> None:
        assert os.getpid() == self.pid and os.getppid() == self.ppid
        assert self.me.is_running() and self.me.status() != psutil.STATUS_ZOMBIE
        assert os.getcwd() == self.cwd
        assert sorted(os.listdir("/proc/self/fd")) == self.fds, "file descriptors leaked"
        new = [c for c in self.me.children(recursive=True) if c.pid not in self.children]
        assert new == [], [c.cmdline() for c in new]
        assert self.me.memory_info().rss < self.rss + (64 << 20)  # the 8 GB stayed inside
