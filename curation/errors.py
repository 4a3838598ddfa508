"""Turn a failed Spark job into one line a user can act on.

A Spark failure reaches Python as a Py4J error wrapping a chain of Java exceptions, often
with a Python worker's traceback inside; the console shows none of it unless `-v` (see
`spark_session`). The one line names the root cause: the deepest Java cause, or the last
line of a Python worker's traceback, plus where the full log is.
"""

from __future__ import annotations

import re

_NOISE = re.compile(r"^(\s+at |\s*\.\.\. \d+ more|Caused by: |Traceback|\s+File \")")


class JobFailed(RuntimeError):
    """A curation job failed; the message is one line (rerun with -v for traces)."""

    user_facing = True


def _java_root(e: BaseException) -> str | None:
    java = getattr(e, "java_exception", None)
    if java is None:
        return None
    try:
        cause = java
        while cause.getCause() is not None and cause.getCause() != cause:
            cause = cause.getCause()
        return f"{cause.getClass().getSimpleName()}: {cause.getMessage()}"
    except Exception:  # the JVM is gone: fall back to the text
        return None


def _python_worker_error(text: str) -> str | None:
    """The last `SomeError: message` line of a Python traceback inside `text`."""
    if "Traceback (most recent call last)" not in text:
        return None
    tail = text.split("Traceback (most recent call last)")[-1]
    lines = [ln.strip() for ln in tail.splitlines() if ln.strip() and not _NOISE.match(ln)]
    errors = [ln for ln in lines if re.match(r"^[\w.]+(Error|Exception|Exit)\b", ln)]
    return errors[-1] if errors else None


def root_cause(e: BaseException) -> str:
    """One line naming the root cause of `e` (a Spark, Py4J or Python error)."""
    text = str(e)
    found = _python_worker_error(text) or _java_root(e)
    if found is None:
        first = next((ln.strip() for ln in text.splitlines() if ln.strip()), type(e).__name__)
        found = first
    if "No space left on device" in text and "No space left" not in found:
        found = f"No space left on device ({found})"
    return " ".join(found.split())


def is_spark_error(e: BaseException) -> bool:
    mod = type(e).__module__ or ""
    return mod.startswith(("py4j", "pyspark"))
