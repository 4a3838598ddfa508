"""Exact resume under SIGKILL: a real 2-rank torchrun job is killed, process group and all,
at a seeded random step; resuming from its last interval checkpoint reproduces every
loss of an uninterrupted run bit for bit (CPU, fp32), across the stage boundary."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from training.cli import run_training
from training.metrics import read_metrics

pytestmark = pytest.mark.slow

# Steps slow enough (~0.1 s on 2 cores) that the kill lands where it is aimed.
PLAN = """
model: {dim: 128, n_layers: 3, n_heads: 4, n_kv_heads: 2, ffn_hidden: 256, max_seq_len: 128}
seed: 11
stages:
  - {name: pretrain, data: broad, steps: 14, seq_len: 128, batch_size: 4, lr: 0.01,
     min_lr: 0.001, warmup_steps: 2, checkpoint_every: 4}
  - {name: anneal, data: anneal, steps: 6, seq_len: 128, batch_size: 4, lr: null,
     decay_fraction: 1.0, checkpoint_every: 4}
"""
PRETRAIN_STEPS, TOTAL_STEPS = 14, 20


def start_job(plan: Path, data: Path, out: Path) -> subprocess.Popen:
    """torchrun in a process group of its own, as a scheduler would start the job."""
    out.mkdir(parents=True)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    cmd += ["-m", "training.pretrain", "--plan", str(plan), "--data", str(data)]
    cmd += ["--output", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    log = (out / "killed.log").open("wb")
    return subprocess.Popen(
        cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )


def wait_for_step(metrics: Path, step: int, proc: subprocess.Popen, timeout: float = 300) -> int:
    """Poll rank 0's metrics until `step` is logged; returns the last logged step."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the job ended (code {proc.returncode}) before step {step}"
        if metrics.is_file():
            rows = read_metrics(metrics)
            if rows and rows[-1]["step"] >= step:
                return rows[-1]["step"]
        time.sleep(0.005)
    raise AssertionError(f"step {step} not reached in {timeout} s")


def test_sigkill_of_the_process_group_resumes_bitwise(mixture: Path, tmp_path: Path):
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN)
    straight = run_training(plan, mixture, tmp_path / "straight", nproc=2)
    assert straight["anneal"]["steps"] == 6
    reference = read_metrics(tmp_path / "straight" / "metrics.jsonl")

    # Aim after the first interval checkpoint and before the stage boundary, so the
    # resumed run restores mid-stage and then crosses into the anneal stage.
    kill_at = random.Random(2026).randint(5, PRETRAIN_STEPS - 1)
    out = tmp_path / "killed"
    proc = start_job(plan, mixture, out)
    ranks = []
    try:
        seen = wait_for_step(out / "metrics.jsonl", kill_at, proc)
        ranks = psutil.Process(proc.pid).children(recursive=True)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert len(ranks) >= 2
    gone, alive = psutil.wait_procs(ranks, timeout=5)  # ranks die with their agent
    assert not alive, f"ranks outlived the killed job: {alive}"
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "summary.json").exists()

    latest = json.loads((out / "checkpoints" / "latest.json").read_text())
    resume_step = latest["global_step"]
    print(f"killed at step {seen} (aimed at {kill_at}); resuming after step {resume_step}")
    assert latest["stage"] == "pretrain" and 4 <= resume_step <= seen < TOTAL_STEPS
    assert resume_step < PRETRAIN_STEPS  # the resumed part crosses the stage boundary

    resumed = run_training(plan, mixture, out, nproc=2, resume=True)
    rows = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(1, TOTAL_STEPS + 1))
    assert [r["stage"] for r in rows] == [r["stage"] for r in reference]
    # Every loss and gradient norm after the resume point, bit for bit; the earlier ones
    # are the killed run's own, equal too.
    assert [(r["loss"], r["grad_norm"]) for r in rows] == [
        (r["loss"], r["grad_norm"]) for r in reference
    ]
    losses = ("first_loss", "last_loss", "first_mean_loss", "last_mean_loss", "steps", "tokens")
    for stage in ("pretrain", "anneal"):
        assert {k: resumed[stage][k] for k in losses} == {k: straight[stage][k] for k in losses}
