"""Rank 0's observability: metrics to jsonl and TensorBoard (read back with TensorBoard's
own reader), the purge on resume, the progress line and its ETA, peak memory, summaries."""

from __future__ import annotations

import io
import logging
import math
import sys
from pathlib import Path

import pytest
import torch

from training.metrics import read_metrics, summarize
from training.observability import (
    Progress,
    RunMetrics,
    current_rss_mib,
    flatten_row,
    memory_stats,
    peak_memory_mib,
    reset_peak_memory,
)


def row(step: int, loss: float, stage: str = "pretrain", **extra) -> dict:
    return {
        "step": step,
        "stage": stage,
        "stage_step": step,
        "loss": loss,
        "lr": 0.01 * step,
        "tokens": 128,
        "tokens_per_s": 1000.0,
        "skipped": False,
        **extra,
    }


def scalars(run: Path) -> dict[str, list[tuple[int, float]]]:
    """{tag: [(step, value)]} as TensorBoard itself reads the run's event files."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / "tensorboard"))
    acc.Reload()
    return {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}


# ---- metrics fan-out -----------------------------------------------------------------
def test_rows_reach_jsonl_and_tensorboard_with_flattened_tags(tmp_path: Path):
    domains = {"web": 3.25, "code": 2.5}
    rows = [row(s, 4.0 - s, loss_by_domain=domains) for s in (1, 2, 3)]
    rows[2]["passkey"] = {"accuracy": 0.5, "by_length": {"1024": 1.0}}
    with RunMetrics(tmp_path, enabled=True) as metrics:
        for r in rows:
            metrics.log(r)
    assert read_metrics(tmp_path / "metrics.jsonl") == rows
    tb = scalars(tmp_path)
    assert tb["train/loss"] == [(1, 3.0), (2, 2.0), (3, 1.0)]
    assert [s for s, _ in tb["train/lr"]] == [1, 2, 3]
    assert tb["loss_by_domain/web"] == [(s, 3.25) for s in (1, 2, 3)]
    assert tb["passkey/accuracy"] == [(3, 0.5)]
    assert tb["passkey/by_length/1024"] == [(3, 1.0)]
    assert tb["train/skipped"] == [(s, 0.0) for s in (1, 2, 3)]
    assert "train/step" not in tb and "train/stage" not in tb  # the x axis; a string


def test_flatten_row_keeps_numbers_only():
    flat = flatten_row(
        {"step": 9, "stage": "x", "mfu": None, "ok": True, "ids": [1], "a": {"b": {"c": 2}}}
    )
    assert flat == {"train/ok": 1.0, "a/b/c": 2.0}
    assert math.isnan(flatten_row({"loss": float("nan")})["train/loss"])


def test_resume_purges_the_steps_that_run_again(tmp_path: Path):
    """A run killed after step 5 resumes from its step-3 checkpoint and stops at step 4:
    TensorBoard shows 1-3 from the first run, 4 from the second, and no step 5."""
    with RunMetrics(tmp_path, enabled=True) as metrics:
        for s in range(1, 6):
            metrics.log(row(s, 10.0 + s))
    with RunMetrics(tmp_path, enabled=True, keep_through_step=3) as metrics:
        metrics.log(row(4, 100.0))
    assert [r["step"] for r in read_metrics(tmp_path / "metrics.jsonl")] == [1, 2, 3, 4]
    assert scalars(tmp_path)["train/loss"] == [(1, 11.0), (2, 12.0), (3, 13.0), (4, 100.0)]
    assert len(list((tmp_path / "tensorboard").iterdir())) == 2  # one event file per session


def test_a_fresh_start_moves_the_previous_events_aside(tmp_path: Path):
    with RunMetrics(tmp_path, enabled=True) as metrics:
        metrics.log(row(1, 5.0))
        metrics.log(row(2, 4.0))
    with RunMetrics(tmp_path, enabled=True) as metrics:
        metrics.log(row(1, 7.0))
    assert scalars(tmp_path)["train/loss"] == [(1, 7.0)]
    assert (tmp_path / "tensorboard.prev-1").is_dir()
    assert len(read_metrics(tmp_path / "metrics.jsonl.prev-1")) == 2


def test_jsonl_alone_when_tensorboard_is_off_missing_or_not_rank_0(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    with RunMetrics(tmp_path / "off", enabled=True, tensorboard=False) as metrics:
        metrics.log(row(1, 5.0))
    assert not (tmp_path / "off" / "tensorboard").exists()
    assert len(read_metrics(tmp_path / "off" / "metrics.jsonl")) == 1

    with RunMetrics(tmp_path / "rank1", enabled=False) as metrics:
        metrics.log(row(1, 5.0))
    assert not (tmp_path / "rank1").exists()

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    with caplog.at_level(logging.WARNING), RunMetrics(tmp_path / "missing", enabled=True) as m:
        m.log(row(1, 5.0))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["tensorboard is not installed: metrics go to metrics.jsonl only "
                        "(pip install tensorboard)"]
    assert len(read_metrics(tmp_path / "missing" / "metrics.jsonl")) == 1
    assert not (tmp_path / "missing" / "tensorboard").exists()


# ---- progress ------------------------------------------------------------------------
class Clock:
    """Time that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


