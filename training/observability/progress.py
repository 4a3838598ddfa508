"""Rank 0's live progress: stage and plan steps, loss, smoothed tokens/s and the ETA.

Two outputs, chosen by whether stderr is a terminal:
- a terminal: one line redrawn in place (carriage return) after every step; a log
  record written meanwhile first clears the line, so log lines never end up glued to
  the bar;
- anything else (torchrun writing to train.log, CI): a plain log line (logger
  `training.observability.progress`, INFO) every `interval_s` seconds, at each stage's
  last step and at the end. A log line, not a bare write, because `sharpen train` echoes
  only rank 0's *log* lines from train.log, and the log line carries time and rank.

The ETA is the remaining tokens of the plan (this stage's rest plus every later stage,
whose tokens per step may differ) times the smoothed seconds per token of wall time,
checkpoint saves included. The first step after a (re)start carries warm-up (allocator,
kernels, first batch): the second step's time replaces it, later steps enter an
exponential moving average. A small own bar rather than tqdm: the ETA spans stages of
different step sizes, and the non-terminal output must be log lines anyway.
"""

from __future__ import annotations

import logging
import shutil
import sys
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, TextIO

log = logging.getLogger(__name__)

SMOOTHING = 0.1  # weight of the newest step in the moving average of seconds per token
BAR_WIDTH = 20


class Progress:
    """Context manager; `update(row)` after each optimizer step; a no-op when not enabled."""

    def __init__(
        self,
        stage_steps: Mapping[str, int],
        *,
        done: int = 0,
        enabled: bool = True,
        tokens_per_step: Mapping[str, int] | None = None,
        stream: TextIO | None = None,
        interval_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """stage_steps: {stage: steps} of the whole plan, in order. done: global steps
        already done (a resume). tokens_per_step: {stage: tokens per optimizer step}, for
        the ETA of stages not yet started (else: the last step's tokens)."""
        self.enabled, self._closed = enabled, not enabled
        self.stage_steps = dict(stage_steps)
        self.total, self.done = sum(self.stage_steps.values()), done
        self.tokens_per_step = dict(tokens_per_step or {})
        self.stream: TextIO = stream if stream is not None else sys.stderr
        self.interval_s, self.clock = interval_s, clock
        self.tty = enabled and _isatty(self.stream)
        self._start = self._last = clock()
        self._last_print: float | None = None
        self._samples, self._sec_per_unit = 0, None  # unit: a token (a step without tokens)
        self._by_tokens, self._last_tokens = False, 0
        self.line, self._line_shown, self._drawn = "", True, False
        self._filter = _ClearLine(self)
        if self.tty:
            for handler in _stream_handlers(self.stream):
                handler.addFilter(self._filter)

    # ---- per step ------------------------------------------------------------------
    def update(self, row: Mapping[str, Any]) -> None:
        """A metrics row: reads step, stage, stage_step, and loss and tokens if present."""
        if self._closed:
            return
        now = self.clock()
        tokens = row.get("tokens")
        self._by_tokens = tokens is not None
        if tokens is not None:
            self._last_tokens = int(tokens)
        self._observe(now - self._last, int(tokens) if tokens else 1)
        self._last = now
        self.done = int(row["step"])
        stage, stage_step = str(row["stage"]), int(row["stage_step"])
        self.line = self.format(stage, stage_step, row.get("loss"), now)
        if self.tty:
            self._draw()
            return
        self._line_shown = False
        stage_end = stage_step >= self.stage_steps.get(stage, stage_step)
        due = self._last_print is None or now - self._last_print >= self.interval_s
        if due or stage_end:
            self._print(now)

    def _observe(self, seconds: float, units: int) -> None:
        self._samples += 1
        rate = seconds / max(units, 1)
        if self._sec_per_unit is None or self._samples <= 2:
            self._sec_per_unit = rate  # the second step replaces the warm-up of the first
        else:
            self._sec_per_unit += SMOOTHING * (rate - self._sec_per_unit)

    # ---- what the line says --------------------------------------------------------
    def tokens_per_s(self) -> float | None:
        if not self._by_tokens or not self._sec_per_unit:
            return None
        return 1.0 / self._sec_per_unit

    def eta_s(self, stage: str, stage_step: int) -> float | None:
        """Seconds left for the plan: this stage's remaining steps and all later stages."""
        if self._sec_per_unit is None:
            return None
        names = list(self.stage_steps)
        later = names[names.index(stage) + 1 :] if stage in names else []
        units = max(self.stage_steps.get(stage, stage_step) - stage_step, 0) * self._units(stage)
        units += sum(self.stage_steps[n] * self._units(n) for n in later)
        return units * self._sec_per_unit

    def _units(self, stage: str) -> int:
        if not self._by_tokens:
            return 1
        return self.tokens_per_step.get(stage) or self._last_tokens or 1

    def format(self, stage: str, stage_step: int, loss: Any, now: float) -> str:
        stage_total = self.stage_steps.get(stage, stage_step)
        pct = 100.0 * self.done / self.total if self.total else 100.0
        parts = [
            f"{stage} {stage_step}/{stage_total}",
            f"step {self.done}/{self.total} ({pct:.0f}%)",
        ]
        if isinstance(loss, (int, float)):
            parts.append(f"loss {loss:.4f}")
        tps = self.tokens_per_s()
        if tps is not None:
            parts.append(f"{_si(tps)} tok/s")
        eta = self.eta_s(stage, stage_step)
        parts.append(f"elapsed {_duration(now - self._start)}")
        parts.append(f"ETA {'?' if eta is None else _duration(eta)}")
        return " | ".join(parts)

    # ---- output --------------------------------------------------------------------
    def _draw(self) -> None:
        filled = BAR_WIDTH * self.done // self.total if self.total else BAR_WIDTH
        text = f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {self.line}"
        width = shutil.get_terminal_size((120, 24)).columns - 1
        self.stream.write("\r" + text[:width] + "\x1b[K")
        self.stream.flush()
        self._drawn = True

    def clear(self) -> None:
        """Erase the drawn bar (a log line follows); the next update draws it again."""
        if self._drawn:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._drawn = False

    def _print(self, now: float) -> None:
        log.info("%s", self.line)
        self._last_print, self._line_shown = now, True

    def close(self) -> None:
        """Leave the terminal on a fresh line, or log the last line if it was not shown."""
        if self._closed:
            return
        self._closed = True
        for handler in _stream_handlers(self.stream):
            handler.removeFilter(self._filter)
        if self.tty:
            if self._drawn:
                self.stream.write("\n")
                self.stream.flush()
        elif not self._line_shown and self.line:
            self._print(self.clock())

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class _ClearLine(logging.Filter):
    """On a handler writing to the bar's terminal: clear the bar before each record."""

    def __init__(self, progress: Progress) -> None:
        super().__init__()
        self.progress = progress

    def filter(self, record: logging.LogRecord) -> bool:
        self.progress.clear()
        return True


def _stream_handlers(stream: TextIO) -> list[logging.Handler]:
    return [
        h
        for h in logging.getLogger().handlers
        if isinstance(h, logging.StreamHandler) and getattr(h, "stream", None) is stream
    ]


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def _duration(seconds: float) -> str:
    """H:MM:SS, hours unbounded (a long run reads 41:05:09, not days)."""
    s = max(int(round(seconds)), 0)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def _si(value: float) -> str:
    for threshold, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= threshold:
            return f"{value / threshold:.2f}{suffix}"
    return f"{value:.0f}"
