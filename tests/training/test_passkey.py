"""The passkey probe: prompts fit the window with the needle at its seeded depth, scoring is
exact, and the decoding loop can tell a model that reads the key from one that cannot.

The oracle below is a real model (no mocking): it reads the needle out of its input tokens
and puts all its logit mass on the next key token, so through the probe it must score 1;
shifted by one token it must score 0, as must an untrained model.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mixtures.tokenizer import train_bpe
from training.eval.passkey import (
    FILLER,
    NEEDLE,
    QUESTION,
    passkey_accuracy,
    passkey_completions,
    passkey_prompts,
    score_completion,
)
from training.model.config import ModelConfig
from training.model.llama import Transformer
from training.model.presets import get_preset
from training.parallel import shard_model

VOCAB = 400


@pytest.fixture(scope="module")
def tokenizer():
    texts = [" ".join(FILLER)] * 20 + [QUESTION] * 5
    texts += [NEEDLE.format(key=str(k)) for k in range(10_000, 99_999, 997)]
    texts += [f"document {i}: the quick brown fox jumps over {i % 7} lazy dogs." for i in range(50)]
    return train_bpe(texts, vocab_size=VOCAB, min_frequency=1)


def test_score_completion_is_an_exact_match_of_the_leading_digits():
    assert score_completion(" 71432. Remember it.", "71432")
    assert score_completion("71432", "71432")
    assert score_completion("\n 71432 is the pass key", "71432")
    assert not score_completion(" 7143", "71432")  # too short
    assert not score_completion(" 714320", "71432")  # too long
    assert not score_completion(" 71433", "71432")
    assert not score_completion(" is 71432", "71432")  # not where the answer goes
    assert not score_completion("", "71432")


@pytest.mark.parametrize("seq_len", [48, 100, 128, 1000])
def test_prompts_fill_the_window_exactly_and_end_with_the_question(tokenizer, seq_len):
    prompts, n_gen = passkey_prompts(tokenizer, seq_len, n_samples=6, seed=1)
    assert len(prompts) == 6
    for p in prompts:
        key_len = len(tokenizer.encode(" " + p.key).ids)
        assert 1 <= key_len <= n_gen
        assert len(p.tokens) + n_gen == seq_len  # prompt plus answer: the whole window
        text = tokenizer.decode(p.tokens)
        assert text.endswith(QUESTION)
        assert text.count(NEEDLE.format(key=p.key)) == 1


def test_the_needle_sits_at_the_seeded_depth(tokenizer):
    seq_len = 1000
    prompts, _ = passkey_prompts(tokenizer, seq_len, n_samples=32, seed=7)
    longest_sentence = max(len(tokenizer.encode(" " + s).ids) for s in FILLER)
    question_len = len(tokenizer.encode(" " + QUESTION).ids)
    for p in prompts:
        needle = tokenizer.encode(" " + NEEDLE.format(key=p.key)).ids
        assert p.tokens[p.needle_start : p.needle_start + p.needle_len] == needle
        n_fill = len(p.tokens) - len(needle) - question_len
        assert p.depth == p.needle_start / n_fill
        assert abs(p.needle_start - p.target_depth * n_fill) <= longest_sentence
        before = tokenizer.decode(p.tokens[: p.needle_start])
        assert before == "" or before.endswith(tuple(FILLER))  # at a sentence boundary
    depths = sorted(p.target_depth for p in prompts)
    assert depths[0] < 0.2 and depths[-1] > 0.8  # spread over the window
    assert len({p.key for p in prompts}) == len(prompts)


def test_prompts_are_deterministic_in_the_seed(tokenizer):
    a, _ = passkey_prompts(tokenizer, 200, n_samples=4, seed=3)
    b, _ = passkey_prompts(tokenizer, 200, n_samples=4, seed=3)
    c, _ = passkey_prompts(tokenizer, 200, n_samples=4, seed=4)
    assert a == b
    assert [p.key for p in a] != [p.key for p in c]


def test_a_window_too_short_for_the_prompt_is_refused(tokenizer):
    with pytest.raises(ValueError, match="too short"):
        passkey_prompts(tokenizer, 20, n_samples=2)


class NeedleReader(nn.Module):
    """Answers from its input, causally: after the question (the last " The pass key is")
    position t predicts answer token t - (question end - 1), the answer being the digits
    that follow the needle's " The pass key is" (`shift` tokens off: a wrong answer)."""

    def __init__(self, tokenizer, shift: int = 0) -> None:  # noqa: ANN001
        super().__init__()
        self.tok, self.shift = tokenizer, shift
        self.marker = tokenizer.encode(" The pass key is").ids
        self.bias = nn.Parameter(torch.zeros(VOCAB))  # gives the probe a device to read

    def forward(self, tokens, position_ids, segment_ids):  # noqa: ANN001 - the model's call
        assert position_ids is None and segment_ids is None
        assert not self.training
        logits = self.bias.expand(*tokens.shape, VOCAB).clone()
        m = len(self.marker)
        for row, seq in enumerate(tokens.tolist()):
            starts = [i for i in range(len(seq)) if seq[i : i + m] == self.marker]
            key = self.tok.decode(seq[starts[0] + m :]).split(".")[0].strip()
            answer = self.tok.encode(" " + key).ids + [self.tok.token_to_id("<|eos|>")] * 8
            first = starts[-1] + m - 1  # the question's last token predicts the first digit
            for t in range(first, len(seq)):
                logits[row, t, answer[t - first + self.shift]] = 10.0
        return logits


