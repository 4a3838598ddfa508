"""Hostile programs: the sandbox holds, the verdict says what happened, the test process
(standing in for the trainer) is unharmed, and no process outlives the run. Each runs under
every isolation layer that works here, with small limits so the suite stays fast.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import pytest
from sandbox_helpers import TrainerState, assert_no_strays, strays

from training.rewards import SandboxLimits, Verdict, run_program

REPO = Path(__file__).resolve().parents[3]
LIMITS = SandboxLimits(
    wall_time_s=2.0,
    cpu_time_s=1,
    memory_mb=256,
    processes=32,
    file_size_mb=4,
    disk_mb=16,
    open_files=32,
    output_bytes=4096,
)
# Where the expected verdict is not wall_time: room for a busy machine (other work, nice)
ROOMY = dataclasses.replace(LIMITS, wall_time_s=20.0)
pytestmark = pytest.mark.slow  # about 30 s with both layers, more on a busy machine


def run_hostile(
    name: str, source: str, isolation: str, tests: str | None = None, limits: SandboxLimits = LIMITS
) -> Verdict:
    marker = f"hostile-{secrets.token_hex(6)}"
    state = TrainerState()
    v = run_program(source.replace("MARKER", marker), tests, limits=limits, isolation=isolation)
    state.assert_unharmed()
    assert_no_strays(marker)
    print(
        f"\n{name} [{isolation}]: reward={v.reward} limits_hit={v.limits_hit} "
        f"exit={v.exit_code} signal={v.signal} error={v.error} {v.duration_s:.2f}s"
    )
    return v


def test_fork_bomb(isolation):
    source = (
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    )
    lags: list[float] = []

    def trainer_loop() -> None:  # the trainer keeps getting the CPU meanwhile
        for _ in range(10):
            t = time.monotonic()
            time.sleep(0.05)
            lags.append(time.monotonic() - t - 0.05)

    t = threading.Thread(target=trainer_loop)
    t.start()
    v = run_hostile("fork bomb", source, isolation)
    t.join()
    assert "processes" in v.limits_hit and v.reward == 0.0 and v.signal == "SIGKILL"
    assert {"wall_time", "cpu_time"} & set(v.limits_hit)
    assert v.duration_s < LIMITS.wall_time_s + 3
    assert max(lags) < 1.0, lags


def test_loop_ignoring_sigterm(isolation):
    source = (
        "import signal, time\nfor s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):\n"
        "    signal.signal(s, signal.SIG_IGN)\nwhile True:\n    time.sleep(0.01)\n"
    )
    v = run_hostile("loop ignoring SIGTERM", source, isolation)
    assert v.limits_hit == ["wall_time"] and v.signal == "SIGKILL" and v.reward == 0.0
    assert LIMITS.wall_time_s - 0.1 < v.duration_s < LIMITS.wall_time_s + 3


def test_cpu_spin_ignoring_sigxcpu(isolation):
    source = "import signal\nsignal.signal(signal.SIGXCPU, signal.SIG_IGN)\nwhile True:\n    pass\n"
    v = run_hostile("CPU spin ignoring SIGXCPU", source, isolation, limits=ROOMY)
    assert "cpu_time" in v.limits_hit and v.signal == "SIGKILL" and v.reward == 0.0
    assert "wall_time" not in v.limits_hit


def test_8gb_allocation(isolation):
    v = run_hostile(
        "8 GB allocation", "x = bytearray(8 * 1024**3)\nprint('allocated')\n", isolation
    )
    assert v.limits_hit == ["memory"] and v.error.startswith("MemoryError")
    assert v.exit_code == 1 and v.stdout == "" and v.reward == 0.0


def test_memory_spread_over_processes(isolation):
    """Each process stays under RLIMIT_AS; together they pass the sandbox's total."""
    source = (
        "import os, time\nfor _ in range(4):\n    if os.fork() == 0:\n"
        "        b = b'x' * (150 << 20)\n        time.sleep(30)\ntime.sleep(30)\n"
    )
    v = run_hostile("memory over 4 processes", source, isolation, limits=ROOMY)
    assert v.limits_hit == ["memory"] and v.signal == "SIGKILL"
    assert v.notes == ["killed by the trainer: memory"]


