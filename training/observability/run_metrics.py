"""Rank 0's metrics fan-out: every row to metrics.jsonl (the record) and to TensorBoard.

One object for the trainer to call, so adding a sink never touches the loop. The jsonl
writer keeps its crash-safety and resume rules (`training/metrics.py`); TensorBoard
follows the same resume point (`tensorboard_sink.py`). TensorBoard is a view: when it
is not installed, or fails while the run goes on, a warning says so and the jsonl
carries on alone; a jsonl failure stops the run, since that file is the curve's record.
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import TracebackType
from typing import Any

from training.metrics import MetricsWriter
from training.observability.tensorboard_sink import TensorBoardSink

log = logging.getLogger(__name__)

JSONL_NAME, TENSORBOARD_DIR = "metrics.jsonl", "tensorboard"


class RunMetrics:
    """`<run>/metrics.jsonl` + `<run>/tensorboard/`; a no-op on ranks other than 0."""

    def __init__(
        self,
        run_dir: Path,
        *,
        enabled: bool,
        keep_through_step: int | None = None,
        tensorboard: bool = True,
    ) -> None:
        """enabled: rank 0 only. keep_through_step: the resumed checkpoint's global step
        (later rows are dropped, later TensorBoard steps purged); None: a fresh start.
        tensorboard: False writes the jsonl only."""
        self.jsonl = MetricsWriter(
            run_dir / JSONL_NAME, enabled=enabled, keep_through_step=keep_through_step
        )
        self.tensorboard: TensorBoardSink | None = None
        if enabled and tensorboard:
            self.tensorboard = TensorBoardSink.open(
                run_dir / TENSORBOARD_DIR, resume_step=keep_through_step
            )

    def log(self, row: dict[str, Any]) -> None:
        """One row per optimizer step (or per eval); `row["step"]` is the global step."""
        self.jsonl.log(row)
        if self.tensorboard is not None:
            try:
                self.tensorboard.log(row)
            except Exception as e:  # a view failing must not end a training run
                name = type(e).__name__
                log.warning("TensorBoard stopped (%s: %s); metrics.jsonl goes on", name, e)
                self._close_tensorboard()

    def close(self) -> None:
        try:
            self.jsonl.close()
        finally:
            self._close_tensorboard()

    def _close_tensorboard(self) -> None:
        sink, self.tensorboard = self.tensorboard, None
        if sink is not None:
            try:
                sink.close()
            except Exception as e:
                log.warning("TensorBoard did not close cleanly: %s", e)

    def __enter__(self) -> RunMetrics:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
