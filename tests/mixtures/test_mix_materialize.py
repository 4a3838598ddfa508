"""run_mix end to end on a real curated fixture: shards, plan, determinism, lineage, errors."""

from __future__ import annotations

import argparse
import json
from collections import Counter

import pyarrow as pa
import pyarrow.dataset as ds
import pytest
import yaml
from mix_corpus_fixture import corpus_rows, write_curated

from mixtures import cli
from mixtures.materialize import CuratedTableError, run_mix
from mixtures.shards import StageShards
from mixtures.tokenizer import load_tokenizer

RECIPE = {
    "seed": 11,
    "shard_tokens": 20_000,
    "tokenizer": {"vocab_size": 512, "sample_bytes": 300_000},
    "stages": [
        {
            "name": "broad",
            "token_budget": 250_000,
            "domain_shares": {
                "web": 0.4,
                "code": 0.3,
                "reference": 0.15,
                "math": 0.1,
                "books": 0.05,
            },
            "quality_bucket_weights": {0: 0.5, 3: 1.5},
            "max_doc_tokens": 1024,
        },
        {
            "name": "anneal",
            "token_budget": 120_000,
            "domain_shares": {"code": 0.4, "math": 0.4, "web": 0.2},
            "min_quality_bucket": 1,
            "repeat_cap": 2,
        },
    ],
}


@pytest.fixture(scope="module")
def recipe_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("recipe") / "recipe.yaml"
    path.write_text(yaml.safe_dump(RECIPE))
    return path


