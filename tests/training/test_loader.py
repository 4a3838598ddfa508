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
    assert b.domain_ids is None and "domain_ids" not in dict(b.items())


def test_pack_windows_matches_a_per_row_reference_on_random_streams():
    rng = np.random.default_rng(1)
    for seq_len, rows in ((1, 5), (7, 3), (64, 4)):
        n = rows * (seq_len + 1)
        doc_start = rng.random(n) < 0.15
        domains = np.cumsum(doc_start) % 4
        b = pack_windows(rng.integers(0, 99, n), doc_start, seq_len, domains)
        for r in range(rows):
            segment, position = [], []
            for t in range(seq_len):
                opens = t == 0 or doc_start[r * (seq_len + 1) + t]
                segment.append(0 if t == 0 else segment[-1] + opens)
                position.append(0 if opens else position[-1] + 1)
            assert b.segment_ids[r].tolist() == segment
            assert b.position_ids[r].tolist() == position
            window = slice(r * (seq_len + 1) + 1, (r + 1) * (seq_len + 1))
            assert b.domain_ids[r].tolist() == domains[window].tolist()


def test_pack_windows_gives_each_position_its_labels_domain():
    tokens = np.arange(10, dtype=np.uint32)
    doc_start = np.zeros(10, dtype=bool)
    doc_start[[0, 3, 7]] = True
    domains = np.array([5, 5, 5, 6, 6, 6, 6, 7, 7, 7])
    b = pack_windows(tokens, doc_start, seq_len=4, domains=domains)
    # Input 2 -> label 3 crosses into doc [3..6]: the position counts for the label's domain.
    assert b.domain_ids.tolist() == [[5, 5, 6, 6], [6, 7, 7, 7]]
    assert b.domain_ids.dtype == torch.int64 and b.domain_ids.is_contiguous()
    assert torch.equal(b.to(torch.device("cpu")).domain_ids, b.domain_ids)


DOMAINS = ["web", "code", "math"]  # sorted: code=0, math=1, web=2; shards see them in other orders


def doc_domains(n: int) -> list[str]:
    return [DOMAINS[i % 3] for i in range(n)]  # neighbouring documents never share a domain


@pytest.fixture(scope="module")
def stage(tmp_path_factory) -> tuple[StageShards, list[list[int]]]:
    docs = markov_docs(60, seed=5, vocab=64)
    path = write_stage(
        tmp_path_factory.mktemp("s") / "s",
        docs,
        vocab=64,
        rows_per_shard=7,
        domains=doc_domains(len(docs)),
    )
    return StageShards.open(path), docs


def domain_stream(docs: list[list[int]]) -> np.ndarray:
    """Each stream token's document's domain index (into the sorted domain list)."""
    index = {d: i for i, d in enumerate(sorted(DOMAINS))}
    names = doc_domains(len(docs))
    return np.concatenate([np.full(len(d), index[n]) for d, n in zip(docs, names, strict=True)])


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


def test_domain_ids_follow_each_labels_document_across_boundaries_and_shards(stage):
    shards, docs = stage
    loader = PackedLoader(shards, seq_len=15, batch_size=2)
    assert loader.domains == ["code", "math", "web"]
    flat, dom = np.concatenate([np.array(d) for d in docs]), domain_stream(docs)
    boundaries, at = 0, 0
    for _ in range(40):  # 40 * 32 tokens: past several shards of 7 documents
        b = loader.next_batch()
        for w in range(2):
            window = slice(at + 1, at + 16)  # the labels' stream positions
            assert b.labels[w].tolist() == flat[window].tolist()
            assert b.domain_ids[w].tolist() == dom[window].tolist()
            starts = (b.position_ids[w, 1:] == 0).nonzero().flatten()  # inputs opening a doc
            for t in starts.tolist():  # label t is that doc's first token, input t the last of
                assert b.domain_ids[w, t] != dom[at + t]  # the previous one (another domain)
                boundaries += 1
            at += 16
    assert boundaries > 10 and loader.state_dict()["shard_pos"] >= 3


def test_ranks_and_micro_batches_see_the_same_domain_ids(stage):
    shards, _ = stage
    ranks = [PackedLoader(shards, seq_len=15, batch_size=2, rank=r, world_size=2) for r in (0, 1)]
    accum = PackedLoader(shards, seq_len=15, batch_size=2, grad_accum=2)
    for _ in range(20):
        per_rank = [ld.next_batches()[0] for ld in ranks]
        micro = accum.next_batches()
        for r in (0, 1):
            assert torch.equal(per_rank[r].domain_ids, micro[r].domain_ids)
            assert torch.equal(per_rank[r].inputs, micro[r].inputs)


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


def test_a_state_saved_before_domain_ids_still_loads_and_resumes_them(stage):
    shards, docs = stage
    ahead = PackedLoader(shards, seq_len=15, batch_size=2, seed=4)
    stream(ahead, 5)
    ends = np.cumsum([len(d) for d in docs])
    doc = int(np.searchsorted(ends, 5 * 32, side="right"))  # the document at token 160
    # The state as the loader wrote it before domain ids existed (same keys, plain values).
    old = {
        "epoch": 0,
        "shard_order": list(range(shards.num_shards)),
        "shard_pos": doc // 7,
        "row": doc % 7,
        "token_offset": 5 * 32 - (int(ends[doc - 1]) if doc else 0),
        "rng": np.random.Generator(np.random.PCG64(4)).bit_generator.state,
        "tokens_consumed": 5 * 32,
        "num_shards": shards.num_shards,
        "global_batch_tokens": 32,
    }
    assert ahead.state_dict() == old
    resumed = PackedLoader(shards, seq_len=15, batch_size=2, seed=4)
    resumed.load_state_dict(old)
    b = resumed.next_batch()
    assert b.domain_ids[0].tolist() == domain_stream(docs)[5 * 32 + 1 : 5 * 32 + 16].tolist()


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
