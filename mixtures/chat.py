"""Reading chat data from JSONL: SFT conversations, preference pairs and RL/eval tasks.

One JSON object per line (plain or ``.gz``); blank lines are ignored.

    SFT:          {"messages": [{"role": "system"|"user"|"assistant", "content": str}, ...]}
    preferences:  {"prompt": str | [messages ending with a user turn],
                   "chosen": str, "rejected": str}
    tasks:        {"prompt": str | [messages ending with a user turn],
                   "answer": str} or {"prompt": ..., "tests": "<python test code>"}

A task carries exactly one of ``answer`` (a reference final answer, for the math reward)
and ``tests`` (code the completion must pass, for the code reward); null counts as absent.

Both may carry ``id`` (default ``<file>:<line>``) and ``domain``; other fields are ignored.
A conversation is an optional system message, then user and assistant turns alternating,
starting with the user and ending with the assistant (a preference prompt ends with the
user instead). A malformed record is skipped, counted by reason in `ReadStats` (which the
stage manifest records) and logged naming its file and line; with ``strict`` the first one
is a `MalformedRecordError` naming both, so a bad data set fails in one line, not later in
a training step.
"""

from __future__ import annotations

import gzip
import json
import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

ROLES = ("system", "user", "assistant")
# Why a record was skipped: the manifest's `records.skipped` keys.
INVALID_JSON = "invalid_json"  # not JSON, not UTF-8, or not an object
MISSING_FIELD = "missing_field"
WRONG_TYPE = "wrong_type"
UNKNOWN_ROLE = "unknown_role"
WRONG_ROLE_ORDER = "wrong_role_order"
EMPTY_ASSISTANT_TURN = "empty_assistant_turn"  # an assistant turn, chosen or rejected reply
EMPTY_TURN = "empty_turn"  # an empty system or user message
IDENTICAL_RESPONSES = "identical_responses"  # chosen == rejected: no preference to learn
ANSWER_AND_TESTS = "answer_and_tests"  # a task with both: which reward applies is unclear
EMPTY_TARGET = "empty_target"  # a task's answer or tests is blank: nothing to check against
TOO_LONG = "too_long"  # over --max-tokens once rendered (counted by the stage writers)
LOGGED_PER_FILE = 20  # skipped lines logged one by one; the rest are only counted


