import math
from pathlib import Path

import pytest

from training.optim import wsd_lr
from training.plan import PlanError, load_plan, resolve_stage_lengths
from training.pretrain import stage_peak_lrs, stage_rope_thetas

RECIPE = Path(__file__).parents[2] / "training" / "recipes" / "demo.yaml"


def lrs(total: int, **kw) -> list[float]:
    return [wsd_lr(s, total_steps=total, **kw) for s in range(1, total + 1)]


def test_wsd_warmup_stable_linear_decay():
    out = lrs(10, peak_lr=1.0, min_lr=0.1, warmup_steps=2, decay_fraction=0.3)
    expected = [0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.7, 0.4, 0.1]
    assert out == pytest.approx(expected)


def test_wsd_one_minus_sqrt_and_anneal_stage():
    out = lrs(4, peak_lr=1.0, min_lr=0.0, warmup_steps=0, decay_fraction=1.0, shape="1-sqrt")
    assert out == pytest.approx([1 - math.sqrt(p) for p in (0.25, 0.5, 0.75, 1.0)])
    with pytest.raises(ValueError):
        wsd_lr(0, total_steps=4, peak_lr=1.0, min_lr=0.0, warmup_steps=0, decay_fraction=0.0)


def test_demo_plan_loads_and_anneal_continues_from_previous_lr():
    plan = resolve_stage_lengths(load_plan(RECIPE), 2, {"broad": 400_000, "anneal": 200_000})
    assert len(plan.stages) >= 2
    peaks = stage_peak_lrs(plan)
    first = plan.stages[0]
    assert peaks[1] == pytest.approx(
        wsd_lr(
            first.steps,
            total_steps=first.steps,
            peak_lr=first.lr,
            min_lr=first.min_lr,
            warmup_steps=first.warmup_steps,
            decay_fraction=first.decay_fraction,
        )
    )
    assert stage_rope_thetas(plan) == [plan.model.rope_theta] * len(plan.stages)


def test_bad_plans_name_the_file_and_field(tmp_path: Path):
    text = RECIPE.read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("n_kv_heads: 2", "n_kv_heads: 2\n  n_experts: 8"))
    with pytest.raises(PlanError, match=r"bad\.yaml.*model\.n_experts"):
        load_plan(bad)
    bad.write_text(text.replace("    tokens: planned", "    steps: -1", 1))
    with pytest.raises(PlanError, match=r"stages\.0\.steps"):
        load_plan(bad)
    bad.write_text(text.replace("seq_len: 256", "seq_len: 4096", 1))
    with pytest.raises(PlanError, match="max_seq_len"):
        load_plan(bad)
    bad.write_text("- just a list")
    with pytest.raises(PlanError, match="mapping"):
        load_plan(bad)