STAGES, TOKENS = {"pretrain": 4, "anneal": 2}, {"pretrain": 100, "anneal": 200}


def steps(progress: Progress, clock: Clock, plan: list[tuple[str, int, float]]) -> None:
    """(stage, stage_step, seconds it takes) per step; each step's tokens as in TOKENS."""
    done = progress.done
    for stage, stage_step, seconds in plan:
        clock.now += seconds
        done += 1
        progress.update(
            {"step": done, "stage": stage, "stage_step": stage_step, "loss": 2.5,
             "tokens": TOKENS[stage]}
        )


def test_progress_without_a_terminal_logs_plain_lines_with_the_eta(caplog):
    caplog.set_level(logging.INFO, logger="training.observability.progress")
    stream, clock = io.StringIO(), Clock()
    with Progress(STAGES, tokens_per_step=TOKENS, stream=stream, interval_s=10, clock=clock) as p:
        # a 5 s warm-up step, then 1 s per 100 tokens: 0.01 s per token from step 2 on
        steps(p, clock, [("pretrain", 1, 5.0), ("pretrain", 2, 1.0), ("pretrain", 3, 1.0),
                         ("pretrain", 4, 1.0), ("anneal", 1, 2.0), ("anneal", 2, 2.0)])
    lines = [r.getMessage() for r in caplog.records]
    assert stream.getvalue() == ""  # log lines, no carriage returns on the stream
    # the first step, then each stage's last step; steps 2, 3 and 5 fall inside the interval
    assert lines == [
        "pretrain 1/4 | step 1/6 (17%) | loss 2.5000 | 20 tok/s | elapsed 0:00:05 | ETA 0:00:35",
        "pretrain 4/4 | step 4/6 (67%) | loss 2.5000 | 100 tok/s | elapsed 0:00:08 | ETA 0:00:04",
        "anneal 2/2 | step 6/6 (100%) | loss 2.5000 | 100 tok/s | elapsed 0:00:12 | ETA 0:00:00",
    ]


def test_progress_after_a_resume_logs_its_last_line_on_close(caplog):
    caplog.set_level(logging.INFO, logger="training.observability.progress")
    clock = Clock()
    with Progress(STAGES, done=3, stream=io.StringIO(), interval_s=60, clock=clock) as p:
        steps(p, clock, [("pretrain", 4, 3.0), ("anneal", 1, 30.0)])  # no tokens_per_step
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and lines[0].startswith("pretrain 4/4 | step 4/6")
    assert lines[1].startswith("anneal 1/2 | step 5/6 (83%)") and "ETA 0:00:30" in lines[1]


