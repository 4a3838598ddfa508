"""Sandbox launcher: the first process inside the sandbox's namespaces, run before any
untrusted code, by `python -I -S -c BOOT` with its config as JSON on stdin.

Why a launcher of our own on top of bubblewrap/unshare: those tools give the namespaces and
the filesystem view, but neither can both (a) drop a root caller to an unprivileged uid
after the Python installation under /root has been bound in, nor (b) give each sandbox its
own count for RLIMIT_NPROC. The kernel never enforces RLIMIT_NPROC for uid 0, even inside a
user namespace mapped to root, and counts per (user namespace, uid): so the runner gets a
fresh user namespace of its own, with uid 65534 inside, and its rlimits are set only after
that namespace exists. Stdlib only: it runs on the bare interpreter, outside any venv.

In "unshare" mode it also builds the filesystem (bwrap does that itself): a tmpfs root
holding read-only binds of /usr and the interpreter's prefix, four device nodes, a fresh
/proc and the size-capped tmpfs /sandbox; then pivot_root and detach the old root, so no
path reaches the caller's files. As PID 1 of the sandbox's PID namespace it reaps orphans;
when the runner exits the launcher exits, and the kernel kills whatever is left.
"""

from __future__ import annotations

import ctypes
import json
import os
import platform
import resource
import sys

CLONE_NEWUSER = 0x10000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MS_NOATIME, MS_NODIRATIME, MS_RELATIME = 1024, 2048, 1 << 21
MNT_DETACH = 2
PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS = 4, 38
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "ppc64le": 203, "s390x": 217}
SANDBOX_UID = 65534  # "nobody": never root, never the caller's uid inside
LAUNCH_FAILED = 125  # our exit code when the sandbox could not be set up
# statvfs flags that a remount inside a user namespace must keep (they are locked)
_LOCKED = (
    (os.ST_NOSUID, MS_NOSUID),
    (os.ST_NODEV, MS_NODEV),
    (os.ST_NOEXEC, MS_NOEXEC),
    (os.ST_NOATIME, MS_NOATIME),
    (os.ST_NODIRATIME, MS_NODIRATIME),
    (os.ST_RELATIME, MS_RELATIME),
)
BOOT = (
    "import json,sys;c=json.loads(sys.stdin.buffer.read());"
    "exec(compile(c.pop('code'),c.pop('filename'),'exec'),"
    "{'__name__':'__sandbox__','CONFIG':c})"
)

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_char_p,
]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _b(s: str | None) -> bytes | None:
    return None if s is None else s.encode()


def _mount(
    src: str | None, target: str, fstype: str | None, flags: int, data: str | None = None
) -> None:
    _check(_libc.mount(_b(src), _b(target), _b(fstype), flags, _b(data)), f"mount {target}")


def _remount_ro(target: str) -> None:
    keep = os.statvfs(target).f_flag
    flags = MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV
    for st, ms in _LOCKED:
        flags |= ms if keep & st else 0
    _mount(None, target, None, flags)


def _bind(src: str, target: str, read_only: bool = True) -> None:
    if os.path.isdir(src):
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        open(target, "a").close()
    _mount(src, target, None, MS_BIND | MS_REC)
    if read_only:
        _remount_ro(target)


