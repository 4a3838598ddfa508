"""Run untrusted Python (a model's completion) against tests in a sandbox, for code rewards.

Which layer gives which guarantee:

* **Namespaces** (bubblewrap when installed, else util-linux `unshare`): a separate process
  tree in its own PID, mount, network, IPC and UTS namespaces. No network: only a loopback
  of its own (up under bwrap, down under unshare). The filesystem is a new, read-only root holding /usr, the interpreter's
  prefix and /dev/{null,zero,random,urandom}; the caller's files (the repo, $HOME, /tmp,
  /work) are not in it, so they can be neither read nor written. The only writable place
  is /sandbox, a tmpfs capped at `disk_mb`: the throw-away working directory, which
  vanishes with the mount namespace even when the trainer is SIGKILLed.
* **The launcher** (`_launcher.py`): the runner runs as uid 65534 in a user namespace of its
  own, so no capabilities, never root, and its own RLIMIT_NPROC count; then `setrlimit`:
  RLIMIT_CPU (SIGXCPU, then SIGKILL), RLIMIT_AS (per-process memory), RLIMIT_NPROC (a fork
  bomb gets `processes` processes, then EAGAIN), RLIMIT_FSIZE, RLIMIT_NOFILE, RLIMIT_CORE=0;
  no_new_privs; a positive nice (and autogroup nice), so the trainer wins contention for
  the CPU.
* **This module**: the wall-time limit (SIGKILL to the namespace's PID 1, so everything in
  it dies, setsid children included), a bound on the whole sandbox's resident memory (twice
  `memory_mb`, polled every 0.1 s), stdout/stderr read through pipes, kept up to
  `output_bytes` and discarded beyond (the sandbox is killed past a ceiling), and a clean
  environment (no secrets from ours). The sandbox dies with the trainer (PR_SET_PDEATHSIG
  through bwrap --die-with-parent or `setpriv --pdeathsig`), and `run_program` returns
  only once every process it started is gone.

`isolation` (argument, else $SHARPEN_SANDBOX, else auto: bwrap when it works, else unshare)
picks the namespace layer; the verdict names the one that ran.

The verdict comes over a dedicated pipe with a per-run nonce (see `_runner.py`), never
from stdout. What the sandbox does *not* make tamper-proof: the tests run in the same
interpreter as the program, so a program that deliberately digs the pipe and the nonce out
of the runner's memory could forge records. Programs see the stdlib of the trainer's base
interpreter (`python -I -S`), no site-packages.
"""

from __future__ import annotations

import ast
import functools
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

from training.rewards import _launcher

ISOLATIONS = ("bwrap", "unshare")
_HERE = Path(__file__).parent
_DEVICES = ("/dev/null", "/dev/zero", "/dev/random", "/dev/urandom")
_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
_POLL_S = 0.1
_RESULTS_CAP = 1 << 20


class SandboxError(RuntimeError):
    """The sandbox could not run the program at all (not a verdict on the program)."""

    user_facing = True


@dataclass(frozen=True)
class SandboxLimits:
    wall_time_s: float = 10.0
    cpu_time_s: int = 5
    memory_mb: int = 512  # address space per process; the whole sandbox gets twice this
    processes: int = 64
    file_size_mb: int = 16
    disk_mb: int = 64  # the writable /sandbox tmpfs
    open_files: int = 64
    output_bytes: int = 64 * 1024  # kept per stream; the rest is read and dropped
    nice: int = 5  # the trainer wins CPU contention; too high and a busy box starves the tests

    def __post_init__(self) -> None:
        bad = [f"{k}={v}" for k, v in asdict(self).items() if k != "nice" and not v > 0]
        if bad or not 0 <= self.nice <= 19:
            raise ValueError(f"sandbox limits must be positive (nice 0-19): {bad or self.nice}")