@pytest.fixture(scope="module")
def first_run(curated_dir, recipe_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("mix") / "out"
    return out, run_mix(str(curated_dir), str(recipe_path), str(out))


def _shas(out, stage):
    return [s["sha256"] for s in json.loads((out / stage / "manifest.json").read_text())["shards"]]


def test_stages_match_plan_and_corpus(first_run, curated_dir):
    out, summary = first_run
    assert json.loads((out / "plan.json").read_text()) == summary
    tok = load_tokenizer(out / "tokenizer" / "tokenizer.json")
    eos = tok.token_to_id("<|eos|>")
    texts = {r["id"]: r["text"] for r in corpus_rows()}
    for spec in RECIPE["stages"]:
        name, report = spec["name"], summary["stages"][spec["name"]]["report"]
        shards = StageShards.open(out / name)
        m = shards.manifest
        assert m["stage"] == name and m["seed"] == 11 and m["recipe"] == summary["recipe"]
        assert m["lineage"]["curated_stats"] == {"kept_docs": len(texts)}
        assert m["tokenizer"]["path"] == "../tokenizer/tokenizer.json"
        assert (out / name / m["tokenizer"]["path"]).is_file()
        assert shards.total_tokens == report["planned_tokens"]
        assert m["tokens_by_domain"] == {
            d: r["planned"] for d, r in report["domains"].items() if r["planned"]
        }
        for d, r in report["domains"].items():  # every goal within 0.5% of the budget
            assert abs(r["planned"] - r["goal"]) <= 0.005 * spec["token_budget"], (name, d, r)
        if not report["unfilled"]:
            assert abs(report["planned_tokens"] - spec["token_budget"]) <= (
                0.005 * spec["token_budget"])
        table = pa.concat_tables(shards.shard(i) for i in range(shards.num_shards))
        copies = Counter(table.column("doc_id").to_pylist())
        assert max(copies.values()) <= spec.get("repeat_cap", 4)
        assert set(table.column("domain").cast(pa.string()).to_pylist()) <= set(
            spec["domain_shares"]
        )
        for row in table.slice(0, 40).to_pylist():
            ids = row["tokens"]
            assert ids[-1] == eos
            text = tok.decode(ids[:-1])
            full = texts[row["doc_id"]]
            assert text == full if len(ids) < 1024 else full.startswith(text[:-1] if text else "")
        domains = table.column("domain").cast(pa.string()).to_pylist()
        assert domains != sorted(domains)  # globally shuffled, not grouped by domain
    anneal = summary["stages"]["anneal"]["report"]
    assert anneal["domains"]["math"]["saturated"] and anneal["domains"]["math"]["shortfall"] > 0
    assert anneal["excluded_domains"].keys() == {"books", "reference"}


def test_same_inputs_give_identical_shards(first_run, curated_dir, recipe_path, tmp_path):
    out, summary = first_run
    # The curated/ table itself (not the curate output dir) is accepted too.
    again = run_mix(str(curated_dir / "curated"), str(recipe_path), str(tmp_path / "again"))
    for stage in ("broad", "anneal"):
        assert _shas(out, stage) == _shas(tmp_path / "again", stage)
    assert again["stages"] == summary["stages"]
    other = run_mix(
        str(curated_dir),
        str(recipe_path),
        str(tmp_path / "other"),
        seed=12,
        tokenizer_path=str(out / "tokenizer" / "tokenizer.json"),
    )
    assert other["tokenizer"]["sha256"] == summary["tokenizer"]["sha256"]
    assert _shas(out, "broad") != _shas(tmp_path / "other", "broad")


def test_missing_optional_columns_default(tmp_path, recipe_path):
    rows = [
        {k: v for k, v in r.items() if k not in ("quality_bucket", "cluster_size")}
        for r in corpus_rows(max_chars=1500)
    ]
    write_curated(tmp_path / "cur", rows)
    recipe = dict(
        RECIPE, stages=[dict(RECIPE["stages"][0], token_budget=60_000, quality_bucket_weights=None)]
    )
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    summary = run_mix(str(tmp_path / "cur"), str(tmp_path / "r.yaml"), str(tmp_path / "out"))
    table = StageShards.open(tmp_path / "out" / "broad").shard(0)
    assert set(table.column("quality_bucket").to_pylist()) == {0}
    assert set(table.column("cluster_size").to_pylist()) == {1}
    assert summary["stages"]["broad"]["tokens_by_quality_bucket"].keys() == {"0"}


def test_bad_curated_tables(tmp_path, recipe_path):
    with pytest.raises(CuratedTableError, match="not found"):
        run_mix(str(tmp_path / "nope"), str(recipe_path), str(tmp_path / "o"))
    table = pa.table({"id": ["a"], "body": ["x"], "domain": ["web"]})
    ds.write_dataset(table, tmp_path / "notext", format="parquet")
    with pytest.raises(CuratedTableError, match=r"notext.*lacks column.*text"):
        run_mix(str(tmp_path / "notext"), str(recipe_path), str(tmp_path / "o"))


def test_cli_mix_prints_per_stage_table(curated_dir, recipe_path, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        [
            "mix",
            "--curated",
            str(curated_dir),
            "--recipe",
            str(recipe_path),
            "--output",
            str(tmp_path / "o"),
            "--seed",
            "3",
        ]
    )
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert "stage broad" in printed and "stage anneal" in printed
    assert "shortfall" in printed and "math" in printed
    plan = json.loads((tmp_path / "o" / "plan.json").read_text())
    assert plan["seed"] == 3
    broad = plan["stages"]["broad"]
    assert sum(broad["tokens_by_domain"].values()) == broad["tokens"] > 0


def test_recipe_may_only_weight_buckets_the_curated_table_has(curated_dir, tmp_path):
    """The fixture's table has buckets 0..3 and a stats.json without a bucket count: the
    range is the table's. With curation's stats (5 buckets), bucket 4 becomes valid."""
    bad = dict(RECIPE, stages=[dict(RECIPE["stages"][0], quality_bucket_weights={0: 1.0, 4: 2.0})])
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    with pytest.raises(ValueError, match=r"uses quality bucket\(s\) \[4\].*has buckets 0\.\.3"):
        run_mix(str(curated_dir), str(path), str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()
    below = dict(RECIPE, stages=[dict(RECIPE["stages"][1], min_quality_bucket=-1)])
    path.write_text(yaml.safe_dump(below))
    with pytest.raises(ValueError, match=r"\[-1\]"):
        run_mix(str(curated_dir), str(path), str(tmp_path / "out"))
    five = tmp_path / "five"
    write_curated(five, corpus_rows())
    stats = json.loads((five / "stats.json").read_text())
    (five / "stats.json").write_text(json.dumps({**stats, "quality": {"buckets": 5}}))
    path.write_text(yaml.safe_dump(bad))
    summary = run_mix(str(five), str(path), str(tmp_path / "out5"))
    assert summary["stages"]["broad"]["tokens"] > 0


def _recipe_file(tmp_path, **stage_edits) -> str:
    data = dict(RECIPE, stages=[dict(RECIPE["stages"][0], **stage_edits)])
    path = tmp_path / "edited.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


@pytest.mark.parametrize(
    ("edits", "match"),
    [
        ({"domain_shares": {"web": 0.5, "poetry": 0.5}},
         r"stages\.0\.domain_shares: stage 'broad' names domain\(s\) \['poetry'\]"),
        ({"min_quality_bucket": {"web": 7}},
         r"quality bucket\(s\) \[7\] \(stages\.0\.min_quality_bucket\.web\)"),
        ({"token_budget": 50_000_000},
         r"stages\.0\.token_budget: stage 'broad' cannot plan .* within repeat_cap 4"),
    ],
)
def test_bad_recipe_for_this_table_names_file_and_field_and_writes_nothing(
    curated_dir, tmp_path, edits, match
):
    recipe = _recipe_file(tmp_path, **edits)
    with pytest.raises(ValueError, match=match) as info:
        run_mix(str(curated_dir), recipe, str(tmp_path / "out"))
    assert recipe in str(info.value)
    assert not (tmp_path / "out").exists()


def test_budget_shortfall_allowed_writes_what_fits(curated_dir, tmp_path):
    recipe = _recipe_file(tmp_path, token_budget=50_000_000, allow_shortfall=True,
                          max_doc_tokens=256)
    summary = run_mix(str(curated_dir), recipe, str(tmp_path / "out"))
    report = summary["stages"]["broad"]["report"]
    assert report["unfilled"] == 50_000_000 - report["planned_tokens"] > 0
    assert set(report["repeat_histogram"]) == {"4"}  # every document at repeat_cap


def test_output_of_another_recipe_is_refused_untouched(first_run, curated_dir, tmp_path):
    out, _ = first_run
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    other = _recipe_file(tmp_path, token_budget=200_000)
    with pytest.raises(ValueError, match=r"plan\.json: .* holds the output of another recipe"):
        run_mix(str(curated_dir), other, str(out))
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before
    again = run_mix(str(curated_dir), other, str(tmp_path / "copy"))
    assert again["stages"]["broad"]["tokens"] > 0


def test_plan_and_shards_do_not_depend_on_row_order(first_run, recipe_path, tmp_path):
    """The same documents written in another order and other files give the same bytes."""
    out, summary = first_run
    rows = corpus_rows()[::-1]
    write_curated(tmp_path / "reversed", rows)
    again = run_mix(str(tmp_path / "reversed"), str(recipe_path), str(tmp_path / "o"))
    for stage in ("broad", "anneal"):
        assert _shas(out, stage) == _shas(tmp_path / "o", stage)
    assert again["stages"] == summary["stages"]