def test_filling_the_disk(isolation):
    fill = "i = 0\nwhile True:\n    open(f'f{i}', 'wb').write(b'x' * (1 << 20))\n    i += 1\n"
    v = run_hostile("filling the disk", fill, isolation, limits=ROOMY)
    assert v.limits_hit == ["disk"] and "No space left" in v.error and v.reward == 0.0
    big = "open('big', 'wb').write(b'x' * (64 << 20))\n"
    v = run_hostile("one huge file", big, isolation, limits=ROOMY)
    assert v.limits_hit == ["file_size"] and "File too large" in v.error


def test_opening_too_many_files(isolation):
    source = "files = [open('/dev/null') for _ in range(1000)]\n"
    v = run_hostile("opening 1000 files", source, isolation, limits=ROOMY)
    assert v.limits_hit == ["open_files"] and "Too many open files" in v.error


def test_reading_and_writing_outside_its_directory(isolation, tmp_path):
    host_secret = secrets.token_hex(16)
    (tmp_path / "secret.txt").write_text(host_secret)
    tests_secret = secrets.token_hex(16)
    tests = f"EXPECTED = {tests_secret!r}\n\ndef test_x():\n    assert EXPECTED\n"
    reads = [
        tmp_path / "secret.txt",
        REPO / "README.md",
        REPO / "training" / "rewards" / "sandbox.py",
        Path.home() / ".bash_history",
        Path("/etc/shadow"),
    ]
    writes = [tmp_path / "escaped.txt", Path("/tmp/escaped-MARKER"), REPO / "escaped-MARKER"]
    source = f"""
import glob, os
needles = [{host_secret!r}, {tests_secret!r}]
for path in {[str(p) for p in reads]!r} + [{str(tmp_path)!r}, '/proc/1/root/etc']:
    try:
        data = os.listdir(path) if os.path.isdir(path) else open(path).read()
        print('GOT', path, str(data)[:60])
    except OSError as e:
        print('BLOCKED', path, type(e).__name__)
for path in {[str(p) for p in writes]!r} + ['../../escaped-MARKER', '/escaped-MARKER']:
    try:
        open(path, 'w').write('x')
        print('WROTE', path)
    except OSError as e:
        print('BLOCKED', path, type(e).__name__)
os.symlink({str(tmp_path / "secret.txt")!r}, 'link')
try:
    print('GOT link', open('link').read())
except OSError as e:
    print('BLOCKED link', type(e).__name__)
me = str(os.getpid())
for f in glob.glob('/sandbox/**', recursive=True) + glob.glob('/proc/[0-9]*/fd/*') + \\
        glob.glob('/proc/[0-9]*/environ') + glob.glob('/proc/[0-9]*/cmdline'):
    if f.startswith('/proc/' + me + '/') or f.startswith('/proc/self'):
        continue  # our own memory holds the tests: same interpreter (documented)
    try:
        data = open(f, 'rb').read(1 << 20).decode(errors='replace')
    except OSError:
        continue
    if any(n in data for n in needles):
        print('FOUND in', f)
"""
    v = run_hostile("reading/writing outside its directory", source, isolation, tests, ROOMY)
    assert v.reward == 1.0 and v.limits_hit == [], v
    assert host_secret not in v.stdout and tests_secret not in v.stdout
    assert "GOT" not in v.stdout and "WROTE" not in v.stdout and "FOUND" not in v.stdout
    assert v.stdout.count("BLOCKED") == len(reads) + 2 + len(writes) + 2 + 1
    for path in (*writes, tmp_path / "escaped.txt", REPO.parent / "escaped-MARKER"):
        assert not list(path.parent.glob(path.name.replace("MARKER", "*"))), path


def test_opening_a_network_socket(isolation):
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    port = listener.getsockname()[1]
    abstract = socket.socket(socket.AF_UNIX)
    abstract.bind(b"\0sharpen-test-MARKER")
    source = f"""
import socket
tries = [('tcp', ('127.0.0.1', {port})), ('tcp', ('1.1.1.1', 53)), ('dns', 'example.com'),
         ('udp', ('8.8.8.8', 53)), ('unix', b'\\0sharpen-test-MARKER')]
for kind, addr in tries:
    try:
        if kind == 'dns':
            socket.getaddrinfo(addr, 80)
        elif kind == 'unix':
            socket.socket(socket.AF_UNIX).connect(addr)
        elif kind == 'udp':
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.connect(addr)
            s.send(b'x')
        else:
            socket.create_connection(addr, timeout=1)
        print('CONNECTED', kind, addr)
    except OSError as e:
        print('BLOCKED', kind, e)
"""
    try:
        v = run_hostile("opening a network socket", source, isolation, limits=ROOMY)
        with pytest.raises(TimeoutError):
            listener.accept()
    finally:
        listener.close()
        abstract.close()
    assert "CONNECTED" not in v.stdout and v.stdout.count("BLOCKED") == 5, v.stdout