class MalformedRecordError(ValueError):
    """A record breaks the chat format; `reason` is one of the skip reasons above."""

    def __init__(self, reason: str, detail: str, where: str = "") -> None:
        super().__init__(f"{where}: {reason}: {detail}" if where else f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


@dataclass
class ReadStats:
    """What reading one file kept and skipped; `record` is what the manifest stores."""

    path: str
    strict: bool = False
    lines: int = 0  # non-blank lines
    kept: int = 0
    skipped: Counter[str] = field(default_factory=Counter)

    def skip(self, line: int, error: MalformedRecordError) -> None:
        """Count (and log) a malformed record; in strict mode it is an error instead."""
        where = f"{self.path}:{line}"
        if self.strict:
            raise MalformedRecordError(error.reason, error.detail, where) from None
        self.skipped[error.reason] += 1
        if sum(self.skipped.values()) <= LOGGED_PER_FILE:
            log.warning("%s: skipped (%s): %s", where, error.reason, error.detail)

    def drop(self, line: int, error: MalformedRecordError) -> None:
        """Skip a record the reader had kept, e.g. one too long once tokenised."""
        self.kept -= 1
        self.skip(line, error)

    def record(self) -> dict[str, Any]:
        skipped = dict(sorted(self.skipped.items()))
        return {"path": self.path, "lines": self.lines, "kept": self.kept, "skipped": skipped}


@dataclass(frozen=True)
class Conversation:
    line: int
    id: str
    messages: list[dict[str, str]]  # validated; only role and content
    domain: str | None


@dataclass(frozen=True)
class PreferencePair:
    line: int
    id: str
    prompt: list[dict[str, str]]  # a conversation ending with a user turn
    chosen: str
    rejected: str
    domain: str | None


@dataclass(frozen=True)
class TaskRecord:
    line: int
    id: str
    prompt: list[dict[str, str]]  # a conversation ending with a user turn
    answer: str | None  # exactly one of answer and tests is set
    tests: str | None
    domain: str | None


def check_messages(messages: object, *, last: str = "assistant") -> list[dict[str, str]]:
    """A validated copy of a message list, or the `MalformedRecordError` that rejects it."""
    if not isinstance(messages, list):
        raise MalformedRecordError(WRONG_TYPE, f"messages is {type(messages).__name__}, not a list")
    if not messages:
        raise MalformedRecordError(MISSING_FIELD, "messages is empty")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise MalformedRecordError(WRONG_TYPE, f"message {i} is not an object")
        for key in ("role", "content"):
            if key not in m:
                raise MalformedRecordError(MISSING_FIELD, f"message {i} has no {key!r}")
            if not isinstance(m[key], str):
                raise MalformedRecordError(WRONG_TYPE, f"message {i} {key} is not a string")
        if m["role"] not in ROLES:
            raise MalformedRecordError(UNKNOWN_ROLE, f"message {i} role {m['role']!r}")
        out.append({"role": m["role"], "content": m["content"]})
    roles = [m["role"] for m in out]
    body = roles[1:] if roles[0] == "system" else roles
    for i, role in enumerate(body):
        expected = ("user", "assistant")[i % 2]
        if role != expected:
            at = i + len(roles) - len(body)
            raise MalformedRecordError(
                WRONG_ROLE_ORDER, f"message {at} is {role!r}, expected {expected!r}"
            )
    if not body or body[-1] != last:
        raise MalformedRecordError(
            WRONG_ROLE_ORDER, f"ends with {roles[-1]!r}, expected a final {last!r} turn"
        )
    for i, m in enumerate(out):
        if not m["content"].strip():
            reason = EMPTY_ASSISTANT_TURN if m["role"] == "assistant" else EMPTY_TURN
            raise MalformedRecordError(reason, f"message {i} ({m['role']}) is empty")
    return out


def read_conversations(
    path: str | Path, *, strict: bool = False, stats: ReadStats | None = None
) -> Iterator[Conversation]:
    """The valid conversations of an SFT JSONL file, in file order."""
    stats = _stats(path, strict, stats)
    for line, record in _records(Path(path), stats):
        try:
            if "messages" not in record:
                raise MalformedRecordError(MISSING_FIELD, "no 'messages'")
            messages = check_messages(record["messages"])
            rid, domain = _id_and_domain(record, Path(path), line)
        except MalformedRecordError as e:
            stats.skip(line, e)
            continue
        stats.kept += 1
        yield Conversation(line, rid, messages, domain)


def read_preferences(
    path: str | Path, *, strict: bool = False, stats: ReadStats | None = None
) -> Iterator[PreferencePair]:
    """The valid (prompt, chosen, rejected) records of a preference JSONL file."""
    stats = _stats(path, strict, stats)
    for line, record in _records(Path(path), stats):
        try:
            pair = _preference(record, Path(path), line)
        except MalformedRecordError as e:
            stats.skip(line, e)
            continue
        stats.kept += 1
        yield pair


def read_tasks(
    path: str | Path, *, strict: bool = False, stats: ReadStats | None = None
) -> Iterator[TaskRecord]:
    """The valid (prompt, answer | tests) records of a task JSONL file (RL, evaluation)."""
    stats = _stats(path, strict, stats)
    for line, record in _records(Path(path), stats):
        try:
            task = _task(record, Path(path), line)
        except MalformedRecordError as e:
            stats.skip(line, e)
            continue
        stats.kept += 1
        yield task


def _stats(path: str | Path, strict: bool, stats: ReadStats | None) -> ReadStats:
    stats = stats if stats is not None else ReadStats(str(path))
    stats.strict = strict
    return stats


def _prompt(record: dict[str, Any]) -> list[dict[str, str]]:
    """A record's prompt (a string is one user turn) as a validated message list."""
    if "prompt" not in record:
        raise MalformedRecordError(MISSING_FIELD, "no 'prompt'")
    prompt = record["prompt"]
    if isinstance(prompt, str):
        prompt = [{"role": "user", "content": prompt}]
    elif not isinstance(prompt, list):
        raise MalformedRecordError(WRONG_TYPE, "prompt is neither a string nor a message list")
    return check_messages(prompt, last="user")


def _preference(record: dict[str, Any], path: Path, line: int) -> PreferencePair:
    for key in ("prompt", "chosen", "rejected"):
        if key not in record:
            raise MalformedRecordError(MISSING_FIELD, f"no {key!r}")
    messages = _prompt(record)
    for key in ("chosen", "rejected"):
        if not isinstance(record[key], str):
            raise MalformedRecordError(WRONG_TYPE, f"{key} is not a string (the assistant reply)")
        if not record[key].strip():
            raise MalformedRecordError(EMPTY_ASSISTANT_TURN, f"{key} is empty")
    if record["chosen"] == record["rejected"]:
        raise MalformedRecordError(IDENTICAL_RESPONSES, "chosen and rejected are the same text")
    rid, domain = _id_and_domain(record, path, line)
    return PreferencePair(line, rid, messages, record["chosen"], record["rejected"], domain)


def _task(record: dict[str, Any], path: Path, line: int) -> TaskRecord:
    messages = _prompt(record)
    given = [k for k in ("answer", "tests") if record.get(k) is not None]
    if not given:
        raise MalformedRecordError(MISSING_FIELD, "no 'answer' or 'tests' (a task needs one)")
    if len(given) == 2:
        raise MalformedRecordError(ANSWER_AND_TESTS, "both 'answer' and 'tests'; give one")
    (key,) = given
    if not isinstance(record[key], str):
        raise MalformedRecordError(WRONG_TYPE, f"{key} is not a string")
    if not record[key].strip():
        raise MalformedRecordError(EMPTY_TARGET, f"{key} is empty")
    rid, domain = _id_and_domain(record, path, line)
    return TaskRecord(line, rid, messages, record.get("answer"), record.get("tests"), domain)


def _id_and_domain(record: dict[str, Any], path: Path, line: int) -> tuple[str, str | None]:
    rid = record.get("id", f"{path.name}:{line}")
    if not isinstance(rid, str | int) or isinstance(rid, bool):
        raise MalformedRecordError(WRONG_TYPE, "id is not a string or integer")
    domain = record.get("domain")
    if domain is not None and (not isinstance(domain, str) or not domain.strip()):
        raise MalformedRecordError(WRONG_TYPE, "domain is not a non-empty string")
    return str(rid), domain


def _records(path: Path, stats: ReadStats) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, JSON object) per non-blank line; bad lines go to `stats.skip`."""
    opener = gzip.open if path.name.endswith(".gz") else open
    line = 0
    try:
        with opener(path, "rb") as f:
            for line, raw in enumerate(f, start=1):
                if not raw.strip():
                    continue
                stats.lines += 1
                try:
                    record = json.loads(raw.decode("utf-8"))
                except (UnicodeDecodeError, json.JSONDecodeError) as e:
                    stats.skip(line, MalformedRecordError(INVALID_JSON, str(e)))
                    continue
                if not isinstance(record, dict):
                    kind = type(record).__name__
                    stats.skip(
                        line, MalformedRecordError(INVALID_JSON, f"a JSON {kind}, not object")
                    )
                    continue
                yield line, record
    except (EOFError, gzip.BadGzipFile) as e:  # a truncated or corrupt .gz
        raise ValueError(f"{path}: unreadable after line {line}: {e}") from e
    logged = sum(stats.skipped.values()) - LOGGED_PER_FILE
    if logged > 0:
        log.warning("%s: %d more skipped lines not logged one by one", path, logged)
