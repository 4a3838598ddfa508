"""Real `torchrun --nproc_per_node=2` runs (gloo, FSDP2 on CPU): no part of torch.distributed is faked."""

import argparse
import json
from pathlib import Path

import pytest
import torch

from training.checkpoint import load_model_weights
from training.cli import format_summary, register, run_training
from training.metrics import read_metrics
from training.model import ModelConfig, Transformer, cross_entropy_loss
from training.plan import load_plan

pytestmark = pytest.mark.slow

PLAN = """
model: {dim: 64, n_layers: 2, n_heads: 4, n_kv_heads: 2, ffn_hidden: 128, max_seq_len: 64}
seed: 3
stages:
  - {name: pretrain, data: broad, steps: 12, seq_len: 64, batch_size: BATCH, lr: 0.01,
     min_lr: 0.001, warmup_steps: 3, checkpoint_every: 5}
  - {name: anneal, data: anneal, steps: 8, seq_len: 64, batch_size: BATCH, lr: null,
     min_lr: 0.0005, decay_fraction: 1.0}
"""


def write_plan(path: Path, batch: int) -> Path:
    path.write_text(PLAN.replace("BATCH", str(batch)))
    return path


@pytest.fixture(scope="module")
def two_rank_run(mixture: Path, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("run2")
    summary = run_training(write_plan(out / "plan.yaml", 4), mixture, out / "run", nproc=2)
    return out, summary


def mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def test_metrics_and_loss_falls_within_each_stage(two_rank_run):
    out, summary = two_rank_run
    rows = read_metrics(out / "run" / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(1, 21))
    for r in rows:
        assert {"step", "stage", "loss", "lr", "tokens_per_s", "grad_norm"} <= r.keys()
        assert r["tokens_per_s"] > 0 and r["tokens"] == 2 * 4 * 64
    for stage, steps in (("pretrain", 12), ("anneal", 8)):
        losses = [r["loss"] for r in rows if r["stage"] == stage]
        assert len(losses) == steps
        assert mean(losses[-3:]) < mean(losses[:3]) - 0.2, (stage, losses)
        assert summary[stage]["first_loss"] == losses[0]
        assert summary[stage]["last_loss"] == losses[-1]
    lrs = [r["lr"] for r in rows]
    assert lrs[12] < lrs[11] and lrs[-1] == pytest.approx(0.0005)  # anneal decays from 0.01
    assert "pretrain" in format_summary(summary)
    assert json.loads((out / "run" / "summary.json").read_text()) == summary


def test_each_stage_has_a_dcp_checkpoint_that_loads(two_rank_run, mixture):
    from mixtures.shards import StageShards

    out, summary = two_rank_run
    plan = load_plan(out / "plan.yaml")
    cfg = ModelConfig(**plan.model.model_dump(), vocab_size=256)
    values, _ = StageShards.open(mixture / "anneal").tokens(0)
    window = torch.from_numpy(values[:65].astype("int64")).unsqueeze(0)

    def loss_of(model: Transformer) -> float:
        with torch.no_grad():
            return cross_entropy_loss(model(window[:, :-1]), window[:, 1:]).item()

    torch.manual_seed(0)
    fresh = loss_of(Transformer(cfg))
    losses = {}
    for stage in ("pretrain", "anneal"):
        model = Transformer(cfg)
        state = load_model_weights(out / "run" / "checkpoints" / stage, model)
        assert state["stage"] == stage and state["world_size"] == 2
        losses[stage] = loss_of(model)
    assert losses["anneal"] < losses["pretrain"] < fresh - 1.0


def test_two_ranks_match_one_process_with_the_same_global_batch(two_rank_run, mixture, tmp_path):
    out, _ = two_rank_run
    run_training(write_plan(tmp_path / "plan.yaml", 8), mixture, tmp_path / "run", nproc=1)
    one = [r["loss"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl")]
    two = [r["loss"] for r in read_metrics(out / "run" / "metrics.jsonl")]
    assert len(one) == len(two) == 20
    assert max(abs(a - b) for a, b in zip(one, two, strict=True)) <= 1e-4


def test_stopped_run_resumes_to_the_same_result(two_rank_run, mixture, tmp_path, capsys):
    out, _ = two_rank_run
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    common = [
        "train",
        "--plan",
        str(out / "plan.yaml"),
        "--data",
        str(mixture),
        "--output",
        str(tmp_path / "run"),
    ]
    args = parser.parse_args([*common, "--stop-after", "pretrain:7"])
    assert args.func(args) == 0
    assert "stopped" in capsys.readouterr().out
    assert not (tmp_path / "run" / "summary.json").exists()
    assert len(read_metrics(tmp_path / "run" / "metrics.jsonl")) == 7
    args = parser.parse_args([*common, "--resume"])
    assert args.func(args) == 0
    assert "anneal" in capsys.readouterr().out
    resumed = read_metrics(tmp_path / "run" / "metrics.jsonl")
    straight = read_metrics(out / "run" / "metrics.jsonl")
    assert [r["step"] for r in resumed] == list(range(1, 21))
    # Model, AdamW moments and the loader's position all round-trip: bit-identical losses.
    assert [r["loss"] for r in resumed] == [r["loss"] for r in straight]
