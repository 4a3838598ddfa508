"""The math reward: 1.0 when a completion's final answer equals the reference, else 0.0.

Extraction and equivalence are HuggingFace's `math-verify` (LaTeX through
latex2sympy2_extended and sympy): numbers (0.5 == 1/2 == 50\\%), expressions (x+1 == 1+x),
sets, intervals and relations (x=5 == 5); floats agree to 6 decimals (0.3333333 == 1/3,
0.333 != 1/3). We add two rewrites it lacks: GSM8K's `#### X` is read as `\\boxed{X}`, and
scientific notation (1e3, 2.5E-4) becomes a plain decimal first (latex2sympy reads `1e3` as
1*e*3).

The final answer of a completion is, in order: the last `\\boxed{}` (as in MATH's
`last_boxed_only_string`; math-verify 0.9 alone reads all the boxes as one set, so an
intermediate box would spoil a right final one); else math-verify's answer phrases ("final
answer is X", "answer: X", "the answer is X", X a number, a plain expression like 3/4, or
LaTeX in `$...$`, within 50 characters of the word "answer"). A bare number elsewhere in the
text is not an answer.

Bounded time. sympy and the LaTeX parser can run for a very long time on inputs such as
9^{9^{9^9}} or 30 nested brackets, and math-verify's own timeout is `signal.alarm`, which
works only in a main thread (GRPO scores completions from threads). So every check runs in
a worker process (`python -I` on this file) under a per-request alarm of `timeout_s`, an
RLIMIT_CPU of the same budget and a 4 GiB address-space cap; the caller kills the worker if
no reply comes within `timeout_s + 1 s` (C code that ignores the alarm). A timeout, a crash
or a garbage input scores 0.0; only a worker that cannot start (math-verify missing)
raises. Workers are reused, so start-up (about 0.3 s) is paid once per concurrent caller,
and is not counted in `timeout_s`.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import re
import select
import subprocess
import sys
import threading
import time
from decimal import Decimal, InvalidOperation
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 5.0
_GRACE_S = 1.0  # after the worker's own alarm, before the caller kills it
_START_TIMEOUT_S = 60.0  # worker start-up (python + math-verify import), a loaded machine
_MEMORY_BYTES = 4 << 30


def extract_final_answer(completion: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> str | None:
    """The completion's final answer as math-verify extracted it (normalised LaTeX or the
    matched text), or None when it has none or extraction timed out."""
    if not isinstance(completion, str):
        return None
    value = _call({"op": "extract", "completion": completion}, timeout_s, timeout_s + _GRACE_S)
    return value if isinstance(value, str) else None


def math_reward(completion: str, reference: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> float:
    """1.0 if the completion's final answer is equivalent to `reference` (a bare answer such
    as "1/2", "\\frac{1}{2}", "[0, 1)", or text holding a `\\boxed{}`), else 0.0; never
    raises on bad input and returns within about `timeout_s + 1` s."""
    if not isinstance(completion, str) or not isinstance(reference, str):
        return 0.0
    req = {"op": "reward", "completion": completion, "reference": reference}
    return 1.0 if _call(req, timeout_s, timeout_s + _GRACE_S) is True else 0.0


# --- caller side: a pool of worker processes --------------------------------------------


class _Worker:
    """One `python -I math_answer.py` process speaking one JSON line per request/reply."""

    def __init__(self) -> None:
        # -I: no script directory on sys.path (this folder's code.py would shadow stdlib
        # `code`), no PYTHON* variables, no user site; the venv's site-packages stay.
        self.proc = subprocess.Popen(
            [sys.executable, "-I", os.path.abspath(__file__)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self._buf = b""
        hello = self.read(_START_TIMEOUT_S)
        if hello is None or "error" in hello:
            self.close()
            why = hello["error"] if hello else "no reply within the start-up time"
            raise RuntimeError(f"math reward worker failed to start: {why}")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def send(self, req: dict[str, Any]) -> bool:
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(json.dumps(req).encode("ascii") + b"\n")
            self.proc.stdin.flush()
            return True
        except (BrokenPipeError, OSError):
            return False

    def read(self, wait_s: float) -> dict[str, Any] | None:
        """The next reply line, or None on timeout or if the worker died."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + wait_s
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return None
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return json.loads(line)

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            if f is not None:
                f.close()


_idle: list[_Worker] = []
_lock = threading.Lock()


def _call(req: dict[str, Any], soft_s: float, hard_s: float) -> Any:
    """Run one request: the worker stops itself after `soft_s`; past `hard_s` it is killed."""
    with _lock:
        worker = _idle.pop() if _idle else None
    if worker is None or not worker.alive():
        if worker is not None:
            worker.close()
        worker = _Worker()
    reply = worker.read(hard_s) if worker.send({**req, "timeout": soft_s}) else None
    if reply is None:
        log.warning("math reward worker gave no answer within %.1f s; killed, scored 0", hard_s)
        worker.close()
        return None
    with _lock:
        _idle.append(worker)
    return reply.get("value")


