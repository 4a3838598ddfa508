"""GRPO as a stage of the one loop: rollouts sampled with the KV cache, scored by the math
verifier, trained with the clipped objective (a gloo world of one, in process)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from training.metrics import read_metrics
from training.plan import load_plan

DATA = Path(__file__).parents[2] / "data" / "post_training"
PLAN = """
model: {dim: 32, n_layers: 2, n_heads: 4, n_kv_heads: 2, ffn_hidden: 64, max_seq_len: 320}
seed: 3
passkey_samples: 0
stages:
  - {name: sft, data: sft, objective: sft, steps: 3, seq_len: 128, batch_size: 4, lr: 0.01}
  - {name: grpo, data: tasks, objective: grpo, steps: 3, seq_len: 128, batch_size: 2,
     lr: 0.001, grpo: {group_size: 4, max_new_tokens: 12, temperature: 1.0KL},
     checkpoint_every: 1}
"""


@pytest.fixture(scope="module")
def task_mix(tmp_path_factory) -> Path:
    from chat_fixtures import write_chat_mixture

    from mixtures.chat_stages import mix_tasks

    root, _ = write_chat_mixture(tmp_path_factory.mktemp("tasks"))
    mix_tasks([DATA / "arithmetic_rl.jsonl"], root / "tokenizer" / "tokenizer.json", root)
    return root


def train(plan_text: str, data: Path, out: Path, env, **kw) -> list[dict]:  # noqa: ANN001
    from training.trainer import train as run

    out.mkdir(parents=True, exist_ok=True)
    (out / "plan.yaml").write_text(plan_text)
    run(load_plan(out / "plan.yaml"), data, out, env, **kw)
    return read_metrics(out / "metrics.jsonl")


@pytest.mark.parametrize("kl", ["", ", kl_beta: 0.1"])
def test_grpo_steps_report_rewards_and_both_throughputs(world_of_one, task_mix, tmp_path, kl):
    rows = train(PLAN.replace("KL", kl), task_mix, tmp_path / "run", world_of_one)
    grpo = [r for r in rows if r["stage"] == "grpo"]
    assert len(grpo) == 3
    for r in grpo:
        assert 0.0 <= r["reward_mean"] <= 1.0 and math.isfinite(r["loss"])
        assert r["rollout_tokens"] > 0 and r["rollout_tokens_per_s"] > 0
        assert r["tokens_per_s"] > 0 and r["rollout_s"] > 0  # training tokens/s apart
        assert r["valid_tokens"] <= r["rollout_tokens"]  # loss only on completion tokens


def test_a_resumed_grpo_stage_samples_and_learns_the_same(world_of_one, task_mix, tmp_path):
    plan = PLAN.replace("KL", "")
    straight = train(plan, task_mix, tmp_path / "a", world_of_one)
    stopped = train(plan, task_mix, tmp_path / "b", world_of_one, stop_after=("grpo", 1))
    assert [r["stage"] for r in stopped] == ["sft"] * 3 + ["grpo"]
    resumed = train(plan, task_mix, tmp_path / "b", world_of_one, resume=True)
    keys = ("loss", "reward_mean", "rollout_tokens", "grad_norm")
    assert [[r.get(k) for k in keys] for r in resumed] == [
        [r.get(k) for k in keys] for r in straight
    ]
