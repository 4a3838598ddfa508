"""What rank 0 shows and records of a run: metrics rows fanned out to metrics.jsonl and
TensorBoard, peak memory per interval, and the live progress line with its ETA."""

from training.observability.memory import (
    current_rss_mib,
    memory_stats,
    peak_memory_mib,
    reset_peak_memory,
)
from training.observability.progress import Progress
from training.observability.run_metrics import RunMetrics
from training.observability.tensorboard_sink import TensorBoardSink, flatten_row

__all__ = [
    "Progress",
    "RunMetrics",
    "TensorBoardSink",
    "current_rss_mib",
    "flatten_row",
    "memory_stats",
    "peak_memory_mib",
    "reset_peak_memory",
]
