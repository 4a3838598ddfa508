"""KV-cache generation (training/generation/) against the model's own no-cache forward."""

from __future__ import annotations

import pytest
import torch

from training.generation import generate, prefill, sample_tokens, step, top_p_filter
from training.model import ModelConfig, Transformer
from training.model.rope import YaRN
from training.parallel import shard_model

VOCAB = 64
PAD = 0
PROMPTS = [[5, 9, 17, 3, 44, 8, 21], [30, 2], [7, 7, 12, 60], [1]]


def tiny(n_kv_heads: int = 2, seed: int = 0, **rope: object) -> Transformer:
    cfg = ModelConfig(
        dim=32, n_layers=2, n_heads=4, n_kv_heads=n_kv_heads, ffn_hidden=64, max_seq_len=48,
        vocab_size=VOCAB,
    )  # fmt: skip
    torch.manual_seed(seed)
    model = Transformer(cfg).eval()
    with torch.no_grad():  # sharper attention than at init, so positions (RoPE, pads) matter
        for block in model.blocks:
            block.attn.wq.weight.mul_(8)
            block.attn.wk.weight.mul_(8)
    for name, value in rope.items():
        setattr(model, name, value)
    return model


@torch.no_grad()
def full_forward_logits(model: Transformer, row: list[int]) -> torch.Tensor:
    """The reference: next-token logits of one unpadded row, no cache, positions 0..n-1."""
    return model(torch.tensor([row]))[0, -1]


@torch.no_grad()
def textbook_greedy(model: Transformer, prompt: list[int], n: int) -> list[int]:
    seq = list(prompt)
    for _ in range(n):
        seq.append(int(full_forward_logits(model, seq).argmax()))
    return seq[len(prompt) :]


ROPES = {
    "default": {},
    "theta": {"rope_theta": 500_000.0},
    "yarn": {"rope_theta": 20_000.0, "rope_yarn": YaRN(factor=4.0, original_max_seq_len=12)},
}


@pytest.mark.parametrize("n_kv_heads", [2, 1, 4], ids=["gqa", "mqa", "mha"])
@pytest.mark.parametrize("rope", ROPES.values(), ids=ROPES.keys())
@torch.no_grad()
def test_every_cached_step_matches_a_full_forward_of_the_unpadded_prefix(n_kv_heads, rope):
    model = tiny(n_kv_heads, **rope)
    gen = torch.Generator().manual_seed(3)
    state, logits = prefill(model, PROMPTS, max_new_tokens=12, pad_id=PAD)
    seqs = [list(p) for p in PROMPTS]
    worst = 0.0
    for t in range(12):
        for b, row in enumerate(seqs):
            worst = max(worst, (logits[b] - full_forward_logits(model, row)).abs().max().item())
        token = sample_tokens(logits, temperature=1.5, generator=gen)  # off the greedy path
        for b, row in enumerate(seqs):
            row.append(int(token[b]))
        if t < 11:
            logits = step(model, state, token)
    assert worst <= 1e-5
    assert state.cache.length == len(PROMPTS[0]) + 11 == state.cache.max_len


def test_the_rope_settings_reach_the_cached_path():
    """Guard for the parametrisation above: each RoPE variant gives different logits."""
    outs = [prefill(tiny(**r), PROMPTS, max_new_tokens=2, pad_id=PAD)[1] for r in ROPES.values()]
    assert (outs[0] - outs[1]).abs().max() > 1e-3
    assert (outs[1] - outs[2]).abs().max() > 1e-3


def test_a_row_generates_the_same_alone_or_padded_in_a_batch():
    model = tiny()
    batch = generate(model, PROMPTS, max_new_tokens=10, temperature=0, pad_id=PAD,
                     return_logprobs=True)  # fmt: skip
    for b, prompt in enumerate(PROMPTS):
        alone = generate(model, [prompt], max_new_tokens=10, temperature=0, pad_id=PAD,
                         return_logprobs=True)  # fmt: skip
        assert alone.sequences()[0] == batch.sequences()[b]
        assert torch.allclose(alone.logprobs[0], batch.logprobs[b], atol=1e-5)


