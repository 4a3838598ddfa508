"""The training core: objective, loss normalisation, non-finite steps, plan fields, ranks.

Most tests run in this process (a tiny model; a gloo world of one where the loop needs
a process group); one real 2-rank torchrun run checks ranks against accumulation.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from training.data.packing import PackedBatch
from training.metrics import read_metrics
from training.model import ModelConfig, Transformer
from training.objectives import IGNORE_INDEX, OBJECTIVES, CausalLM, build_objective
from training.parallel import apply_activation_checkpointing
from training.plan import PlanError, load_plan
from training.train_step import (
    NonFiniteGuard,
    StepResult,
    TooManySkippedSteps,
    forward_backward,
    train_step,
)

CFG = ModelConfig(
    dim=32, n_layers=2, n_heads=4, n_kv_heads=2, ffn_hidden=64, max_seq_len=16, vocab_size=40
)


def tiny_model(seed: int = 0) -> Transformer:
    torch.manual_seed(seed)
    return Transformer(CFG)


def batch(rows: int, seq: int = 12, seed: int = 1, ignore: float = 0.3) -> PackedBatch:
    """Random tokens, two documents per row, a random share of labels ignored."""
    g = torch.Generator().manual_seed(seed)
    inputs = torch.randint(0, CFG.vocab_size, (rows, seq), generator=g)
    labels = torch.randint(0, CFG.vocab_size, (rows, seq), generator=g)
    labels[torch.rand(rows, seq, generator=g) < ignore] = IGNORE_INDEX
    half = seq // 2
    segment_ids = (torch.arange(seq) >= half).long().expand(rows, seq)
    position_ids = torch.cat([torch.arange(half), torch.arange(seq - half)]).expand(rows, seq)
    return PackedBatch(inputs, labels, position_ids.clone(), segment_ids.clone())


def rows(b: PackedBatch, sl: slice) -> PackedBatch:
    return PackedBatch(**{k: t[sl] for k, t in b.items()})


def grads(model: nn.Module) -> list[torch.Tensor]:
    return [p.grad.clone() for p in model.parameters()]


# ---- the loader with accumulation --------------------------------------------------
def test_a_step_reads_the_same_windows_however_ranks_and_micro_batches_split_it(mixture):
    from mixtures.shards import StageShards
    from training.data import LoaderStateError, PackedLoader

    shards = StageShards.open(mixture / "broad")

    def steps(world: int, accum: int, n: int = 3) -> list[torch.Tensor]:
        loaders = [
            PackedLoader(
                shards, seq_len=15, batch_size=2, rank=r, world_size=world, grad_accum=accum
            )
            for r in range(world)
        ]
        out = []
        for _ in range(n):
            micro = [ld.next_batches() for ld in loaders]  # [rank][micro-batch]
            # Stream order: micro-batch by micro-batch, ranks in order inside each.
            out.append(torch.cat([micro[r][m].inputs for m in range(accum) for r in range(world)]))
        return out

    one_by_four, two_by_two, four_by_one = steps(1, 4), steps(2, 2), steps(4, 1)
    for a, b, c in zip(one_by_four, two_by_two, four_by_one, strict=True):
        assert torch.equal(a, b) and torch.equal(a, c)
    state = PackedLoader(shards, seq_len=15, batch_size=2, world_size=2, grad_accum=2).state_dict()
    PackedLoader(shards, seq_len=15, batch_size=2, grad_accum=4).load_state_dict(state)
    with pytest.raises(LoaderStateError, match="grad_accum"):
        PackedLoader(shards, seq_len=15, batch_size=2, grad_accum=2).load_state_dict(state)


# ---- the objective ------------------------------------------------------------------
class FixedLogits(nn.Module):
    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = nn.Parameter(logits)

    def forward(self, inputs, position_ids, segment_ids):  # noqa: ANN001 - the model's call
        return self.logits


def test_causal_lm_sums_cross_entropy_over_valid_labels_only():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 5)
    labels = torch.tensor([[1, IGNORE_INDEX, 4], [IGNORE_INDEX, IGNORE_INDEX, 0]])
    b = PackedBatch(torch.zeros(2, 3, dtype=torch.long), labels, labels * 0, labels * 0)
    loss_sum, n_valid = CausalLM().loss(FixedLogits(logits), b)
    logp = logits.double().log_softmax(-1)
    valid = [(0, 0), (0, 2), (1, 2)]
    reference = -sum(logp[r, t, labels[r, t]] for r, t in valid)
    assert n_valid.item() == 3
    assert loss_sum.item() == pytest.approx(reference.item(), abs=1e-5)
    assert build_objective("causal_lm").name == "causal_lm"
    with pytest.raises(ValueError, match="unknown objective 'ppo'"):
        build_objective("ppo")
    assert sorted(OBJECTIVES) == ["causal_lm", "dpo", "grpo", "sft"]
    CausalLM().check_batch_type(PackedBatch)


def test_two_micro_batches_give_the_full_batch_gradient():
    """Micro-batches with unequal valid counts: each weighs by its valid labels, not 1/2."""
    b = batch(4)
    b.labels[:2, 3:] = IGNORE_INDEX  # the first micro-batch has far fewer valid labels
    model, objective = tiny_model(), CausalLM()
    loss_full, n_full = forward_backward(model, objective, [b])
    full = grads(model)
    model.zero_grad(set_to_none=True)
    loss_acc, n_acc = forward_backward(
        model, objective, [rows(b, slice(0, 2)), rows(b, slice(2, 4))]
    )
    acc = grads(model)
    assert n_full.item() == n_acc.item() == (b.labels != IGNORE_INDEX).sum().item()
    assert (loss_acc / n_acc).item() == pytest.approx((loss_full / n_full).item(), abs=1e-6)
    assert max((a - f).abs().max().item() for a, f in zip(acc, full, strict=True)) <= 1e-6
    # The naive mean of per-micro-batch means would be a different gradient.
    model.zero_grad(set_to_none=True)
    for part in (rows(b, slice(0, 2)), rows(b, slice(2, 4))):
        s, n = objective.loss(model, part)
        (s / n / 2).backward()
    naive = grads(model)
    assert max((a - f).abs().max().item() for a, f in zip(naive, full, strict=True)) > 1e-4


def test_activation_checkpointing_keeps_gradients_and_state_dict_names():
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    b = batch(2)
    plain, wrapped = tiny_model(), apply_activation_checkpointing(tiny_model())
    for model in (plain, wrapped):
        forward_backward(model, CausalLM(), [b])
    assert all(
        torch.allclose(a, w, atol=1e-6) for a, w in zip(grads(plain), grads(wrapped), strict=True)
    )
    assert get_model_state_dict(wrapped).keys() == plain.state_dict().keys()


# ---- non-finite steps ---------------------------------------------------------------
class Poisoned(CausalLM):
    """CausalLM whose loss turns NaN while `poison` is set."""

    name = "poisoned"
    poison = True

    def loss(self, model, batch):  # noqa: ANN001
        loss_sum, n = super().loss(model, batch)
        return (loss_sum * float("nan") if self.poison else loss_sum), n


def test_a_non_finite_step_changes_nothing_and_is_counted():
    model, objective = tiny_model(), Poisoned()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    before = [p.detach().clone() for p in model.parameters()]
    result = train_step(model, optimizer, objective, [batch(2)], grad_clip=1.0)
    assert result.skipped and result.valid_tokens > 0
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before, strict=True))
    assert all(p.grad is None for p in model.parameters()) and not optimizer.state
    objective.poison = False
    result = train_step(model, optimizer, objective, [batch(2)], grad_clip=1.0)
    assert not result.skipped and result.loss == pytest.approx(3.7, abs=0.3)  # ~ln(40)
    assert not all(torch.equal(p, q) for p, q in zip(model.parameters(), before, strict=True))

    guard, bad = NonFiniteGuard(limit=2), StepResult(float("nan"), 1.0, 10, True)
    guard.update(StepResult(1.0, 1.0, 10, False), stage="pretrain", step=1)
    guard.update(bad, stage="pretrain", step=2)
    guard.update(bad, stage="pretrain", step=5)
    assert guard.skipped == 2
    with pytest.raises(TooManySkippedSteps, match=r"stage pretrain step 7: 3 steps skipped.*=2"):
        guard.update(bad, stage="pretrain", step=7)


# ---- plan fields --------------------------------------------------------------------
PLAN = """
model: {dim: 32, n_layers: 2, n_heads: 4, n_kv_heads: 2, ffn_hidden: 64, max_seq_len: 32}
seed: 3
EXTRA
stages:
STAGES
"""
PRETRAIN = "  - {name: pretrain, data: broad, steps: 3, seq_len: 32, batch_size: 2, lr: 0.01}"


def write_plan(path: Path, *stages: str, extra: str = "") -> Path:
    path.write_text(PLAN.replace("EXTRA", extra).replace("STAGES", "\n".join(stages)))
    return path


def test_plan_fields_for_objectives_accumulation_and_branching(tmp_path: Path):
    plan = load_plan(write_plan(tmp_path / "p.yaml", PRETRAIN))
    stage = plan.stages[0]
    assert (stage.objective, stage.grad_accum, stage.init_from) == ("causal_lm", 1, None)
    assert (plan.max_nan_skips, plan.activation_checkpointing) == (10, False)
    bad = [
        ("objective: ppo", r"stages\.0.*unknown objective 'ppo'"),
        ("grad_accum: 0", r"stages\.0\.grad_accum"),
        (f"init_from: {tmp_path / 'nowhere'}", f"init_from '{tmp_path / 'nowhere'}'"),
    ]
    for field, message in bad:
        path = write_plan(tmp_path / "bad.yaml", PRETRAIN.replace("lr: 0.01", f"lr: 0.01, {field}"))
        with pytest.raises(PlanError, match=message):
            load_plan(path)
    with pytest.raises(PlanError, match="max_nan_skips"):
        load_plan(write_plan(tmp_path / "bad.yaml", PRETRAIN, extra="max_nan_skips: -1"))
    plan = load_plan(
        write_plan(tmp_path / "ac.yaml", PRETRAIN, extra="activation_checkpointing: true")
    )
    assert plan.activation_checkpointing


# ---- the loop, in a gloo world of one -----------------------------------------------
def run(plan_path: Path, mixture: Path, out: Path, env) -> list[dict]:  # noqa: ANN001
    from training.trainer import train

    train(load_plan(plan_path), mixture, out, env)
    return read_metrics(out / "metrics.jsonl")


def test_accumulation_and_checkpointing_match_a_bigger_micro_batch(
    world_of_one, mixture: Path, tmp_path: Path
):
    """1 x 4 windows == 2 micro-batches x 2 windows, with and without activation checkpointing."""
    from training.checkpoint import load_model_weights

    big = write_plan(tmp_path / "big.yaml", PRETRAIN.replace("batch_size: 2", "batch_size: 4"))
    acc_stage = PRETRAIN.replace("lr: 0.01", "lr: 0.01, grad_accum: 2")
    acc = write_plan(tmp_path / "acc.yaml", acc_stage)
    ac = write_plan(tmp_path / "ac.yaml", acc_stage, extra="activation_checkpointing: true")
    one, two, three = (run(p, mixture, tmp_path / p.stem, world_of_one) for p in (big, acc, ac))
    assert [r["tokens"] for r in one] == [r["tokens"] for r in two] == [4 * 32] * 3
    assert [r["valid_tokens"] for r in two] == [4 * 32] * 3
    assert max(abs(a["loss"] - b["loss"]) for a, b in zip(one, two, strict=True)) <= 1e-5
    assert max(abs(a["loss"] - b["loss"]) for a, b in zip(two, three, strict=True)) <= 1e-6
    model = Transformer(CFG.model_copy(update={"max_seq_len": 32, "vocab_size": 256}))
    load_model_weights(tmp_path / "ac" / "checkpoints" / "pretrain", model)  # plain names


def test_init_from_branches_off_another_runs_checkpoint(world_of_one, mixture: Path, tmp_path):
    anneal = "  - {name: anneal, data: anneal, steps: 2, seq_len: 32, batch_size: 2, lr: 0.005}"
    straight = run(
        write_plan(tmp_path / "a.yaml", PRETRAIN, anneal), mixture, tmp_path / "a", world_of_one
    )
    ckpt = tmp_path / "a" / "checkpoints" / "pretrain"
    branch = anneal.replace("lr: 0.005", f"lr: 0.005, init_from: {ckpt}")
    branched = run(write_plan(tmp_path / "b.yaml", branch), mixture, tmp_path / "b", world_of_one)
    assert [r["loss"] for r in branched] == [r["loss"] for r in straight[3:]]
    fresh = run(write_plan(tmp_path / "c.yaml", anneal), mixture, tmp_path / "c", world_of_one)
    assert fresh[0]["loss"] > branched[0]["loss"] + 0.05


def test_the_run_stops_after_max_nan_skips(world_of_one, mixture, tmp_path, monkeypatch):
    monkeypatch.setitem(OBJECTIVES, "poisoned", Poisoned)
    stage = PRETRAIN.replace("steps: 3", "steps: 6").replace(
        "lr: 0.01", "lr: 0.01, objective: poisoned"
    )
    plan = write_plan(tmp_path / "nan.yaml", stage, extra="max_nan_skips: 2")
    with pytest.raises(TooManySkippedSteps, match="stage pretrain step 3: 3 steps skipped"):
        run(plan, mixture, tmp_path / "nan", world_of_one)
    rows_ = read_metrics(tmp_path / "nan" / "metrics.jsonl")
    assert [r["skipped_steps"] for r in rows_] == [1, 2, 3]
    assert all(r["skipped"] for r in rows_)


# ---- real ranks ---------------------------------------------------------------------
@pytest.mark.slow
def test_two_ranks_match_one_rank_with_accumulation(mixture: Path, tmp_path: Path):
    """Same global batch (8 windows): 2 ranks x 1 micro-batch vs 1 rank x 2 micro-batches."""
    from training.cli import run_training

    stage = PRETRAIN.replace("steps: 3", "steps: 6").replace("batch_size: 2", "batch_size: 4")
    losses = {}
    for nproc, accum in ((2, 1), (1, 2)):
        s = stage.replace("lr: 0.01", f"lr: 0.01, grad_accum: {accum}, warmup_steps: 2")
        plan = write_plan(tmp_path / f"{nproc}.yaml", s)
        run_training(plan, mixture, tmp_path / f"run{nproc}", nproc=nproc)
        rows_ = read_metrics(tmp_path / f"run{nproc}" / "metrics.jsonl")
        assert [r["tokens"] for r in rows_] == [8 * 32] * 6
        losses[nproc] = [(r["loss"], r["grad_norm"]) for r in rows_]
    pairs = zip(losses[1], losses[2], strict=True)
    diff = max(abs(a - b) for x, y in pairs for a, b in zip(x, y, strict=True))
    print(f"2 ranks x 1 vs 1 rank x 2 micro-batches: max abs diff (loss, grad norm) {diff:.2e}")
    assert diff <= 1e-5, (diff, losses)
    assert losses[1][-1][0] < losses[1][0][0]


@pytest.mark.slow
def test_compiled_blocks_train_like_eager_ones(world_of_one, mixture: Path, tmp_path: Path):
    """`compile: true` (inductor on CPU) follows the eager losses; attention stays eager."""
    eager = run(write_plan(tmp_path / "e.yaml", PRETRAIN), mixture, tmp_path / "e", world_of_one)
    plan = write_plan(tmp_path / "c.yaml", PRETRAIN, extra="compile: true")
    compiled = run(plan, mixture, tmp_path / "c", world_of_one)
    assert load_plan(plan).compile
    diffs = [abs(a["loss"] - b["loss"]) for a, b in zip(eager, compiled, strict=True)]
    assert max(diffs) <= 1e-4, diffs


def test_bf16_mixed_precision_trains_with_fp32_master_weights(world_of_one, mixture, tmp_path):
    """dtype bfloat16: FSDP2's MixedPrecisionPolicy computes in bf16 and reduces gradients
    in fp32 into fp32 sharded weights (the GPU setting; gloo on CPU runs the same policy)."""
    from training.checkpoint import load_model_weights

    fp32 = run(write_plan(tmp_path / "f.yaml", PRETRAIN), mixture, tmp_path / "f", world_of_one)
    plan = write_plan(tmp_path / "b.yaml", PRETRAIN, extra="dtype: bfloat16")
    bf16 = run(plan, mixture, tmp_path / "b", world_of_one)
    diffs = [abs(a["loss"] - b["loss"]) for a, b in zip(fp32, bf16, strict=True)]
    assert 0 < max(diffs) < 0.05, diffs  # bf16 rounding shows, but it is the same training
    model = Transformer(CFG.model_copy(update={"max_seq_len": 32, "vocab_size": 256}))
    load_model_weights(tmp_path / "b" / "checkpoints" / "pretrain", model)
    assert all(p.dtype == torch.float32 for p in model.state_dict().values())


def test_a_resume_on_changed_data_is_refused(world_of_one, mixture: Path, tmp_path: Path):
    from shard_fixtures import markov_docs, write_stage

    from training.checkpoint import CheckpointError
    from training.trainer import train

    plan = load_plan(write_plan(tmp_path / "p.yaml", PRETRAIN))
    train(plan, mixture, tmp_path / "run", world_of_one, stop_after=("pretrain", 2))
    other = tmp_path / "other"  # the same layout, but broad was re-mixed with other documents
    write_stage(other / "broad", markov_docs(400, seed=9, vocab=256), vocab=256)
    with pytest.raises(CheckpointError, match=r"\['broad'\] changed since this run trained"):
        train(plan, other, tmp_path / "run", world_of_one, resume=True)
    train(plan, mixture, tmp_path / "run", world_of_one, resume=True)  # same data: resumes
