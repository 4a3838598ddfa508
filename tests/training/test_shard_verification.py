"""Shard checksums verified on first read, in the background (issue 7, point 9).

`StageShards.open(..., verify="on_read")` hashes nothing up front; a shard is hashed when
a reader first asks for it (or the loader prefetches it) and its tokens are returned only
once its sha256 matches the manifest. Hashing is counted by the public
`hash_requests` / `hashes_completed` statistics, not observed through mocks.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from shard_fixtures import corrupt_token, markov_docs, write_stage

from mixtures.shards import ON_READ, ShardError, StageShards, file_sha256
from training.data import PackedLoader

DOMAINS = ["web", "code", "math"]


def make_stage(root: Path, n_docs: int = 40) -> Path:
    docs = markov_docs(n_docs, seed=3, vocab=64)
    domains = [DOMAINS[i % 3] for i in range(n_docs)]
    return write_stage(root / "s", docs, vocab=64, rows_per_shard=7, domains=domains)


def mismatch(path: Path, expected: str) -> str:
    """The error for a corrupted shard: its file, the actual and the expected sha256."""
    return rf"{path.name}: checksum mismatch: sha256 is {file_sha256(path)}, .* expects {expected}"


def test_open_on_read_hashes_nothing_and_a_bad_shard_fails_when_first_read(tmp_path):
    stage = make_stage(tmp_path)
    bad = corrupt_token(stage, 2)
    shards = StageShards.open(stage, verify=ON_READ)  # cheap checks pass: same size, footer
    assert shards.hash_requests == [] and shards.hashes_completed == 0
    shards.tokens(0)
    assert shards.hash_requests == [0] and shards.hashes_completed == 1
    expected = shards.manifest["shards"][2]["sha256"]
    with pytest.raises(ShardError, match=mismatch(bad, expected)):
        shards.rows(2)
    with pytest.raises(ShardError, match=mismatch(bad, expected)):  # and on every later read
        shards.tokens(2)
    assert shards.hashes_completed == 2  # each shard hashed once
    with pytest.raises(ShardError, match=mismatch(bad, expected)):
        StageShards.open(stage)  # verify=True still checks every shard up front


def test_up_front_and_unverified_modes_hash_as_before(tmp_path):
    stage = make_stage(tmp_path)
    upfront = StageShards.open(stage)
    assert upfront.hashes_completed == upfront.num_shards
    unverified = StageShards.open(stage, verify=False)
    for shards in (upfront, unverified):
        for i in range(shards.num_shards):
            shards.prefetch(i)
            shards.rows(i)
        assert shards.hash_requests == []
    assert upfront.hashes_completed == upfront.num_shards and unverified.hashes_completed == 0
    with pytest.raises(ValueError, match="verify must be"):
        StageShards.open(stage, verify="later")


def test_on_read_checks_the_domain_breakdown_too(tmp_path):
    stage = make_stage(tmp_path)
    path = stage / "manifest.json"
    manifest = json.loads(path.read_text())
    first, second = (manifest["shards"][i]["tokens_by_domain"] for i in (0, 1))
    first["web"], first["code"] = first["web"] - 1, first["code"] + 1  # totals still add up
    second["web"], second["code"] = second["web"] + 1, second["code"] - 1
    path.write_text(json.dumps(manifest))
    shards = StageShards.open(stage, verify=ON_READ)
    with pytest.raises(ShardError, match=r"shard-00000\.arrow: tokens_by_domain"):
        shards.tokens(0)


def test_rows_map_each_shards_domains_onto_the_stages_sorted_list(tmp_path):
    stage = make_stage(tmp_path)
    shards = StageShards.open(stage, verify=ON_READ)
    assert shards.domains == ["code", "math", "web"]
    orders = {
        tuple(shards.shard(i).column("domain").chunk(0).dictionary.to_pylist())
        for i in range(shards.num_shards)
    }
    assert len(orders) > 1  # shards encode domains in different orders: the mapping matters
    names = []
    for i in range(shards.num_shards):
        values, offsets, codes = shards.rows(i)
        assert codes.dtype == np.int64 and len(codes) == len(offsets) - 1
        names += [shards.domains[c] for c in codes]
    assert names == [DOMAINS[i % 3] for i in range(40)]


def test_iter_tables_verifies_each_shard_before_yielding_it(tmp_path):
    stage = make_stage(tmp_path)
    bad = corrupt_token(stage, 2)
    shards = StageShards.open(stage, verify=ON_READ)
    seen = []
    with pytest.raises(ShardError, match=mismatch(bad, shards.manifest["shards"][2]["sha256"])):
        for table in shards.iter_tables():
            seen.append(table.num_rows)
    assert seen == [7, 7]


def test_loader_verifies_each_shard_on_first_read_and_prefetches_the_next(tmp_path):
    shards = StageShards.open(make_stage(tmp_path), verify=ON_READ)
    loader = PackedLoader(shards, seq_len=15, batch_size=2)
    assert shards.hash_requests == []
    loader.next_batch()  # 32 tokens, all inside shard 0
    assert shards.hash_requests == [0, 1]  # shard 1 is hashing while shard 0 is trained on
    shards.wait_verified(1)
    assert shards.hashes_completed == 2
    while loader.state_dict()["epoch"] == 0:  # one pass, then into the reshuffled epoch 1
        loader.next_batch()
    n = shards.num_shards
    assert shards.hash_requests == list(range(n)) and shards.hashes_completed == n


def test_a_corrupted_shard_stops_every_rank_in_the_step_that_first_reads_it(tmp_path):
    stage = make_stage(tmp_path)
    bad = corrupt_token(stage, 2)
    # Each rank opens its own StageShards, as separate processes do.
    ranks = [
        PackedLoader(
            StageShards.open(stage, verify=ON_READ), seq_len=15, batch_size=2, rank=r, world_size=2
        )
        for r in (0, 1)
    ]
    entries = ranks[0].shards.manifest["shards"]
    first_step = (entries[0]["tokens"] + entries[1]["tokens"]) // 64  # 64 tokens per step
    assert first_step >= 2
    for _ in range(first_step):
        for loader in ranks:
            loader.next_batch()
    for loader in ranks:
        assert loader.shards.hash_requests == [0, 1, 2]  # shard 2 was prefetched, not yet read
        with pytest.raises(ShardError, match=mismatch(bad, entries[2]["sha256"])):
            loader.next_batch()