def test_progress_on_a_terminal_redraws_in_place_and_clears_itself_for_log_lines(monkeypatch):
    # the bar is cut to the terminal's width: wide enough here for the whole line (an
    # 80-column terminal, e.g. under pytest-xdist, cut it before the ETA)
    monkeypatch.setenv("COLUMNS", "200")
    term, clock = Terminal(), Clock()
    handler = logging.StreamHandler(term)
    logging.getLogger().addHandler(handler)
    try:
        with pytest.raises(RuntimeError, match="boom"):
            with Progress(STAGES, tokens_per_step=TOKENS, stream=term, clock=clock) as p:
                steps(p, clock, [("pretrain", 1, 1.0)])
                logging.getLogger("training.trainer").warning("checkpoint saved")
                steps(p, clock, [("pretrain", 2, 1.0)])
                raise RuntimeError("boom")
        assert not handler.filters  # the clearing filter is gone with the bar
    finally:
        logging.getLogger().removeHandler(handler)
    out = term.getvalue()
    assert out.startswith("\r[###.................] pretrain 1/4 | step 1/6 (17%)")
    assert "\r\x1b[Kcheckpoint saved\n\r[######" in out  # cleared, logged, drawn again
    assert out.endswith("ETA 0:00:06\x1b[K\n")  # the traceback starts on a fresh line


def test_progress_on_other_ranks_is_silent(caplog):
    caplog.set_level(logging.INFO)
    term, clock = Terminal(), Clock()
    with Progress(STAGES, enabled=False, stream=term, clock=clock) as p:
        steps(p, clock, [("pretrain", 1, 1.0)])
    assert term.getvalue() == "" and not caplog.records


# ---- memory --------------------------------------------------------------------------
def test_peak_memory_is_positive_and_covers_the_interval():
    rss = current_rss_mib()
    stats = memory_stats("cpu")
    assert stats["peak_mem_mib"] >= rss - 0.1 > 0 and stats["rss_mib"] > 0  # rounded to 0.1
    if not reset_peak_memory("cpu"):
        pytest.skip("this kernel keeps the peak RSS for the process's whole life")
    before = current_rss_mib()
    block = torch.ones(16 * 2**20)  # 64 MiB, written
    del block
    assert peak_memory_mib("cpu") >= before + 48
    reset_peak_memory("cpu")
    assert peak_memory_mib("cpu") < before + 32


# ---- summaries -----------------------------------------------------------------------
def test_summarize_reads_old_rows_and_new_fields():
    old = [
        {"step": s, "stage": "pretrain", "loss": 5.0 - s, "tokens": 100, "tokens_per_s": 50.0}
        for s in (1, 2)
    ]
    assert summarize(old)["pretrain"] == {
        "first_loss": 4.0, "last_loss": 3.0, "steps": 2, "tokens": 200, "skipped_steps": 0,
        "first_mean_loss": 3.5, "last_mean_loss": 3.5, "mean_tokens_per_s": 50.0,
    }
    new = [
        row(1, 3.0, stage="anneal", tokens_per_s=100.0, peak_mem_mib=900.0, mfu=0.25,
            loss_by_domain={"web": 3.0, "code": 2.0}),
        row(2, 2.0, stage="anneal", tokens_per_s=400.0, peak_mem_mib=1200.0, mfu=None,
            loss_by_domain={"web": 2.0}),
        row(3, float("nan"), stage="anneal", skipped=True, loss_by_domain={"web": 9.0}),
        {"step": 3, "stage": "anneal", "passkey": {"accuracy": 0.75, "n": 8}},  # an eval row
    ]
    s = summarize(old + new, window=10)["anneal"]
    assert s["steps"] == 3 and s["tokens"] == 3 * 128 and s["skipped_steps"] == 1
    assert s["mean_tokens_per_s"] == pytest.approx(3 * 128 / (1.28 + 0.32 + 0.128))
    assert (s["peak_mem_mib"], s["mean_mfu"]) == (1200.0, 0.25)
    assert s["last_mean_loss_by_domain"] == {"code": 2.0, "web": 2.5}
    assert s["last_passkey"] == {"accuracy": 0.75, "n": 8}
