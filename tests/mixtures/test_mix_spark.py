"""The Spark engine of `sharpen mix` writes the same bytes as the pyarrow engine, whatever
the order and files of the input, and fails on bad tables as clearly."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.dataset as ds
import pytest
import yaml
from mix_corpus_fixture import corpus_rows
from test_mix_materialize import RECIPE

from mixtures.curated_table import CuratedTableError
from mixtures.materialize import run_mix
from mixtures.submit import mix_argv


@pytest.fixture(scope="module")
def recipe_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("spark_recipe") / "recipe.yaml"
    path.write_text(yaml.safe_dump(RECIPE))
    return path


@pytest.fixture(scope="module")
def pyarrow_mix(curated_dir, recipe_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("pyarrow_mix") / "out"
    return out, run_mix(str(curated_dir), str(recipe_path), str(out), engine="pyarrow")


def _shards(out, stage) -> list[tuple[str, int]]:
    manifest = json.loads((out / stage / "manifest.json").read_text())
    return [(s["sha256"], s["rows"]) for s in manifest["shards"]]


def _manifest_sans_lineage(out, stage) -> dict:
    manifest = json.loads((out / stage / "manifest.json").read_text())
    return {k: v for k, v in manifest.items() if k != "lineage"}


def test_spark_engine_writes_the_pyarrow_engines_bytes(spark, pyarrow_mix, curated_dir,
                                                       recipe_path, tmp_path):
    out, summary = pyarrow_mix
    got = run_mix(str(curated_dir), str(recipe_path), str(tmp_path / "spark"), engine="spark")
    assert got == summary
    for stage in ("broad", "anneal"):
        assert _shards(tmp_path / "spark", stage) == _shards(out, stage)
        assert len(_shards(out, stage)) > 1
        assert _manifest_sans_lineage(tmp_path / "spark", stage) == _manifest_sans_lineage(
            out, stage)
    assert ((tmp_path / "spark" / "tokenizer" / "tokenizer.json").read_bytes()
            == (out / "tokenizer" / "tokenizer.json").read_bytes())


def test_spark_engine_ignores_row_order_and_file_layout(spark, pyarrow_mix, recipe_path,
                                                        tmp_path):
    """The same documents reversed and split into many small files (so Spark reads many
    partitions) give the same shards."""
    out, _ = pyarrow_mix
    table = pa.Table.from_pylist(corpus_rows()[::-1])
    ds.write_dataset(table, tmp_path / "many" / "curated", format="parquet",
                     max_rows_per_file=37, max_rows_per_group=37,
                     partitioning=ds.partitioning(pa.schema([("domain", pa.string())]),
                                                  flavor="hive"))
    (tmp_path / "many" / "stats.json").write_text(json.dumps({"kept_docs": table.num_rows}))
    assert len(list((tmp_path / "many").rglob("*.parquet"))) > 10
    run_mix(str(tmp_path / "many"), str(recipe_path), str(tmp_path / "o"), engine="spark")
    for stage in ("broad", "anneal"):
        assert _shards(tmp_path / "o", stage) == _shards(out, stage)


@pytest.mark.parametrize(
    ("rows", "match"),
    [
        ([{"id": "a", "domain": "web", "body": "x"}], r"lacks column\(s\) \['text'\]"),
        ([{"id": "a", "domain": "web", "text": "x"}, {"id": "a", "domain": "web", "text": "y"}],
         r"column 'id' has 1 repeated value\(s\), e.g. \['a'\]"),
        ([{"id": "a", "domain": "web", "text": "x"}, {"id": "b", "domain": "web", "text": None}],
         r"column 'text' has 1 null value\(s\)"),
    ],
)
def test_spark_engine_bad_tables_fail_clearly_and_write_nothing(spark, tmp_path, rows, match):
    pa_table = pa.Table.from_pylist(rows)
    ds.write_dataset(pa_table, tmp_path / "bad", format="parquet")
    web_only = tmp_path / "web.yaml"
    web_only.write_text(yaml.safe_dump(dict(RECIPE, stages=[
        {"name": "broad", "token_budget": 10, "domain_shares": {"web": 1.0}}])))
    with pytest.raises(CuratedTableError, match=match):
        run_mix(str(tmp_path / "bad"), str(web_only), str(tmp_path / "out"), engine="spark")
    assert not (tmp_path / "out").exists()


def test_submit_argv_is_sharpen_mix_on_spark():
    assert mix_argv(["--curated", "c", "--recipe", "r", "--output", "o"]) == [
        "mix", "--curated", "c", "--recipe", "r", "--output", "o", "--engine", "spark"]
    assert mix_argv(["-v", "--engine", "pyarrow"])[:2] == ["-v", "mix"]
    with pytest.raises(ValueError, match="spark-submit's --master"):
        mix_argv(["--master", "local[2]"])
