"""`sharpen mix explain`: the plan on estimated token counts, printed and as DataFrames,
with nothing written; the estimate is close to what a real mix plans."""

from __future__ import annotations

import argparse

import pytest
import yaml
from test_mix_materialize import RECIPE

from mixtures import cli
from mixtures.explain import explain_mix
from mixtures.materialize import run_mix
from mixtures.recipe import parse_recipe


@pytest.fixture(scope="module")
def recipe_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("explain") / "recipe.yaml"
    path.write_text(yaml.safe_dump(RECIPE))
    return path


def test_explain_estimates_what_the_mix_plans(curated_dir, recipe_path, tmp_path):
    files_before = sorted(p for p in curated_dir.rglob("*"))
    explained = explain_mix(recipe_path, curated_dir)
    assert sorted(p for p in curated_dir.rglob("*")) == files_before
    real = run_mix(str(curated_dir), str(recipe_path), str(tmp_path / "mix"))
    for stage, report in explained.reports.items():
        actual = real["stages"][stage]["report"]
        assert report.keys() == actual.keys()
        for d, row in report["domains"].items():
            # estimated supply within 15% of the real token count per domain
            assert row["unique_tokens"] == pytest.approx(
                actual["domains"][d]["unique_tokens"], rel=0.15), (stage, d)
            assert row["share"] == actual["domains"][d]["share"]
    assert 0.2 < explained.tokens_per_char["*"] < 1.0
    frames = explained.frames()
    assert set(frames) == {"tokens", "epochs", "repeats", "top_clusters", "shortfalls"}
    tokens = frames["tokens"]
    broad = explained.reports["broad"]
    assert tokens[tokens["stage"] == "broad"]["tokens"].sum() == broad["planned_tokens"]
    repeats = frames["repeats"]
    assert set(repeats["stage"]) == {"broad", "anneal"}
    shortfalls = frames["shortfalls"]
    assert ("anneal", "math") in set(zip(shortfalls["stage"], shortfalls["domain"], strict=True))


def test_explain_replans_an_edited_recipe(curated_dir):
    data = dict(RECIPE)
    data["stages"] = [dict(RECIPE["stages"][0], share_rule="temperature", temperature=2.0,
                           domain_shares=None)]
    explained = explain_mix(parse_recipe(data), curated_dir)
    report = explained.reports["broad"]
    assert report["share_rule"] == "temperature"
    assert sum(r["share"] for r in report["domains"].values()) == pytest.approx(1.0)


def test_cli_explain_prints_every_section_and_writes_nothing(curated_dir, recipe_path, tmp_path,
                                                            capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["mix", "explain", "--recipe", str(recipe_path), "--curated",
                              str(curated_dir)])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert out.startswith("ESTIMATE: token counts are characters x tokens per character")
    for text in ("stage broad", "stage anneal", "epochs", "q0", "documents by copies",
                 "most amplified clusters", "SHORTFALL: math"):
        assert text in out, text
    assert list(tmp_path.iterdir()) == []