@dataclass
class Verdict:
    isolation: str
    reward: float
    passed: list[str]
    failed: list[str]
    failures: dict[str, str]  # test -> why it failed
    exit_code: int | None  # None when killed by a signal
    signal: str | None
    limits_hit: list[str]
    complete: bool  # the runner got through every test and said so
    error: str | None  # the program or the tests failed outside any test
    duration_s: float
    stdout: str
    stderr: str
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def parse_test_names(tests: str | None) -> list[str]:
    """The tests a run is scored on, fixed here (trusted side) before the program runs."""
    if tests is None:
        return ["program"]
    try:
        tree = ast.parse(tests, "tests.py")
    except SyntaxError as e:
        raise ValueError(f"tests: {e}") from e
    if not tree.body:  # an empty script would pass every program
        raise ValueError("tests: empty (no test_* functions and no statements)")
    names = [
        n.name for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")
    ]
    return list(dict.fromkeys(names)) or ["script"]


def _interpreter() -> tuple[str, str]:
    exe = os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)
    return exe, os.path.realpath(sys.base_prefix)


def _filesystem() -> tuple[list[str], dict[str, str]]:
    """Read-only binds and symlinks of the sandbox's root (the same paths as outside)."""
    exe, prefix = _interpreter()
    binds, links = ["/usr"], {}
    for top in ("/bin", "/lib", "/lib64", "/sbin"):
        if os.path.islink(top):
            links[top] = os.readlink(top)
        elif os.path.isdir(top):
            binds.append(top)
    for path in (prefix, os.path.dirname(exe)):
        if not any(path == b or path.startswith(b + "/") for b in binds):
            binds.append(path)
    return binds, links


def _bwrap_command(python: str) -> list[str]:
    binds, links = _filesystem()
    cmd = [
        shutil.which("bwrap") or "bwrap",
        "--unshare-ipc",
        "--unshare-pid",
        "--unshare-net",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--die-with-parent",
        "--new-session",
        "--hostname",
        "sandbox",
    ]
    if os.getuid() != 0:  # as root the launcher drops to nobody itself (see _launcher)
        cmd.append("--unshare-user")
    for path in binds:
        parents = Path(path).parents
        for parent in reversed(parents[:-1]):  # bwrap would create them 0700
            cmd += ["--perms", "0755", "--dir", str(parent)]
        cmd += ["--ro-bind", path, path]
    for link, target in links.items():
        cmd += ["--symlink", target, link]
    cmd += ["--dir", "/dev"]
    for dev in _DEVICES:
        cmd += ["--dev-bind", dev, dev]
    return cmd + [
        "--proc",
        "/proc",
        "--perms",
        "01777",
        "--size",
        "{disk}",
        "--tmpfs",
        "/sandbox",
        "--remount-ro",
        "/",
        "--chdir",
        "/",
        "--clearenv",
        "--setenv",
        "PATH",
        _ENV["PATH"],
        "--",
        python,
    ]


def _unshare_command(python: str) -> list[str]:
    user = [] if os.getuid() == 0 else ["--user", "--map-root-user"]
    return [
        shutil.which("setpriv") or "setpriv",
        "--pdeathsig",
        "KILL",
        "--",
        shutil.which("unshare") or "unshare",
        *user,
        "--mount",
        "--net",
        "--pid",
        "--ipc",
        "--uts",
        "--fork",
        "--kill-child=SIGKILL",
        "--",
        python,
    ]


def _command(isolation: str, limits: SandboxLimits) -> tuple[list[str], int]:
    """The argv up to the interpreter, and how many of the sandbox's processes are ours."""
    python, _ = _interpreter()
    if isolation == "bwrap":
        cmd = _bwrap_command(python)
        cmd[cmd.index("{disk}")] = str(limits.disk_mb << 20)
        infra = 3  # bwrap, its PID 1, the launcher
    else:
        cmd, infra = _unshare_command(python), 2  # unshare, the launcher (PID 1)
    return cmd + ["-I", "-S", "-B", "-c", _launcher.BOOT, "sharpen-sandbox-launcher"], infra