def test_setsid_child_outlives_its_parent(isolation):
    source = (
        "import os, subprocess, sys\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)', 'MARKER'],"
        " start_new_session=True)\n"
        "if os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
        "        os.execv(sys.executable, [sys.executable, '-c',"
        " 'import time; time.sleep(60)', 'MARKER'])\n    os._exit(0)\n"
        "print('parent done')\n"
    )
    v = run_hostile("setsid child outliving its parent", source, isolation, limits=ROOMY)
    assert v.reward == 1.0 and v.stdout == "parent done\n" and v.limits_hit == []
    assert v.duration_s < 10  # the run did not wait for the children (they sleep 60 s)


def test_killing_its_parent(isolation):
    source = (
        f"import os, signal\nfor pid in (os.getppid(), 1, {os.getpid()}, -1):\n"
        "    try:\n        os.kill(pid, signal.SIGKILL)\n        print('sent', pid)\n"
        "    except OSError as e:\n        print('BLOCKED', pid, e.strerror)\n"
        f"try:\n    os.killpg({os.getpgid(0)}, signal.SIGKILL)\n"
        "except OSError as e:\n    print('BLOCKED pgid', e.strerror)\n"
    )
    v = run_hostile("killing its parent", source, isolation, limits=ROOMY)
    # The launcher is another uid (or, under rootless bwrap, the sandbox ends with it): the
    # run ends either way, with a verdict, and this process is alive to read it.
    assert v.exit_code == 0 or v.signal == "SIGKILL"
    assert f"sent {os.getpid()}" not in v.stdout


def test_flooding_stdout(isolation):
    source = "import os, sys\nwhile True:\n    os.write(1, b'x' * 65536)\n    print('y' * 999, file=sys.stderr)\n"
    v = run_hostile("flooding stdout", source, isolation, limits=ROOMY)
    assert v.limits_hit == ["output"] and v.signal == "SIGKILL"
    assert v.stdout == "x" * LIMITS.output_bytes and len(v.stderr) == LIMITS.output_bytes
    assert "stdout truncated" in v.notes[0] and "killed by the trainer: output" in v.notes


def test_sandbox_dies_with_the_trainer(isolation):
    """SIGKILL the process that called run_program: the sandbox goes with it."""
    tail = secrets.token_hex(6)
    marker = f"orphan-{tail}"  # the trainer's own argv holds only the two halves
    program = (
        "import subprocess, sys, time\nsubprocess.Popen([sys.executable, '-c', "
        f"'import time; time.sleep(60)', 'orphan-' + {tail!r}], start_new_session=True)\n"
        "time.sleep(60)\n"
    )
    trainer = (
        "import sys\nfrom training.rewards import SandboxLimits, run_program\n"
        f"run_program({program!r}, limits=SandboxLimits(wall_time_s=60, cpu_time_s=60),"
        f" isolation={isolation!r})\n"
    )
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(
        [sys.executable, "-c", trainer],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join(
                [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
            ),
        },
    )
    try:
        # the marker only: any sandbox's tags would match this one's launcher at once, or
        # the last test's sandbox while it is torn down (two CI failures, after ~0 s)
        deadline = time.monotonic() + 60
        while not (found := strays(marker, tags=False)) and proc.poll() is None and (
            time.monotonic() < deadline
        ):
            time.sleep(0.1)
        if not found:  # say why: the trainer's output and where its children wait
            tree = process_report(proc.pid) if proc.poll() is None else "none"
            log.seek(0)
            raise AssertionError(
                f"the sandboxed child never started (trainer exit {proc.poll()}, load "
                f"{os.getloadavg()}, {psutil.virtual_memory().available >> 20} MiB free); "
                f"processes {tree}; output {log.read()[-2000:]!r}"
            )
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        log.close()
    assert_no_strays(marker, wait_s=5)


def process_report(pid: int) -> list[str]:
    """Each descendant: age, state, the kernel function it sleeps in, and its command."""
    out = []
    for c in psutil.Process(pid).children(recursive=True):
        try:
            wchan = Path(f"/proc/{c.pid}/wchan").read_text()
            age = time.time() - c.create_time()
            out.append(f"{c.pid} {age:.0f}s {c.status()} in {wchan}: {' '.join(c.cmdline())[:200]}")
        except (OSError, psutil.Error) as e:
            out.append(f"{c.pid}: {e!r}")
    return out
