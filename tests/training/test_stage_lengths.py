"""Stage lengths as token budgets, and an anneal that continues from a checkpoint's LR."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from training.metrics import read_metrics
from training.plan import PlanError, load_plan, resolve_stage_lengths
from training.trainer import open_stage_shards, planned_tokens, stage_peak_lrs

ROOT = Path(__file__).parents[2]
PLAN = """
model: {dim: 32, n_layers: 2, n_heads: 4, n_kv_heads: 2, ffn_hidden: 64, max_seq_len: 32}
seed: 3
stages:
STAGES
"""


def write_plan(path: Path, *stages: str) -> Path:
    path.write_text(PLAN.replace("STAGES", "\n".join(stages)))
    return path


def stage(length: str, **extra: object) -> str:
    fields = ", ".join(f"{k}: {v}" for k, v in extra.items())
    base = f"  - {{name: s, data: broad, {length}, seq_len: 32, batch_size: 2, lr: 0.01"
    return base + (f", {fields}" if fields else "") + "}"


def test_a_token_budget_becomes_steps_within_one_global_batch(tmp_path: Path):
    plan = load_plan(write_plan(tmp_path / "p.yaml", stage("tokens: 10000")))
    assert plan.stages[0].steps is None and not plan.resolved
    for world, accum in ((1, 1), (2, 1), (2, 3)):
        s = plan.stages[0].model_copy(update={"grad_accum": accum})
        resolved = resolve_stage_lengths(plan.model_copy(update={"stages": [s]}), world, {})
        per_step = world * accum * 2 * 33  # windows of seq_len + 1 stream tokens
        assert per_step == s.stream_tokens_per_step(world)
        steps = resolved.stages[0].steps
        assert 0 <= 10000 - steps * per_step < per_step, (world, accum, steps)
    assert plan.stages[0].steps is None  # the loaded plan is left as it was


def test_planned_tokens_come_from_the_mixture_manifest(mixture: Path, tmp_path: Path):
    plan = load_plan(write_plan(tmp_path / "p.yaml", stage("tokens: planned")))
    planned = planned_tokens(open_stage_shards(plan, mixture, verify=False))
    manifest_total = yaml.safe_load((mixture / "broad" / "manifest.json").read_text())
    assert planned["broad"] == manifest_total["total_tokens"] > 0
    resolved = resolve_stage_lengths(plan, 2, planned)
    per_step = resolved.stages[0].stream_tokens_per_step(2)
    assert 0 <= planned["broad"] - resolved.stages[0].steps * per_step < per_step


def test_stage_length_errors_say_what_to_change(tmp_path: Path):
    for length, message in (
        ("steps: 3, tokens: 100", "either `tokens`"),
        ("warmup_steps: 1", "either `tokens`"),
        ("tokens: 0", "tokens must be > 0"),
        ("tokens: many", r"stages\.0\.tokens"),
    ):
        with pytest.raises(PlanError, match=message):
            load_plan(write_plan(tmp_path / "bad.yaml", stage(length)))
    small = load_plan(write_plan(tmp_path / "small.yaml", stage("tokens: 100")))
    with pytest.raises(PlanError, match="less than one global batch"):
        resolve_stage_lengths(small, 2, {})
    warm = load_plan(write_plan(tmp_path / "w.yaml", stage("tokens: 700", warmup_steps=20)))
    with pytest.raises(PlanError, match="exceed its 10 steps"):
        resolve_stage_lengths(warm, 1, {})
    with pytest.raises(ValueError, match="resolved"):
        stage_peak_lrs(warm)


def test_the_demo_trains_each_mixture_stage_budget_within_one_batch():
    plan = load_plan(ROOT / "training" / "recipes" / "demo.yaml")
    recipe = yaml.safe_load((ROOT / "mixtures" / "recipes" / "demo.yaml").read_text())
    budgets = {s["name"]: s["token_budget"] for s in recipe["stages"]}
    assert all(s.tokens == "planned" for s in plan.stages)
    resolved = resolve_stage_lengths(plan, 2, budgets)  # `sharpen demo` runs 2 ranks
    for s in resolved.stages:
        per_step = s.stream_tokens_per_step(2)
        assert 0 <= budgets[s.data] - s.steps * per_step < per_step, s.name
        assert s.checkpoint and s.checkpoint_every is not None
        assert s.checkpoint_every <= s.steps // 2, s.name
    assert len(stage_peak_lrs(resolved)) == len(plan.stages)


def test_a_branched_anneal_continues_from_the_checkpoint_lr_to_zero(
    world_of_one, mixture: Path, tmp_path: Path
):
    from training.trainer import train

    def run(plan: Path, out: Path) -> list[dict]:
        train(load_plan(plan), mixture, out, world_of_one)
        return read_metrics(out / "metrics.jsonl")

    pretrain = (
        "  - {name: pretrain, data: broad, steps: 4, seq_len: 32, batch_size: 2, lr: 0.01,"
        " min_lr: 0.002, decay_fraction: 0.5}"
    )
    anneal = "  - {name: anneal, data: anneal, steps: 3, seq_len: 32, batch_size: 2, lr: null, decay_fraction: 1.0}"
    straight = run(write_plan(tmp_path / "a.yaml", pretrain, anneal), tmp_path / "a")
    ckpt = tmp_path / "a" / "checkpoints" / "pretrain"
    branch = anneal.replace("lr: null", f"lr: null, init_from: {ckpt}")
    branched = run(write_plan(tmp_path / "b.yaml", branch), tmp_path / "b")
    assert straight[3]["lr"] == pytest.approx(0.002)  # the checkpoint's last LR
    assert [r["lr"] for r in branched] == [r["lr"] for r in straight[4:]]
    assert branched[0]["lr"] < 0.002 and branched[-1]["lr"] == 0.0
    assert [r["loss"] for r in branched] == [r["loss"] for r in straight[4:]]


def test_a_run_trains_its_planned_tokens_within_one_batch(world_of_one, mixture, tmp_path):
    from training.trainer import train

    planned = "  - {name: s, data: anneal, tokens: planned, seq_len: 32, batch_size: 16, lr: 0.01}"
    summary = train(
        load_plan(write_plan(tmp_path / "p.yaml", planned)), mixture, tmp_path / "r", world_of_one
    )
    budget, trained = summary["s"]["budget_tokens"], summary["s"]["stream_tokens"]
    rows = read_metrics(tmp_path / "r" / "metrics.jsonl")
    assert trained == len(rows) * 16 * 33 and 0 <= budget - trained < 16 * 33