def _close_idle() -> None:
    with _lock:
        workers, _idle[:] = list(_idle), []
    for w in workers:
        w.close()


def _forget_after_fork() -> None:
    """A forked child (a data-loader worker) must not talk on its parent's pipes."""
    global _lock
    _lock = threading.Lock()
    _idle.clear()


atexit.register(_close_idle)
os.register_at_fork(after_in_child=_forget_after_fork)


# --- worker side --------------------------------------------------------------------------

_HASHES = re.compile(r"^[ \t]*####[ \t]*(.+?)[ \t]*$", re.MULTILINE)
_SCIENTIFIC = re.compile(r"(?<![\w.\\])(\d+(?:\.\d+)?)[eE]([+-]?\d{1,3})(?![\w]|\.\d)")


class _Deadline(BaseException):
    """The request's alarm; a BaseException so math-verify's `except Exception` lets it by."""


def _rewrite(text: str) -> str:
    """GSM8K's `#### X` as `\\boxed{X}`; 1e3 as 1000 (exact, via Decimal); the text from
    the last `\\boxed` on, when there is one."""

    def boxed(m: re.Match[str]) -> str:
        answer = m.group(1).strip().rstrip(".").strip("$").strip()
        return "\\boxed{" + answer + "}"

    def decimal(m: re.Match[str]) -> str:
        try:
            return format(Decimal(f"{m.group(1)}e{m.group(2)}"), "f")
        except InvalidOperation:
            return m.group(0)

    text = _HASHES.sub(boxed, text)
    last_box = text.rfind("\\boxed")
    return _SCIENTIFIC.sub(decimal, text[last_box:] if last_box >= 0 else text)


def _parse(text: str) -> list[Any]:
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse

    config = [
        LatexExtractionConfig(boxed_match_priority=0, try_extract_without_anchor=False),
        ExprExtractionConfig(try_extract_without_anchor=False),
    ]
    # timeouts off: signal-based inside the library; our own alarm bounds the request
    return parse(text, config, extraction_mode="first_match", parsing_timeout=None)


def _handle(req: dict[str, Any]) -> Any:
    from math_verify import verify

    answer = _parse(_rewrite(req["completion"]))
    if req["op"] == "extract":
        strings = [a for a in answer if isinstance(a, str) and a]
        return strings[-1] if strings else (str(answer[0]) if answer else None)
    reference = req["reference"].strip()
    if len(reference) > 1 and reference[0] == reference[-1] == "$":
        reference = reference.strip("$")
    if "\\boxed" not in reference and "####" not in reference:
        reference = "\\boxed{" + reference + "}"
    gold = _parse(_rewrite(reference))
    return bool(gold and answer and verify(gold, answer, timeout_seconds=None))


def _serve() -> None:
    import resource
    import signal

    out = os.fdopen(os.dup(1), "w", encoding="ascii")  # replies only; stray prints -> stderr
    os.dup2(2, 1)

    def reply(obj: dict[str, Any]) -> None:
        out.write(json.dumps(obj) + "\n")
        out.flush()

    try:
        import math_verify  # noqa: F401
    except ImportError as e:
        reply({"error": f"{e}; install math-verify[antlr4_13_2]"})
        return
    logging.disable(logging.CRITICAL)  # math-verify logs every failed parse
    _set_soft_limit(resource.RLIMIT_AS, _MEMORY_BYTES)
    _set_soft_limit(resource.RLIMIT_CORE, 0)  # RLIMIT_CPU ends us by SIGXCPU: no core file

    def on_alarm(signum: int, frame: Any) -> None:
        raise _Deadline

    signal.signal(signal.SIGALRM, on_alarm)
    reply({"ready": True})
    for line in sys.stdin:
        req = json.loads(line)
        # the CPU limit also ends a worker stuck in C code after its caller died
        used = resource.getrusage(resource.RUSAGE_SELF)
        cpu_s = used.ru_utime + used.ru_stime + req["timeout"]
        _set_soft_limit(resource.RLIMIT_CPU, int(cpu_s) + 2)
        try:
            signal.setitimer(signal.ITIMER_REAL, req["timeout"])
            try:
                value = _handle(req)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
        except (_Deadline, Exception):
            value = None
        reply({"value": value})


def _set_soft_limit(which: int, soft: int) -> None:
    """Set a soft rlimit, never above the hard one (which only root may raise)."""
    import resource

    hard = resource.getrlimit(which)[1]
    resource.setrlimit(which, (soft if hard == resource.RLIM_INFINITY else min(soft, hard), hard))


if __name__ == "__main__":
    _serve()
