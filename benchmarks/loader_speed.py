"""Loader cost (issue 7, point 9): tokens/s of one process packing and masking training
windows from real mixture shards, against the target of 5M tokens/s.

`PackedLoader.next_batches()` does everything the trainer's data path does per step:
walk the token stream, cut `seq_len + 1` windows, build labels, position ids (restarting
at each document) and segment ids. It runs here in one process on one thread, with the
shards memory-mapped (first pass over them warms the page cache). Also timed: the shard
checksum verification that `StageShards.open(verify=True)` does (sha256 of every shard),
which rank 0 runs before step 1 today.

Run: .venv/bin/python -m benchmarks.loader_speed [--data runs/demo/mix] (run `make demo`
first, or point --data at any mixture output)
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import torch

from benchmarks.machine_info import machine_info
from mixtures.shards import StageShards
from training.data.loader import PackedLoader


def measure(stage_dir: Path, seq_len: int, batch_size: int, seconds: float) -> dict:
    shards = StageShards.open(stage_dir, verify=False)
    loader = PackedLoader(shards, seq_len=seq_len, batch_size=batch_size, name=stage_dir.name)
    for _ in range(3):
        loader.next_batches()  # warm-up: page cache, first shard
    n_tokens, steps, t0 = 0, 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for b in loader.next_batches():
            n_tokens += b.inputs.numel()
        steps += 1
    wall = time.perf_counter() - t0
    t1 = time.perf_counter()
    StageShards.open(stage_dir, verify=True)
    verify_s = time.perf_counter() - t1
    total = sum(int(s["tokens"]) for s in shards.manifest["shards"])
    return {"stage": stage_dir.name, "seq_len": seq_len, "batch": batch_size,
            "tokens_per_s": n_tokens / wall, "steps": steps, "verify_s": verify_s,
            "stage_tokens": total}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="runs/demo/mix", help="mixture output directory")
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    logging.getLogger("training.data.loader").setLevel(logging.ERROR)  # epochs wrap here
    root = Path(args.data)
    stages = sorted(p.parent for p in root.glob("*/manifest.json"))
    if not stages:
        raise SystemExit(f"{root}: no stage with a manifest.json (run `make demo` first)")
    print(machine_info())
    print("| stage | seq_len | windows/step | tokens/s (one process) | vs 5M target | "
          "sha256 verify of the stage |")
    print("|---|---:|---:|---:|---:|---:|")
    for stage in stages:
        for seq_len, batch in ((512, 8), (4096, 2), (32768, 1)):
            r = measure(stage, seq_len, batch, args.seconds)
            print(f"| {r['stage']} | {seq_len} | {batch} | {r['tokens_per_s'] / 1e6:.1f}M | "
                  f"{r['tokens_per_s'] / 5e6:.1f}x | {r['verify_s']:.2f} s for "
                  f"{r['stage_tokens'] / 1e6:.1f}M tokens |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
