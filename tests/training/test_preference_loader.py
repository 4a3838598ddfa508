"""DPO batches: (chosen, rejected) rows of each pair, labels on reply tokens only, a stable
pair_index, rank/accumulation splits and exact resume (the bundled preference set)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from chat_fixtures import DATA, write_chat_mixture

from mixtures.shards import StageShards
from training.data import (
    LoaderStateError,
    PackedLoader,
    PreferenceBatch,
    PreferenceLoader,
    collate_pairs,
    iter_pairs,
)
from training.model import ModelConfig, Transformer
from training.model.presets import get_preset
from training.objectives import IGNORE_INDEX

PAD = 2


@pytest.fixture(scope="module")
def mixture(tmp_path_factory):
    root, tok = write_chat_mixture(tmp_path_factory.mktemp("pref"))
    return StageShards.open(root / "preferences"), StageShards.open(root / "sft"), tok


def replies(b: PreferenceBatch) -> list[list[int]]:
    return [row[row != IGNORE_INDEX].tolist() for row in b.labels]


def test_a_batch_holds_each_pairs_chosen_then_rejected_sequence(mixture):
    shards, _, tok = mixture
    b = PreferenceLoader(shards, batch_size=4, pad_id=PAD).next_batch()
    assert b.inputs.shape[0] == 8 and b.pair_index.tolist() == [0, 1, 2, 3]
    pairs = shards.pairs(0)
    records = {
        json.loads(line)["id"]: json.loads(line) for line in open(DATA / "preferences.jsonl")
    }
    ids = shards.shard(0).column("doc_id").to_pylist()
    for i in range(4):
        record = records[ids[i]]
        chosen, rejected = replies(b)[i], replies(b)[4 + i]
        assert tok.decode(chosen) == record["chosen"] and tok.decode(rejected) == record["rejected"]
        assert chosen[-1] == rejected[-1] == tok.token_to_id("<|end|>")
        prompt = pairs.prompt[0][pairs.prompt[1][i] : pairs.prompt[1][i + 1]].tolist()
        for row, reply in ((i, chosen), (4 + i, rejected)):
            n = len(prompt) + len(reply) - 1  # input positions of the sequence
            assert b.inputs[row, : len(prompt)].tolist() == prompt
            assert (b.inputs[row, n:] == PAD).all() and (b.segment_ids[row, n:] == 1).all()
            assert (b.segment_ids[row, :n] == 0).all()
            assert b.position_ids[row, :n].tolist() == list(range(n))
            assert (b.labels[row, : len(prompt) - 1] == IGNORE_INDEX).all()
    assert int((b.segment_ids == 1).sum()) > 0  # some row is padded
    chosen_half, rejected_half = b.split(torch.arange(8))
    assert chosen_half.tolist() == [0, 1, 2, 3] and rejected_half.tolist() == [4, 5, 6, 7]


def test_padding_does_not_change_a_sequences_log_probs_in_the_real_model(mixture):
    shards, _, tok = mixture
    spec = {**get_preset("tiny").model_dump(), "max_seq_len": 512}  # doc pairs run long
    cfg = ModelConfig(**spec, vocab_size=tok.get_vocab_size())
    torch.manual_seed(0)
    model = Transformer(cfg).eval()

    def reply_logps(b: PreferenceBatch) -> torch.Tensor:
        logits = model(b.inputs, b.position_ids, b.segment_ids)
        valid = b.labels != IGNORE_INDEX
        picked = logits.log_softmax(-1).gather(-1, b.labels.clamp(min=0).unsqueeze(-1))
        return (picked.squeeze(-1) * valid).sum(-1)

    together = next(iter_pairs(shards, 6, PAD))
    singles = [b for _, b in zip(range(6), iter_pairs(shards, 1, PAD), strict=False)]
    with torch.no_grad():
        batched = reply_logps(together)
        for k, alone in enumerate(singles):
            assert int((alone.segment_ids == 1).sum()) < int((together.segment_ids == 1).sum())
            assert torch.allclose(batched[[k, 6 + k]], reply_logps(alone), atol=1e-4), k


def test_iter_pairs_visits_every_pair_once_in_pair_index_order(mixture):
    shards, _, _ = mixture
    seen = torch.cat([b.pair_index for b in iter_pairs(shards, 64, PAD)]).tolist()
    assert seen == list(range(shards.total_rows)) and shards.num_shards > 1


def test_ranks_and_accumulation_split_the_pair_stream_like_one_rank(mixture):
    shards, _, _ = mixture
    one = PreferenceLoader(shards, batch_size=4, pad_id=PAD)
    ranks = [
        PreferenceLoader(shards, batch_size=2, pad_id=PAD, rank=r, world_size=2) for r in (0, 1)
    ]
    accum = PreferenceLoader(shards, batch_size=2, pad_id=PAD, grad_accum=2)
    for _ in range(5):
        big = one.next_batch().pair_index
        per_rank = [ld.next_batches()[0].pair_index for ld in ranks]
        micro = [b.pair_index for b in accum.next_batches()]
        assert torch.equal(big, torch.cat(per_rank)) and torch.equal(big, torch.cat(micro))
    assert one.pairs_consumed == ranks[0].pairs_consumed == 20
    assert one.tokens_consumed == ranks[1].tokens_consumed > 0


def test_resume_reproduces_the_pair_stream_across_epochs(mixture):
    shards, _, _ = mixture
    steps = shards.total_rows // 16 + 4  # past the end: epoch 1 reorders the shards

    full = PreferenceLoader(shards, batch_size=8, pad_id=PAD, grad_accum=2, seed=5)
    expected = [torch.cat([b.pair_index for b in full.next_batches()]) for _ in range(steps)]
    head = PreferenceLoader(shards, batch_size=8, pad_id=PAD, grad_accum=2, seed=5)
    for _ in range(steps // 2):
        head.next_batches()
    tail = PreferenceLoader(shards, batch_size=8, pad_id=PAD, grad_accum=2, seed=5)
    tail.load_state_dict(json.loads(json.dumps(head.state_dict())))
    got = [torch.cat([b.pair_index for b in tail.next_batches()]) for _ in range(steps // 2, steps)]
    assert all(torch.equal(a, b) for a, b in zip(expected[steps // 2 :], got, strict=True))
    assert full.state_dict()["epoch"] == 1
    with pytest.raises(LoaderStateError, match="global batch"):
        PreferenceLoader(shards, batch_size=4, pad_id=PAD).load_state_dict(full.state_dict())


def test_wrong_stage_kinds_and_overlong_pairs_are_clear_errors(mixture):
    shards, sft, tok = mixture
    with pytest.raises(ValueError, match="holds pairs, not a token stream"):
        PackedLoader(shards, seq_len=15, batch_size=2)
    with pytest.raises(ValueError, match="sft stage has no preference pairs"):
        PreferenceLoader(sft, batch_size=2, pad_id=PAD)
    with pytest.raises(
        ValueError, match=r"preference pair [01] needs \d+ input positions.*--max-tokens 9"
    ):
        PreferenceLoader(shards, batch_size=2, pad_id=PAD, max_len=8).next_batch()
    with pytest.raises(ValueError, match="vocab_size 10"):
        PreferenceLoader(shards, batch_size=2, pad_id=PAD, vocab_size=10).next_batch()


def test_collate_pairs_labels_fall_on_the_replies():
    p, c, r = np.array([10, 11, 12]), np.array([20, 21]), np.array([30])
    b = collate_pairs([(p, c, r, 7)], pad_id=0)
    assert b.inputs.tolist() == [[10, 11, 12, 20], [10, 11, 12, 0]]
    assert b.labels.tolist() == [[-100, -100, 20, 21], [-100, -100, 30, -100]]
    assert b.segment_ids.tolist() == [[0, 0, 0, 0], [0, 0, 0, 1]]
    assert b.position_ids.tolist() == [[0, 1, 2, 3], [0, 1, 2, 0]]
    assert b.pair_index.tolist() == [7] and b.n_pairs == 1
