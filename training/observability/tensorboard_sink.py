"""Metrics rows as TensorBoard scalars in `<run>/tensorboard/`: a view, not the record.

metrics.jsonl stays the record (crash-safe, trimmed on resume); this sink mirrors each
row so the curves can be watched live. Its files follow the same rules as the jsonl:

- every numeric field becomes a scalar at `global_step = row["step"]`: top-level fields
  as `train/<field>`, nested dicts flattened by path (`loss_by_domain/web`,
  `passkey/accuracy`); strings, None and lists are left out, booleans count as 0/1;
- on resume the writer starts with `purge_step = resume step + 1`: TensorBoard then
  hides the steps a killed run wrote past its last checkpoint, which run again;
- a fresh start over an existing `tensorboard/` moves it aside to `tensorboard.prev-N`,
  as metrics.jsonl is, so two runs' curves never mix in one directory.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

TOP_LEVEL = "train"  # the tag prefix of a row's top-level fields
_EVENT_TIME = re.compile(r"^events\.out\.tfevents\.(\d+)\.")


def flatten_row(row: Mapping[str, Any], prefix: str = TOP_LEVEL) -> dict[str, float]:
    """{tag: value} for every numeric field of a row but `step` (which is the x axis)."""
    out: dict[str, float] = {}
    for key, value in row.items():
        if key == "step":
            continue
        if isinstance(value, Mapping):
            _flatten_into(out, str(key), value)
        elif _is_number(value):
            out[f"{prefix}/{key}"] = float(value)
    return out


def _flatten_into(out: dict[str, float], tag: str, values: Mapping[str, Any]) -> None:
    for key, value in values.items():
        if isinstance(value, Mapping):
            _flatten_into(out, f"{tag}/{key}", value)
        elif _is_number(value):
            out[f"{tag}/{key}"] = float(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, (bool, int, float))


class TensorBoardSink:
    """One SummaryWriter for a run; `open` returns None when tensorboard is not installed."""

    def __init__(self, log_dir: Path, *, resume_step: int | None, flush_secs: int = 30) -> None:
        """resume_step: the checkpoint's global step (steps after it are purged); None: fresh."""
        from torch.utils.tensorboard import SummaryWriter

        self.log_dir = log_dir
        if resume_step is None:
            move_dir_aside(log_dir)
        log_dir.mkdir(parents=True, exist_ok=True)
        _wait_for_a_later_file_name(log_dir)
        self._writer: Any = SummaryWriter(
            str(log_dir),
            purge_step=None if resume_step is None else resume_step + 1,
            flush_secs=flush_secs,
        )

    @classmethod
    def open(cls, log_dir: Path, *, resume_step: int | None) -> TensorBoardSink | None:
        try:
            import torch.utils.tensorboard  # noqa: F401 - raises when tensorboard is missing
        except ImportError:
            log.warning(
                "tensorboard is not installed: metrics go to metrics.jsonl only "
                "(pip install tensorboard)"
            )
            return None
        return cls(log_dir, resume_step=resume_step)

    def log(self, row: Mapping[str, Any]) -> None:
        step = int(row["step"])
        for tag, value in flatten_row(row).items():
            self._writer.add_scalar(tag, value, global_step=step)

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def move_dir_aside(path: Path) -> Path | None:
    """Rename a non-empty directory to the first free `<name>.prev-N`; returns the new path."""
    if not path.is_dir() or not any(path.iterdir()):
        return None
    n = 1
    while (aside := path.with_name(f"{path.name}.prev-{n}")).exists():
        n += 1
    os.replace(path, aside)
    log.info("%s: fresh start; kept the previous run's events as %s", path, aside.name)
    return aside


def _wait_for_a_later_file_name(log_dir: Path) -> None:
    """Event files are read in name order and named by the second they were opened in: a
    writer opened in the same second as an earlier one could sort before it, and its
    purge would then come before the events it should hide. Wait for the next second."""
    stamps = [int(m[1]) for p in log_dir.iterdir() if (m := _EVENT_TIME.match(p.name))]
    while stamps and int(time.time()) <= max(stamps):
        time.sleep(0.05)