def test_greedy_is_deterministic_and_equals_the_no_cache_loop():
    model = tiny(seed=1)
    first = generate(model, PROMPTS, max_new_tokens=9, temperature=0, pad_id=PAD)
    again = generate(model, PROMPTS, max_new_tokens=9, temperature=0, pad_id=PAD)
    assert torch.equal(first.tokens, again.tokens)
    assert first.sequences() == [textbook_greedy(model, p, 9) for p in PROMPTS]
    assert first.tokens.shape == (4, 9) and first.lengths.tolist() == [9] * 4
    assert first.finish_reasons == ["length"] * 4 and first.logprobs is None


def test_a_tiny_top_p_is_greedy():
    model = tiny(seed=2)
    greedy = generate(model, PROMPTS, max_new_tokens=8, temperature=0, pad_id=PAD)
    nucleus = generate(model, PROMPTS, max_new_tokens=8, temperature=1.0, top_p=1e-9,
                       pad_id=PAD, generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert torch.equal(greedy.tokens, nucleus.tokens)


def test_seeded_sampling_is_reproducible_and_differs_from_greedy():
    model = tiny(seed=3)

    def sampled(seed: int, top_p: float = 1.0) -> list[list[int]]:
        gen = torch.Generator().manual_seed(seed)
        return generate(model, PROMPTS, max_new_tokens=12, temperature=1.3, top_p=top_p,
                        pad_id=PAD, generator=gen).sequences()  # fmt: skip

    assert sampled(7) == sampled(7)
    assert sampled(7, top_p=0.8) == sampled(7, top_p=0.8)
    assert sampled(7) != sampled(8)
    assert sampled(7) != generate(model, PROMPTS, max_new_tokens=12, temperature=0,
                                  pad_id=PAD).sequences()  # fmt: skip


class CountForwards:
    def __init__(self, model: torch.nn.Module) -> None:
        self.n = 0
        model.register_forward_hook(lambda *_: setattr(self, "n", self.n + 1))


def test_stop_tokens_end_rows_and_generation_stops_when_all_rows_have():
    model = tiny(seed=4)
    free = generate(model, PROMPTS, max_new_tokens=10, temperature=0, pad_id=PAD).sequences()
    stop_tok = free[0][3]  # row 0 stops at its 4th token at the latest, others where it occurs
    first = {b: row.index(stop_tok) for b, row in enumerate(free) if stop_tok in row}
    assert first[0] <= 3 and len(first) < len(free)  # some row runs to max_new_tokens
    out = generate(model, PROMPTS, max_new_tokens=10, temperature=0, pad_id=PAD,
                   stop_ids=[stop_tok, 999])  # fmt: skip
    for b, row in enumerate(free):
        if b in first:
            n = first[b] + 1
            assert out.sequences()[b] == row[:n] and out.finish_reasons[b] == "stop"
            assert out.tokens[b, n:].eq(PAD).all()
        else:
            assert out.sequences()[b] == row and out.finish_reasons[b] == "length"
    assert out.lengths.tolist() == [len(s) for s in out.sequences()]

    # Every row stops on its first token: one prefill, no decode step.
    counter = CountForwards(model)
    firsts = sorted({row[0] for row in free})
    out = generate(model, PROMPTS, max_new_tokens=10, temperature=0, pad_id=PAD, stop_ids=firsts)
    assert counter.n == 1
    assert out.lengths.tolist() == [1] * 4 and out.finish_reasons == ["stop"] * 4
    assert out.tokens.shape == (4, 1)


def test_max_new_tokens_is_respected():
    model = tiny(seed=5)
    counter = CountForwards(model)
    out = generate(model, PROMPTS, max_new_tokens=6, pad_id=PAD, return_logprobs=True,
                   generator=torch.Generator().manual_seed(1))  # fmt: skip
    assert counter.n == 6  # prefill + 5 steps: the sixth token is never fed back
    assert out.tokens.shape == out.logprobs.shape == (4, 6)
    assert out.finish_reasons == ["length"] * 4 and out.lengths.tolist() == [6] * 4
    one = generate(model, PROMPTS, max_new_tokens=1, temperature=0, pad_id=PAD)
    assert one.tokens.shape == (4, 1)


def test_logprobs_are_the_raw_models_at_temperature_one():
    model = tiny(seed=6)
    out = generate(model, PROMPTS, max_new_tokens=7, temperature=0.7, top_p=0.9, pad_id=PAD,
                   return_logprobs=True, generator=torch.Generator().manual_seed(4))  # fmt: skip
    for b, prompt in enumerate(PROMPTS):
        seq = prompt + out.sequences()[b]
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor([seq]))[0], dim=-1)
        n = len(prompt)
        want = logp[n - 1 : len(seq) - 1].gather(1, torch.tensor(seq[n:]).unsqueeze(1))[:, 0]
        assert torch.allclose(out.logprobs[b, : len(seq) - n], want, atol=1e-5)
    assert (out.logprobs <= 0).all()