def build_root(cfg: dict) -> None:
    """unshare mode: a new root with only what the interpreter needs, then pivot into it."""
    root = "/tmp"  # any existing directory: the tmpfs over it exists only in our namespace
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    _mount("sandbox-root", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=4m,mode=0755")
    for path in cfg["ro_binds"]:
        _bind(path, root + path)
    for link, target in cfg["symlinks"].items():
        os.symlink(target, root + link)
    for dev in cfg["devices"]:
        _bind(dev, root + dev, read_only=False)
    os.makedirs(root + "/proc")
    _mount("proc", root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    os.makedirs(root + "/sandbox")
    _mount(
        "sandbox",
        root + "/sandbox",
        "tmpfs",
        MS_NOSUID | MS_NODEV,
        f"size={cfg['disk_bytes']},mode=1777",
    )
    os.chdir(root)
    nr = SYS_PIVOT_ROOT.get(platform.machine())
    if nr is None:
        raise OSError(f"pivot_root: unknown syscall number on {platform.machine()}")
    _check(_libc.syscall(nr, b".", b"."), "pivot_root")  # the old root is now stacked on "."
    _check(_libc.umount2(b".", MNT_DETACH), "detach old root")
    os.chdir("/")
    _remount_ro("/")


def _in_initial_userns() -> bool:
    with open("/proc/self/uid_map") as f:
        return f.read().split() == ["0", "0", "4294967295"]


def _become_sandbox_user() -> None:
    """uid 65534 in a user namespace of our own: no capabilities after exec, and a fresh
    per-namespace process count for RLIMIT_NPROC."""
    if os.getuid() == 0 and _in_initial_userns():  # real root: leave it for nobody first
        os.setgroups([])
        os.setgid(SANDBOX_UID)
        os.setuid(SANDBOX_UID)
    # Writing our own uid_map needs us dumpable (main() cleared it, a uid change does too);
    # nothing untrusted runs yet, and exec sets it anew.
    _libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)
    uid, gid = os.getuid(), os.getgid()
    _check(_libc.unshare(CLONE_NEWUSER), "unshare(CLONE_NEWUSER)")
    for name, text in (
        ("setgroups", "deny"),
        ("uid_map", f"{SANDBOX_UID} {uid} 1"),
        ("gid_map", f"{SANDBOX_UID} {gid} 1"),
    ):
        with open(f"/proc/self/{name}", "w") as f:
            f.write(text)


def _set_limits(lim: dict) -> None:
    mb = 1024 * 1024
    for res, value in (
        (resource.RLIMIT_CORE, 0),
        (resource.RLIMIT_AS, lim["memory_mb"] * mb),
        (resource.RLIMIT_NPROC, lim["processes"]),
        (resource.RLIMIT_FSIZE, lim["file_size_mb"] * mb),
        (resource.RLIMIT_NOFILE, lim["open_files"]),
    ):
        resource.setrlimit(res, (value, value))
    cpu = max(1, int(lim["cpu_time_s"]))  # SIGXCPU at the soft limit, SIGKILL a second later
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))


def _exec_runner(cfg: dict, runner_cfg: int) -> None:
    _become_sandbox_user()
    os.nice(cfg["nice"])  # the trainer wins any contention for the CPU...
    try:  # ...also where the scheduler groups by session (autogroup): lower our group too
        with open("/proc/self/autogroup", "w") as f:
            f.write(str(cfg["nice"]))
    except OSError:
        pass
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    os.dup2(runner_cfg, 0)  # first: the memfd may itself be fd 3
    os.dup2(cfg["result_fd"], 3)
    os.closerange(4, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
    _set_limits(cfg["limits"])
    os.chdir("/sandbox")
    env = {"PATH": "/usr/bin:/bin", "HOME": "/sandbox", "TMPDIR": "/sandbox", "LANG": "C.UTF-8"}
    py = cfg["python"]
    os.execve(py, [py, "-I", "-S", "-B", "-c", BOOT, "sharpen-sandbox-runner"], env)


def main(cfg: dict) -> None:
    os.umask(0o022)
    _libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)  # a same-uid runner can't read our memory or fds
    devnull = os.open("/dev/null", os.O_RDONLY)
    os.dup2(devnull, 0)  # our config (it holds the tests) is gone from fd 0
    os.close(devnull)
    try:
        if cfg["mode"] == "unshare":
            build_root(cfg)
        runner_cfg = os.memfd_create("sharpen-runner-config", 0)
        with open(runner_cfg, "wb", closefd=False) as f:
            f.write(json.dumps(cfg["runner"]).encode())
        os.lseek(runner_cfg, 0, os.SEEK_SET)
    except Exception as e:
        print(f"sandbox launcher: {e}", file=sys.stderr, flush=True)
        os._exit(LAUNCH_FAILED)
    pid = os.fork()
    if pid == 0:
        try:
            _exec_runner(cfg, runner_cfg)
        except BaseException as e:  # anything here is a set-up failure
            os.write(2, f"sandbox launcher: {e}\n".encode())
        os._exit(LAUNCH_FAILED)
    os.close(runner_cfg)
    os.close(cfg["result_fd"])
    while True:  # as PID 1 (unshare mode) orphans are ours to reap
        try:
            wpid, status = os.wait()
        except ChildProcessError:
            os._exit(LAUNCH_FAILED)
        if wpid == pid:
            code = os.waitstatus_to_exitcode(status)
            os._exit(code if code >= 0 else 128 - code)


if __name__ == "__sandbox__":
    main(globals()["CONFIG"])
