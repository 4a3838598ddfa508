from pathlib import Path

import numpy as np
import pytest
import torch
from shard_fixtures import markov_docs, write_stage

from mixtures.shards import StageShards
from training.data import LoaderStateError, PackedLoader, pack_windows


def test_pack_windows_restarts_positions_at_document_starts():
    tokens = np.arange(10, dtype=np.uint32)
    doc_start = np.zeros(10, dtype=bool)
    doc_start[[0, 3, 7]] = True  # docs [0..2], [3..6], [7..] across two windows of 5
    b = pack_windows(tokens, doc_start, seq_len=4)
    assert b.inputs.tolist() == [[0, 1, 2, 3], [5, 6, 7, 8]]
    assert b.targets.tolist() == [[1, 2, 3, 4], [6, 7, 8, 9]]
    assert b.segment_ids.tolist() == [[0, 0, 0, 1], [0, 0, 1, 1]]
    assert b.position_ids.tolist() == [[0, 1, 2, 0], [0, 1, 0, 1]]


@pytest.fixture(scope="module")
def stage(tmp_path_factory) -> tuple[StageShards, list[list[int]]]:
    docs = markov_docs(60, seed=5, vocab=64)
    path = write_stage(tmp_path_factory.mktemp("s") / "s", docs, vocab=64, rows_per_shard=7)
    return StageShards.open(path), docs


def stream(loader: PackedLoader, steps: int) -> list[torch.Tensor]:
    out = []
    for _ in range(steps):
        b = loader.next_batch()
        out.append(torch.cat([b.inputs, b.targets[:, -1:]], dim=1))  # whole windows
    return out


def test_windows_cover_the_document_stream_in_order(stage):
    shards, docs = stage
    loader = PackedLoader(shards, seq_len=15, batch_size=2)
    flat = np.concatenate([np.array(d) for d in docs])
    got = torch.cat(stream(loader, 10)).flatten().numpy()
    assert np.array_equal(got, flat[: got.size])


def test_ranks_split_each_global_batch_like_one_big_rank(stage):
    shards, _ = stage
    single = stream(PackedLoader(shards, seq_len=15, batch_size=4), 6)
    ranks = [
        stream(PackedLoader(shards, seq_len=15, batch_size=2, rank=r, world_size=2), 6)
        for r in (0, 1)
    ]
    for step in range(6):
        assert torch.equal(single[step], torch.cat([ranks[0][step], ranks[1][step]]))


def test_resume_reproduces_the_exact_stream_across_epochs(stage):
    shards, docs = stage
    total = sum(len(d) for d in docs)
    steps = 2 * total // (2 * 16 * 2) + 3  # run past the end: epoch 1 reorders shards
    full = PackedLoader(shards, seq_len=15, batch_size=2, rank=1, world_size=2, seed=9)
    expected = stream(full, steps)
    first = PackedLoader(shards, seq_len=15, batch_size=2, rank=1, world_size=2, seed=9)
    head = stream(first, steps // 2)
    state = first.state_dict()
    resumed = PackedLoader(shards, seq_len=15, batch_size=2, rank=1, world_size=2, seed=9)
    resumed.load_state_dict(state)
    tail = stream(resumed, steps - steps // 2)
    assert all(torch.equal(a, b) for a, b in zip(expected, head + tail, strict=True))
    assert full.state_dict()["epoch"] >= 1
    assert full.state_dict()["shard_order"] != list(range(shards.num_shards))


def test_loader_state_must_fit(stage):
    shards, _ = stage
    state = PackedLoader(shards, seq_len=15, batch_size=2).state_dict()
    with pytest.raises(LoaderStateError, match="global batch"):
        PackedLoader(shards, seq_len=31, batch_size=2).load_state_dict(state)


def test_token_ids_beyond_the_model_vocab_are_rejected(stage):
    shards, _ = stage
    with pytest.raises(ValueError, match="vocab_size 10"):
        PackedLoader(shards, seq_len=15, batch_size=2, vocab_size=10).next_batch()


def test_missing_stage_is_a_clear_error(tmp_path: Path):
    from training.plan import load_plan
    from training.pretrain import open_stage_shards

    plan = load_plan(Path(__file__).parents[2] / "training" / "recipes" / "demo.yaml")
    with pytest.raises(ValueError, match="broad.*manifest"):
        open_stage_shards(plan, tmp_path, verify=False)
