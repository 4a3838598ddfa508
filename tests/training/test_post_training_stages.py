"""SFT and DPO run as stages of the one training loop (a gloo world of one, in process):
loss only on assistant tokens, DPO against reference log-probs stored beside the shards."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from training.metrics import read_metrics
from training.plan import PlanError, load_plan

PLAN = """
model: {dim: 32, n_layers: 2, n_heads: 4, n_kv_heads: 2, ffn_hidden: 64, max_seq_len: 320}
seed: 7
passkey_samples: 0
stages:
  - {name: sft, data: sft, objective: sft, steps: 6, seq_len: 128, batch_size: 4, lr: 0.01,
     checkpoint_every: 3}
  - {name: dpo, data: preferences, objective: dpo, steps: 8, seq_len: 128, batch_size: 4,
     lr: 0.005, dpo: {beta: 0.5}, checkpoint_every: 2}
"""


@pytest.fixture(scope="module")
def chat_mix(tmp_path_factory) -> Path:
    from chat_fixtures import write_chat_mixture

    from mixtures.chat_stages import mix_preferences

    root, _ = write_chat_mixture(tmp_path_factory.mktemp("chat"))
    # a preference a tiny model can learn in a few steps: an answer over a refusal
    easy = root / "easy.jsonl"
    pairs = [
        {
            "prompt": f"What is {a} + {b}?",
            "chosen": f"{a} + {b} = {a + b}. The answer is {a + b}.",
            "rejected": "I do not know.",
        }
        for a, b in zip(range(10, 74), range(40, 104), strict=True)
    ]
    easy.write_text("".join(json.dumps(p) + "\n" for p in pairs))
    mix_preferences([easy], root / "tokenizer" / "tokenizer.json", root, stage="easy")
    return root


def train(plan_text: str, data: Path, out: Path, env, **kw) -> list[dict]:  # noqa: ANN001
    from training.trainer import train as run

    out.mkdir(parents=True, exist_ok=True)
    (out / "plan.yaml").write_text(plan_text)
    run(load_plan(out / "plan.yaml"), data, out, env, **kw)
    return read_metrics(out / "metrics.jsonl")


def test_sft_then_dpo_through_the_one_loop(world_of_one, chat_mix: Path, tmp_path: Path):
    rows = train(PLAN, chat_mix, tmp_path / "run", world_of_one)
    sft, dpo = rows[:6], rows[6:]
    assert [r["stage"] for r in rows] == ["sft"] * 6 + ["dpo"] * 8
    # SFT: only assistant tokens carry loss, so far fewer valid labels than positions
    assert all(0 < r["valid_tokens"] < r["tokens"] for r in sft)
    assert sft[-1]["loss"] < sft[0]["loss"]
    # DPO starts with policy == reference: every pair's loss is log 2 exactly
    assert dpo[0]["loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert dpo[0]["valid_tokens"] == 4  # pairs, the unit DPO's loss is averaged over
    assert all(math.isfinite(r["loss"]) and r["grad_norm"] > 0 for r in dpo)
    stored = list((chat_mix / "preferences" / "reference_logps").glob("*.npy"))
    assert len(stored) == 1
    values = np.load(stored[0])
    assert values.shape == (280, 2) and np.isfinite(values).all() and (values < 0).all()


def test_a_resumed_dpo_stage_reuses_its_reference_and_matches(world_of_one, chat_mix, tmp_path):
    straight = train(PLAN, chat_mix, tmp_path / "a", world_of_one)
    stored = next((chat_mix / "preferences" / "reference_logps").glob("*.npy"))
    mtime = stored.stat().st_mtime_ns
    assert train(PLAN, chat_mix, tmp_path / "b", world_of_one, stop_after=("dpo", 2)) is not None
    resumed = train(PLAN, chat_mix, tmp_path / "b", world_of_one, resume=True)
    assert [r["loss"] for r in resumed] == [r["loss"] for r in straight]
    assert stored.stat().st_mtime_ns == mtime  # computed once, reused by later runs


def test_objectives_must_fit_their_data(world_of_one, chat_mix: Path, tmp_path: Path):
    from training.trainer import open_stage_shards

    wrong = PLAN.replace("data: sft, objective: sft", "data: preferences, objective: sft")
    (tmp_path / "p.yaml").write_text(wrong)
    with pytest.raises(ValueError, match="objective sft trains on sft shards.*preferences"):
        open_stage_shards(load_plan(tmp_path / "p.yaml"), chat_mix, verify=False)
    (tmp_path / "q.yaml").write_text(
        PLAN.replace("steps: 8, seq_len: 128", "tokens: 1000, seq_len: 128")
    )
    with pytest.raises(PlanError, match="a dpo stage's length is given in steps"):
        load_plan(tmp_path / "q.yaml")


def test_dpo_learns_a_clear_preference(world_of_one, chat_mix: Path, tmp_path: Path):
    plan = PLAN.replace("data: preferences", "data: easy").replace("lr: 0.005", "lr: 0.003")
    dpo = [r for r in train(plan, chat_mix, tmp_path / "run", world_of_one) if r["stage"] == "dpo"]
    assert dpo[0]["loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert sum(r["loss"] for r in dpo[-3:]) / 3 < 0.5, [r["loss"] for r in dpo]


def test_sft_starts_from_a_pretraining_checkpoint(world_of_one, chat_mix: Path, tmp_path: Path):
    """init_from: SFT continues from a causal-LM run's weights (same tokenizer), not a fresh init."""
    from shard_fixtures import markov_docs, write_stage

    manifest = json.loads((chat_mix / "sft" / "manifest.json").read_text())
    tok = {**manifest["tokenizer"], "path": "../tokenizer/tokenizer.json"}
    vocab = tok["vocab_size"]
    data = tmp_path / "data"
    (data / "tokenizer").mkdir(parents=True)
    (data / "tokenizer" / "tokenizer.json").write_bytes(
        (chat_mix / "tokenizer" / "tokenizer.json").read_bytes()
    )
    write_stage(data / "broad", markov_docs(200, seed=4, vocab=vocab), vocab=vocab, tokenizer=tok)
    (data / "sft").symlink_to(chat_mix / "sft")
    pretrain = PLAN.split("stages:")[0] + (
        "stages:\n  - {name: pretrain, data: broad, steps: 20, seq_len: 128, batch_size: 4, "
        "lr: 0.01}\n"
    )
    train(pretrain, data, tmp_path / "pre", world_of_one)
    sft = PLAN.split("  - {name: dpo")[0]
    fresh = train(sft, data, tmp_path / "fresh", world_of_one)
    ckpt = tmp_path / "pre" / "checkpoints" / "pretrain"
    branched = sft.replace("lr: 0.01,", f"lr: 0.01, init_from: {ckpt}, reset_optimizer: true,")
    started = train(branched, data, tmp_path / "sft", world_of_one)
    assert started[0]["loss"] != fresh[0]["loss"]  # the weights came from the checkpoint
    assert [r["stage"] for r in started] == ["sft"] * 6
