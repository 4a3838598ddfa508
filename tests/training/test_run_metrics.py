"""What a real run records: per-domain loss, MFU, memory, the stage-end passkey probe,
TensorBoard, and the progress line (a gloo world of one, in this process)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from training.metrics import read_metrics
from training.plan import load_plan

PLAN = """
model: {dim: 32, n_layers: 2, n_heads: 4, n_kv_heads: 2, ffn_hidden: 64, max_seq_len: 128}
seed: 5
passkey_samples: 4
stages:
  - {name: pretrain, data: broad, steps: 4, seq_len: 128, batch_size: 2, lr: 0.01}
  - {name: anneal, data: anneal, steps: 2, seq_len: 96, batch_size: 2, lr: null,
     decay_fraction: 1.0}
"""


@pytest.fixture(scope="module")
def run(world_of_one, tokenized_mixture: Path, tmp_path_factory) -> Path:
    from training.trainer import train

    out = tmp_path_factory.mktemp("metrics-run")
    (out / "plan.yaml").write_text(PLAN)
    train(load_plan(out / "plan.yaml"), tokenized_mixture, out, world_of_one)
    return out


def test_each_row_has_loss_per_domain_throughput_mfu_and_memory(run: Path):
    rows = read_metrics(run / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(1, 7))
    for r in rows:
        by_domain = r["loss_by_domain"]
        assert set(by_domain) == {"code", "math", "web"}
        # the total is the label-weighted mean of the domains' losses
        assert min(by_domain.values()) - 1e-6 <= r["loss"] <= max(by_domain.values()) + 1e-6
        assert r["tokens_per_s"] > 0 and r["step_s"] > 0
        assert r["mfu"] is None  # no peak FLOPs for a CPU: null, not a guess
        assert r["peak_mem_mib"] > 0 and r["rss_mib"] > 0
        assert r["lr"] >= 0 and r["grad_norm"] > 0


def test_each_stage_ends_with_a_passkey_probe_at_its_length(run: Path):
    rows = read_metrics(run / "metrics.jsonl")
    probes = {r["stage"]: r["passkey"] for r in rows if "passkey" in r}
    assert [r["stage_step"] for r in rows if "passkey" in r] == [4, 2]  # the last steps
    for stage, seq_len in (("pretrain", 128), ("anneal", 96)):
        assert probes[stage]["seq_len"] == seq_len and probes[stage]["n"] == 4
        assert 0.0 <= probes[stage]["accuracy"] <= 1.0
        assert 0.0 <= probes[stage]["mean_depth"] <= 1.0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["anneal"]["last_passkey"] == probes["anneal"]
    assert set(summary["pretrain"]["last_mean_loss_by_domain"]) == {"code", "math", "web"}


def test_tensorboard_has_the_same_curves(run: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / "tensorboard"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"train/loss", "train/lr", "loss_by_domain/web", "passkey/accuracy"} <= tags
    loss = [(e.step, e.value) for e in acc.Scalars("train/loss")]
    rows = read_metrics(run / "metrics.jsonl")
    assert loss == [(r["step"], pytest.approx(r["loss"])) for r in rows]


def test_rank0_prints_progress_with_an_eta(world_of_one, tokenized_mixture, tmp_path, caplog):
    from training.trainer import train

    (tmp_path / "plan.yaml").write_text(PLAN.replace("passkey_samples: 4", "passkey_samples: 0"))
    with caplog.at_level(logging.INFO):
        train(load_plan(tmp_path / "plan.yaml"), tokenized_mixture, tmp_path / "r", world_of_one)
    lines = [r.getMessage() for r in caplog.records if "ETA" in r.getMessage()]
    assert lines and "pretrain" in lines[0] and "anneal" in lines[-1]
    assert not any("passkey" in r for r in read_metrics(tmp_path / "r" / "metrics.jsonl"))