def test_top_p_keeps_the_smallest_head_reaching_p():
    probs = torch.tensor([[0.2, 0.5, 0.3, 0.0]])
    kept, order = top_p_filter(probs, 0.6)
    assert order[0].tolist() == [1, 2, 0, 3]
    assert torch.equal(kept, torch.tensor([[0.5, 0.3, 0.0, 0.0]]))
    assert torch.equal(top_p_filter(probs, 0.5)[0], torch.tensor([[0.5, 0.0, 0.0, 0.0]]))
    logits = probs.clamp_min(1e-9).log().expand(2000, 4)
    draws = sample_tokens(logits, top_p=0.6, generator=torch.Generator().manual_seed(0))
    counts = torch.bincount(draws, minlength=4).tolist()
    assert counts[0] == counts[3] == 0 and 0.55 < counts[1] / 2000 < 0.70  # 0.5 / 0.8 = 0.625


def test_invalid_requests_are_refused():
    model = tiny()
    with pytest.raises(ValueError, match="max_seq_len"):
        generate(model, [[1] * 40], max_new_tokens=10, pad_id=PAD)
    with pytest.raises(ValueError, match="at least one token"):
        generate(model, [[1], []], max_new_tokens=2, pad_id=PAD)
    with pytest.raises(ValueError, match="top_p"):
        generate(model, [[1]], max_new_tokens=2, top_p=0.0, pad_id=PAD)
    with pytest.raises(ValueError, match="temperature"):
        generate(model, [[1]], max_new_tokens=2, temperature=-1.0, pad_id=PAD)
    with pytest.raises(ValueError, match="pad_id"):
        generate(model, [[1]], max_new_tokens=2, pad_id=VOCAB)
    with pytest.raises(ValueError, match="max_new_tokens"):
        generate(model, [[1]], max_new_tokens=0, pad_id=PAD)


def test_the_cache_keeps_the_models_dtype():
    model = tiny(seed=7).to(torch.bfloat16)
    state, logits = prefill(model, PROMPTS, max_new_tokens=3, pad_id=PAD)
    assert state.cache.layers[0].k.dtype == torch.bfloat16 and logits.dtype == torch.float32
    ref = full_forward_logits(model, PROMPTS[0])
    assert (logits[0] - ref).abs().max() < 0.05  # bf16 rounding, different summation order


@pytest.mark.filterwarnings("ignore:.*")
def test_generation_runs_through_fsdp2_hooks(world_of_one):
    plain = generate(tiny(seed=8), PROMPTS, max_new_tokens=8, temperature=0, pad_id=PAD)
    sharded = shard_model(tiny(seed=8), world_of_one.mesh["dp"], torch.float32)
    out = generate(sharded, PROMPTS, max_new_tokens=8, temperature=0, pad_id=PAD, sync=True)
    assert out.sequences() == plain.sequences()


@pytest.mark.filterwarnings("ignore:.*")
def test_fsdp2_mixed_precision_caches_in_bf16(world_of_one):
    sharded = shard_model(tiny(seed=9), world_of_one.mesh["dp"], torch.bfloat16)
    state, logits = prefill(sharded, PROMPTS, max_new_tokens=4, pad_id=PAD)
    assert state.cache.layers[0].k.dtype == torch.bfloat16 and logits.dtype == torch.float32
    ref = prefill(tiny(seed=9), PROMPTS, max_new_tokens=4, pad_id=PAD)[1]
    assert (logits - ref).abs().max() < 0.05
    out = generate(sharded, PROMPTS, max_new_tokens=6, pad_id=PAD, return_logprobs=True)
    assert out.tokens.shape == (4, 6) and out.logprobs.isfinite().all()
