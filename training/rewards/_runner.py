"""Sandbox runner: runs the untrusted program, then its tests, inside the sandbox, as uid
65534 with the rlimits already set. Started by the launcher as `python -I -S -c BOOT` with
its config (program, tests, test names, nonce) as JSON on stdin. Stdlib only.

It reports on fd 3, a pipe the trainer reads, never on stdout/stderr (those are the
program's, captured and truncated). Each record is one JSON line carrying the run's nonce;
the trainer ignores lines without it, so nothing the program prints can forge a verdict. A
test counts as passed only when its own record arrives: exiting early, crashing or killing
processes leaves the rest unreported, hence failed. Records are written by this process
only: a child that the program forks and that falls back into this code exits at once. The
functions that write them are bound before the program runs, so monkeypatching `os` or
`json` changes nothing. Not prevented (same interpreter): a program that walks the runner's
frames to rewrite them, or returns objects whose `__eq__` always holds; tests that must
resist the latter compare types too (`assert type(r) is int and r == 4`).

The test format (the trainer already parsed TESTS.py, so the names are fixed before the
program runs): without tests the program runs as `__main__` and passes when it exits 0;
with tests it is imported as module `solution`, then TESTS.py runs in a namespace holding
the solution's names (`import solution` works too); each top-level `test_*` function is a
test, or, when there are none, the whole script is one test named "script".
"""

from __future__ import annotations

import builtins
import errno
import json
import linecache
import os
import sys
import traceback
import types

RESULT_FD = 3
PROGRAM_FILE = "/sandbox/solution.py"  # for tracebacks only: the source is never on disk
TESTS_FILE = "tests.py"
_LIMIT_ERRNOS = {
    errno.EFBIG: "file_size",
    errno.ENOSPC: "disk",
    errno.EDQUOT: "disk",
    errno.EMFILE: "open_files",
    errno.ENFILE: "open_files",
}


# Bound before the program runs: patching os.write or json.dumps can't rewrite our records.
_write, _dumps, _getpid, _exit = os.write, json.dumps, os.getpid, os._exit


class Reporter:
    def __init__(self, nonce: str) -> None:
        self.nonce, self.pid = nonce, _getpid()

    def __call__(self, kind: str, **fields: object) -> None:
        if _getpid() != self.pid:  # a fork of the program that returned into the runner
            _exit(0)
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # the program may have closed or replaced it
                pass
        for key, value in fields.items():
            if isinstance(value, str):
                fields[key] = value[:600]  # one record stays under PIPE_BUF: atomic
        line = _dumps({"n": self.nonce, "t": kind, **fields}) + "\n"
        _write(RESULT_FD, line.encode())


def limit_of(exc: BaseException) -> str | None:
    """The limit an exception (or one in its chain) says was hit, if any."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, MemoryError):
            return "memory"
        if isinstance(exc, OSError):
            if exc.errno == errno.EAGAIN and isinstance(exc, BlockingIOError):
                return "processes"  # fork/clone refused by RLIMIT_NPROC
            if exc.errno in _LIMIT_ERRNOS:
                return _LIMIT_ERRNOS[exc.errno]
        exc = exc.__cause__ or exc.__context__
    return None


def describe(exc: BaseException) -> str:
    """One line: the exception and, for a bare assert, the failing test line."""
    text = "".join(traceback.format_exception_only(type(exc), exc)).strip().splitlines()
    head = text[-1] if text else type(exc).__name__
    frames = traceback.extract_tb(exc.__traceback__)
    if frames:
        last = frames[-1]
        head += f" ({os.path.basename(last.filename)}:{last.lineno}: {(last.line or '').strip()})"
    return head


def _register_source(filename: str, source: str) -> None:
    lines = source.splitlines(keepends=True)
    linecache.cache[filename] = (len(source), None, lines, filename)


def _exit_code(exc: SystemExit) -> int:
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code & 0xFF
    print(exc.code, file=sys.stderr)
    return 1


def print_traceback(exc: BaseException) -> None:
    """The traceback as Python would print it, without the runner's own frames."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == "sandbox-runner":
        tb = tb.tb_next
    traceback.print_exception(type(exc), exc, tb)


def _failed(report: Reporter, kind: str, exc: BaseException) -> None:
    print_traceback(exc)
    limit = limit_of(exc)
    if limit:
        report("limit", limit=limit)
    report(kind, err=describe(exc))


def run_script(report: Reporter, source: str) -> int:
    """No tests: the program is `__main__`; it passes when it exits 0."""
    _register_source(PROGRAM_FILE, source)
    sys.argv = [PROGRAM_FILE]
    globs = {"__name__": "__main__", "__file__": PROGRAM_FILE, "__builtins__": builtins}
    code, err = 0, ""
    try:
        exec(compile(source, PROGRAM_FILE, "exec"), globs)
    except SystemExit as e:
        code = _exit_code(e)
        err = f"exit status {code}" if code else ""
    except BaseException as e:  # the program's failure is the verdict
        _failed(report, "program_error", e)
        code, err = 1, describe(e)
    report("test", name="program", ok=code == 0, err=err)
    return code


def run_tests(report: Reporter, source: str, tests: str, names: list[str]) -> int:
    _register_source(PROGRAM_FILE, source)
    _register_source(TESTS_FILE, tests)
    module = types.ModuleType("solution")
    module.__file__ = PROGRAM_FILE
    sys.modules["solution"] = module
    sys.argv = [PROGRAM_FILE]
    try:
        exec(compile(source, PROGRAM_FILE, "exec"), module.__dict__)
    except BaseException as e:  # SystemExit at import fails the program too
        _failed(report, "program_error", e)
        return 1
    report("imported")
    namespace = dict(module.__dict__, __name__="tests", __file__=TESTS_FILE)
    script = names == ["script"]
    try:
        exec(compile(tests, TESTS_FILE, "exec"), namespace)
    except BaseException as e:
        if script:
            _failed(report, "test_error", e)
            report("test", name="script", ok=False, err=describe(e))
            return 1
        _failed(report, "tests_error", e)
        return 1
    if script:
        report("test", name="script", ok=True, err="")
        return 0
    failures = 0
    for name in names:
        fn = namespace.get(name)
        try:
            if not callable(fn):
                raise NameError(f"{name} is not a function")
            fn()
        except BaseException as e:  # SystemExit in a test is a failure
            print_traceback(e)
            limit = limit_of(e)
            if limit:
                report("limit", limit=limit)
            report("test", name=name, ok=False, err=describe(e))
            failures += 1
        else:
            report("test", name=name, ok=True, err="")
    return 1 if failures else 0


def main(cfg: dict) -> None:
    devnull = os.open("/dev/null", os.O_RDONLY)
    os.dup2(devnull, 0)  # the config (it holds the tests) leaves fd 0
    os.close(devnull)
    for stream in (sys.stdout, sys.stderr):
        stream.reconfigure(line_buffering=True)
    report = Reporter(cfg.pop("nonce"))
    report("start")
    tests = cfg.get("tests")
    if tests is None:
        code = run_script(report, cfg["program"])
    else:
        code = run_tests(report, cfg["program"], tests, cfg["test_names"])
    report("done")
    _exit(code)


if __name__ == "__sandbox__":
    main(globals()["CONFIG"])
