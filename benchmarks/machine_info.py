"""What the benchmarks ran on: cores, CPU model, RAM, load, date (for RESULTS.md)."""

from __future__ import annotations

import datetime as dt
import os
import platform
from pathlib import Path


def machine_info() -> dict:
    model = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    ram_gib = None
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram_gib = round(int(line.split()[1]) / (1 << 20), 1)
    return {"nproc": os.cpu_count(), "cpu_model": model, "ram_gib": ram_gib,
            "load_avg_1_5_15": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(), "date": dt.date.today().isoformat()}