@pytest.mark.parametrize("batch_size", [1, 3, 8])
def test_a_model_that_reads_the_needle_scores_one_and_a_shifted_one_zero(tokenizer, batch_size):
    for shift, expected in ((0, 1.0), (1, 0.0)):
        model = NeedleReader(tokenizer, shift).train()
        result = passkey_accuracy(model, tokenizer, 128, n_samples=7, batch_size=batch_size)
        assert result["accuracy"] == expected, (shift, result)
        assert result["n"] == 7 and result["seq_len"] == 128
        assert 0 <= result["mean_depth"] <= 1
        assert model.training  # mode restored


def tiny_model(seed: int = 0) -> Transformer:
    torch.manual_seed(seed)
    cfg = ModelConfig(**get_preset("tiny").model_dump(), vocab_size=VOCAB)
    return Transformer(cfg)


def test_an_untrained_tiny_model_runs_end_to_end_and_scores_zero(tokenizer):
    model = tiny_model().train()
    first = passkey_accuracy(model, tokenizer, 128, n_samples=4, seed=2, batch_size=2)
    again = passkey_accuracy(model, tokenizer, 128, n_samples=4, seed=2, batch_size=4)
    assert first == again  # deterministic, whatever the batching
    assert set(first) == {"accuracy", "n", "seq_len", "mean_depth"}
    assert first["accuracy"] == 0.0 and first["n"] == 4 and first["seq_len"] == 128
    assert model.training


@torch.no_grad()
def test_decoding_in_a_fixed_window_equals_growing_the_sequence(tokenizer):
    model = tiny_model(seed=1).eval()
    done = passkey_completions(model, tokenizer, 96, n_samples=3, seed=9, batch_size=2)
    _, n_gen = passkey_prompts(tokenizer, 96, n_samples=3, seed=9)
    for p, text in done:
        seq = torch.tensor([p.tokens])
        for _ in range(n_gen):  # the textbook loop: one more token per forward
            seq = torch.cat((seq, model(seq)[:, -1:].argmax(-1)), dim=1)
        assert text == tokenizer.decode(seq[0, len(p.tokens) :].tolist())


@pytest.mark.filterwarnings("ignore:.*")
def test_the_probe_runs_on_an_fsdp2_sharded_model(tokenizer, world_of_one):
    plain = passkey_completions(tiny_model(), tokenizer, 128, n_samples=3, seed=5, batch_size=2)
    sharded = tiny_model()
    shard_model(sharded, world_of_one.mesh, torch.float32)
    result = passkey_completions(sharded, tokenizer, 128, n_samples=3, seed=5, batch_size=2)
    assert result == plain  # same prompts, same greedy text
    assert all(text for _, text in result)
