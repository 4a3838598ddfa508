"""Stage shard format: round trip, splitting, and every way a stage can be broken."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from mixtures.shards import SCHEMA, ShardError, StageShards, StageWriter

TOKENIZER = {
    "path": "tok/tokenizer.json",
    "sha256": "0" * 64,
    "vocab_size": 1000,
    "bos_id": 1,
    "eos_id": 2,
}


def _rows(n: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 40, size=n)
    tokens = [rng.integers(3, 1000, size=k).astype(np.uint32).tolist() for k in lengths]
    return {
        "tokens": tokens,
        "doc_id": [f"doc-{i}" for i in range(n)],
        "domain": [["web", "code", "math"][i % 3] for i in range(n)],
        "source": [f"src{i % 2}" for i in range(n)],
        "quality_bucket": [i % 4 for i in range(n)],
        "cluster_size": [1 + i % 5 for i in range(n)],
        "copy": [i % 2 for i in range(n)],
    }


def _write(stage_dir, rows: dict, rows_per_shard: int = 7, **kw) -> dict:
    with StageWriter(
        stage_dir,
        stage="broad",
        tokenizer=TOKENIZER,
        recipe={"a": 1},
        seed=3,
        lineage={"curated_path": "x", "curated_stats": None},
        rows_per_shard=rows_per_shard,
        **kw,
    ) as w:
        half = len(rows["doc_id"]) // 2
        w.write({k: v[:half] for k, v in rows.items()})
        w.write(pa.table({k: v[half:] for k, v in rows.items()}))
    return w.close()


def test_round_trip_tokens_and_metadata(tmp_path):
    rows = _rows(50)
    manifest = _write(tmp_path / "broad", rows)
    shards = StageShards.open(tmp_path / "broad")
    assert shards.manifest == manifest == json.loads((tmp_path / "broad/manifest.json").read_text())
    assert shards.num_shards == 8  # 50 rows / 7 per shard
    total = sum(len(t) for t in rows["tokens"])
    assert shards.total_tokens == total == manifest["total_tokens"]
    assert sum(manifest["tokens_by_domain"].values()) == total
    assert sum(manifest["tokens_by_quality_bucket"].values()) == total
    web = sum(len(t) for t, d in zip(rows["tokens"], rows["domain"], strict=True) if d == "web")
    assert manifest["tokens_by_domain"]["web"] == web

    tables = [shards.shard(i) for i in range(shards.num_shards)]
    assert all(t.schema.equals(SCHEMA) for t in tables)
    back = pa.concat_tables(
        [t.cast(t.schema.set(2, pa.field("domain", pa.string()))) for t in tables]
    ).to_pydict()
    for key, col in rows.items():
        assert back[key] == col, key

    flat = np.concatenate([np.asarray(t, dtype=np.uint32) for t in rows["tokens"]])
    got_values, pos = [], 0
    for i in range(shards.num_shards):
        values, offsets = shards.tokens(i)
        assert values.dtype == np.uint32 and offsets.dtype == np.int64
        assert not values.flags.owndata  # a view of the memory-mapped shard, not a copy
        assert offsets[0] == 0 and offsets[-1] == len(values)
        for j in range(len(offsets) - 1):
            assert values[offsets[j] : offsets[j + 1]].tolist() == rows["tokens"][pos]
            pos += 1
        got_values.append(values)
    np.testing.assert_array_equal(np.concatenate(got_values), flat)


def test_token_cap_splits_shards_and_writes_are_deterministic(tmp_path):
    rows = _rows(30, seed=1)
    m1 = _write(tmp_path / "a", rows, rows_per_shard=1000, max_shard_tokens=100)
    m2 = _write(tmp_path / "b", rows, rows_per_shard=1000, max_shard_tokens=100)
    assert all(s["tokens"] <= 100 for s in m1["shards"]) and len(m1["shards"]) > 3
    assert [s["sha256"] for s in m1["shards"]] == [s["sha256"] for s in m2["shards"]]
    assert StageShards.open(tmp_path / "a").total_rows == 30


def test_corrupted_shard_is_a_checksum_error(tmp_path):
    _write(tmp_path / "s", _rows(20))
    path = tmp_path / "s" / "shard-00001.arrow"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ShardError, match=r"shard-00001\.arrow.*checksum"):
        StageShards.open(tmp_path / "s")


def test_truncated_shard_is_an_error_with_and_without_verify(tmp_path):
    _write(tmp_path / "s", _rows(20))
    path = tmp_path / "s" / "shard-00000.arrow"
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(ShardError, match=r"shard-00000\.arrow.*checksum"):
        StageShards.open(tmp_path / "s")
    # Without hashing, the Arrow footer still fails to read when the stage is opened.
    with pytest.raises(ShardError, match=r"shard-00000\.arrow.*truncated"):
        StageShards.open(tmp_path / "s", verify=False)


def test_missing_manifest_missing_shard_and_wrong_version(tmp_path):
    with pytest.raises(ShardError, match="missing manifest"):
        StageShards.open(tmp_path)
    _write(tmp_path / "s", _rows(20))
    (tmp_path / "s" / "shard-00002.arrow").unlink()
    with pytest.raises(ShardError, match=r"shard-00002\.arrow.*missing"):
        StageShards.open(tmp_path / "s")
    manifest_path = tmp_path / "s" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["format_version"] = 99
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(ShardError, match="format_version 99"):
        StageShards.open(tmp_path / "s")


def test_bad_writes_are_rejected_and_failed_stage_has_no_manifest(tmp_path):
    rows = _rows(5)
    with pytest.raises(ValueError, match="missing column"):
        with StageWriter(
            tmp_path / "s", stage="x", tokenizer=TOKENIZER, recipe={}, seed=0, lineage={}
        ) as w:
            w.write({k: v for k, v in rows.items() if k != "copy"})
    assert not (tmp_path / "s" / "manifest.json").exists()
    bad = dict(rows, tokens=[[5000]] * 5)
    with pytest.raises(ValueError, match="vocab_size"):
        StageWriter(
            tmp_path / "t", stage="x", tokenizer=TOKENIZER, recipe={}, seed=0, lineage={}
        ).write(bad)
    with pytest.raises(ValueError, match="tokenizer dict lacks"):
        StageWriter(tmp_path / "u", stage="x", tokenizer={}, recipe={}, seed=0, lineage={})


def _edit_manifest(stage_dir, edit) -> None:
    path = stage_dir / "manifest.json"
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest))


def test_missing_shard_is_caught_without_verify(tmp_path):
    _write(tmp_path / "s", _rows(20))
    (tmp_path / "s" / "shard-00001.arrow").unlink()
    with pytest.raises(ShardError, match=r"shard-00001\.arrow: shard listed in .*manifest"):
        StageShards.open(tmp_path / "s", verify=False)


def _swap_two(counts: dict) -> None:
    a, b = sorted(counts)[:2]
    counts[a], counts[b] = counts[b] + 1, counts[a] - 1


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda m: m.update(total_tokens=m["total_tokens"] + 1), "'total_tokens' is"),
        (lambda m: m.update(total_rows=m["total_rows"] - 1), "'total_rows' is"),
        (lambda m: _swap_two(m["tokens_by_domain"]), "'tokens_by_domain' does not match"),
        (
            lambda m: _swap_two(m["tokens_by_quality_bucket"]),
            "'tokens_by_quality_bucket' does not match",
        ),
        (lambda m: m["tokens_by_domain"].pop("web"), "'tokens_by_domain' does not match"),
        (
            lambda m: m["shards"][0]["tokens_by_domain"].update(web=10**6),
            r"shards\[0\]\.tokens_by_domain sums to",
        ),
        (lambda m: m["shards"][1].update(rows="7"), r"shards\[1\]\.rows must be"),
        (lambda m: m.pop("total_tokens"), "lacks 'total_tokens'"),
    ],
)
def test_manifest_totals_must_follow_from_shard_entries(tmp_path, edit, match):
    _write(tmp_path / "s", _rows(30))
    _edit_manifest(tmp_path / "s", edit)
    with pytest.raises(ShardError, match=rf"manifest\.json: .*{match}"):
        StageShards.open(tmp_path / "s", verify=False)


def test_breakdown_moved_between_shards_is_caught_by_verify(tmp_path):
    # Consistent JSON (stage totals still sum up) that disagrees with a shard's data.
    _write(tmp_path / "s", _rows(30))

    def move(m):
        first, second = m["shards"][0]["tokens_by_domain"], m["shards"][1]["tokens_by_domain"]
        a, b = sorted(set(first) & set(second))[:2]
        first[a], first[b] = first[a] - 1, first[b] + 1
        second[a], second[b] = second[a] + 1, second[b] - 1

    _edit_manifest(tmp_path / "s", move)
    StageShards.open(tmp_path / "s", verify=False)  # cheap checks cannot see it
    with pytest.raises(ShardError, match=r"shard-00000\.arrow: tokens_by_domain"):
        StageShards.open(tmp_path / "s")


def test_format_version_1_is_still_read(tmp_path):
    manifest = _write(tmp_path / "s", _rows(30))
    assert manifest["format_version"] == 2

    def to_v1(m):
        m["format_version"] = 1
        for s in m["shards"]:
            del s["tokens_by_domain"], s["tokens_by_quality_bucket"]

    _edit_manifest(tmp_path / "s", to_v1)
    assert StageShards.open(tmp_path / "s").total_tokens == manifest["total_tokens"]
    _edit_manifest(tmp_path / "s", lambda m: m["tokens_by_domain"].update(web=0))
    with pytest.raises(ShardError, match="'tokens_by_domain' sums to"):
        StageShards.open(tmp_path / "s", verify=False)


def test_failed_rewrite_leaves_no_stage_that_looks_complete(tmp_path):
    _write(tmp_path / "s", _rows(20))
    with pytest.raises(ValueError, match="null"):
        with StageWriter(
            tmp_path / "s", stage="s", tokenizer=TOKENIZER, recipe={}, seed=0, lineage={}
        ) as w:
            w.write(_rows(20))
            w.write(dict(_rows(3), doc_id=[None, "a", "b"]))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]  # no .s.partial left
    with pytest.raises(ShardError, match="missing manifest"):
        StageShards.open(tmp_path / "s")
    _write(tmp_path / "s", _rows(20, seed=4))  # a rerun replaces it whole
    assert StageShards.open(tmp_path / "s").total_rows == 20


def test_writer_refuses_to_replace_a_directory_that_is_not_a_stage(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me")
    with pytest.raises(ShardError, match=r"notes: holds \['todo.txt'\]"):
        _write(tmp_path / "notes", _rows(5))
    assert (tmp_path / "notes" / "todo.txt").read_text() == "keep me"


def test_tokenizer_file_must_match_the_manifest(tmp_path):
    tok = tmp_path / "tok" / "tokenizer.json"
    tok.parent.mkdir()
    tok.write_text("{}")
    _write(tmp_path / "s", _rows(5))
    _edit_manifest(tmp_path / "s", lambda m: m["tokenizer"].update(path="../tok/tokenizer.json"))
    with pytest.raises(ShardError, match=r"tokenizer\.json: sha256 differs"):
        StageShards.open(tmp_path / "s", verify=False)
