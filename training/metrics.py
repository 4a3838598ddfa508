"""Metrics as JSON lines, one per optimizer step, written by rank 0 only.

Flushed every line so a killed run keeps every finished step; on resume the lines past
the checkpoint's step are dropped so the file reads as one uninterrupted run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class MetricsWriter:
    def __init__(self, path: Path, *, enabled: bool, keep_through_step: int | None = None) -> None:
        """keep_through_step: resume (keep lines with step <= it); None: start a fresh file."""
        self.path, self.enabled = path, enabled
        self._file = None
        if not enabled:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        kept = []
        if keep_through_step is not None and path.is_file():
            kept = [r for r in read_metrics(path) if r["step"] <= keep_through_step]
        with path.open("w", encoding="utf-8") as f:
            for row in kept:
                f.write(json.dumps(row) + "\n")
        self._file = path.open("a", encoding="utf-8")

    def log(self, row: dict[str, Any]) -> None:
        if self._file is not None:
            self._file.write(json.dumps(row) + "\n")
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def read_metrics(path: Path) -> list[dict[str, Any]]:
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{n}: not a JSON line: {e}") from e
    return rows


def summarize(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """{stage: {first_loss, last_loss, steps, tokens}} in stage order."""
    out: dict[str, dict[str, Any]] = {}
    for row in rows:
        s = out.setdefault(
            row["stage"],
            {"first_loss": row["loss"], "last_loss": row["loss"], "steps": 0, "tokens": 0},
        )
        s["last_loss"] = row["loss"]
        s["steps"] += 1
        s["tokens"] += row["tokens"]
    return out
