"""Peak memory per logging interval, in MiB, for the metrics row.

The number that says whether a bigger batch or a longer context fits is the *peak*
between two metrics rows, not the memory at the moment the row is written (the peak is
reached mid-backward and freed before the optimizer step ends). Each row therefore reads
the peak, then resets it, so the next row covers only its own interval:

- CUDA: `torch.cuda.max_memory_allocated`, the most memory held by live tensors
  (the caching allocator's high-water mark); `peak_reserved_mib` adds
  `max_memory_reserved`, what the allocator took from the driver, which is closer to
  what `nvidia-smi` shows and to the OOM limit. Both reset per interval.
- CPU: the peak resident set size (VmHWM), which includes the interpreter, torch's
  libraries and the data loader, not only tensors. Linux resets it by writing "5" to
  /proc/self/clear_refs; where that is refused (or off Linux) the peak is
  `resource.getrusage(...).ru_maxrss`, monotone over the process's life: the peak
  since the process started, not since the last row.

`rss_mib` is the resident set size now (psutil), on every device.
"""

from __future__ import annotations

import re
import resource
import sys
from pathlib import Path

import psutil
import torch

MIB = 1024 * 1024
_STATUS, _CLEAR_REFS = Path("/proc/self/status"), Path("/proc/self/clear_refs")
_PROCESS = psutil.Process()


def _is_cuda(device: torch.device | str) -> bool:
    return torch.device(device).type == "cuda" and torch.cuda.is_available()


def reset_peak_memory(device: torch.device | str) -> bool:
    """Start a new interval; False when the peak cannot be reset (CPU without clear_refs)."""
    if _is_cuda(device):
        torch.cuda.reset_peak_memory_stats(device)
        return True
    try:
        _CLEAR_REFS.write_text("5")  # 5: reset the peak RSS to the current RSS (Linux >= 4.0)
    except OSError:
        return False
    return True


def peak_memory_mib(device: torch.device | str) -> float:
    """The peak since the last `reset_peak_memory` (see the module docstring for its meaning)."""
    if _is_cuda(device):
        return torch.cuda.max_memory_allocated(device) / MIB
    return _peak_rss_bytes() / MIB


def current_rss_mib() -> float:
    """The resident set size now: what the process holds at this moment, not its peak."""
    return _PROCESS.memory_info().rss / MIB


def memory_stats(device: torch.device | str) -> dict[str, float]:
    """The memory fields of a metrics row: peak_mem_mib, rss_mib (+ peak_reserved_mib on CUDA)."""
    stats = {"peak_mem_mib": peak_memory_mib(device), "rss_mib": current_rss_mib()}
    if _is_cuda(device):
        stats["peak_reserved_mib"] = torch.cuda.max_memory_reserved(device) / MIB
    return {k: round(v, 1) for k, v in stats.items()}


def _peak_rss_bytes() -> int:
    """VmHWM (the resettable peak) where /proc has it, else ru_maxrss (the lifetime peak)."""
    try:
        m = re.search(r"^VmHWM:\s+(\d+) kB", _STATUS.read_text(), re.MULTILINE)
    except OSError:
        m = None
    if m:
        return int(m[1]) * 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB on Linux