@functools.cache
def _probe(isolation: str) -> str | None:
    """None when `isolation` works here, else why not (checked once per process)."""
    tools = {"bwrap": ["bwrap"], "unshare": ["unshare", "setpriv"]}[isolation]
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        return f"{', '.join(missing)} not installed"
    try:
        v = _run("print('ok')", None, SandboxLimits(wall_time_s=20), isolation)
    except SandboxError as e:
        return str(e)
    return None if v.passed == ["program"] and v.stdout == "ok\n" else f"probe failed: {v}"


def available_isolation() -> list[str]:
    """The isolation layers that work on this machine, preferred first."""
    return [iso for iso in ISOLATIONS if _probe(iso) is None]


def choose_isolation(requested: str | None = None) -> str:
    requested = requested or os.environ.get("SHARPEN_SANDBOX") or "auto"
    if requested not in ("auto", *ISOLATIONS):
        raise ValueError(f"isolation must be auto, bwrap or unshare, not {requested!r}")
    for iso in ISOLATIONS if requested == "auto" else (requested,):
        if _probe(iso) is None:
            return iso
    why = "; ".join(f"{iso}: {_probe(iso)}" for iso in ISOLATIONS)
    raise SandboxError(
        f"no sandbox available ({why}); install bubblewrap "
        "(apt-get install bubblewrap) or allow unprivileged user namespaces"
    )


def run_program(
    source: str,
    tests: str | None = None,
    *,
    limits: SandboxLimits | None = None,
    isolation: str | None = None,
) -> Verdict:
    """Run `source` (and `tests`, see `_runner.py` for the format) in a fresh sandbox."""
    names = parse_test_names(tests)  # before anything starts: bad tests are our error
    return _run(source, tests, limits or SandboxLimits(), choose_isolation(isolation), names)


def _run(
    source: str,
    tests: str | None,
    limits: SandboxLimits,
    isolation: str,
    names: list[str] | None = None,
) -> Verdict:
    from training.rewards.watch import Watch, verdict_from

    names = names or parse_test_names(tests)
    nonce = secrets.token_hex(16)
    r_res, w_res = os.pipe()
    cmd, infra = _command(isolation, limits)
    binds, links = _filesystem()
    config = {
        "code": (_HERE / "_launcher.py").read_text(),
        "filename": "sandbox-launcher",
        "mode": isolation,
        "python": _interpreter()[0],
        "ro_binds": binds,
        "symlinks": links,
        "devices": list(_DEVICES),
        "disk_bytes": limits.disk_mb << 20,
        "nice": limits.nice,
        "result_fd": w_res,
        "limits": asdict(limits),
        "runner": {
            "code": (_HERE / "_runner.py").read_text(),
            "filename": "sandbox-runner",
            "nonce": nonce,
            "program": source,
            "tests": tests,
            "test_names": names,
        },
    }
    memfd = os.memfd_create("sharpen-sandbox-config")
    try:
        with open(memfd, "wb", closefd=False) as f:
            f.write(json.dumps(config).encode())
        os.lseek(memfd, 0, os.SEEK_SET)
        start = time.monotonic()
        proc = subprocess.Popen(
            cmd,
            stdin=memfd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=(w_res,),
            env=_ENV,
            cwd="/",
            start_new_session=True,
        )
    except BaseException:
        os.close(r_res)
        raise
    finally:
        os.close(memfd)
        os.close(w_res)
    watch = Watch(proc, r_res, limits, infra, nonce, start)
    try:
        watch.run()
    finally:
        watch.cleanup()
    return verdict_from(watch, isolation, names)


def kill_tree(proc: subprocess.Popen, procs: list[psutil.Process]) -> None:
    """SIGKILL the sandbox: its process group and every process seen in it. Killing the
    namespace's PID 1 makes the kernel kill everything else inside."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    for p in procs:
        try:
            p.send_signal(signal.SIGKILL)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
