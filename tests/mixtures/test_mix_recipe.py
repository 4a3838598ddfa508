"""Recipe validation: good recipes load, bad ones fail with the file and field named."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mixtures.recipe import RecipeError, load_recipe

RECIPES = Path(__file__).resolve().parents[2] / "mixtures" / "recipes"

GOOD = {
    "seed": 3,
    "tokenizer": {"vocab_size": 512, "sample_bytes": 1000},
    "stages": [{"name": "broad", "token_budget": 1000, "domain_shares": {"web": 0.6, "code": 0.4}}],
}


def _write(tmp_path, data) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


@pytest.mark.parametrize("name", ["demo.yaml", "xgen_small.yaml"])
def test_shipped_recipes_load(name):
    recipe = load_recipe(RECIPES / name)
    assert recipe.stages and all(s.token_budget > 0 for s in recipe.stages)


def test_defaults(tmp_path):
    stage = load_recipe(_write(tmp_path, GOOD)).stages[0]
    assert stage.repeat_cap == 4 and stage.cluster_size_weight == 0.5
    assert stage.min_quality_bucket is None and stage.quality_bucket_weights is None


def _stage(**kw) -> dict:
    return {**GOOD, "stages": [{**GOOD["stages"][0], **kw}]}


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (_stage(domain_shares={"web": 0.6, "code": 0.3}), r"stages\.0\.domain_shares.*sum to 0\.9"),
        (_stage(domain_shares={"web": 1.5, "code": -0.5}), r"domain_shares.*>= 0"),
        (_stage(domain_shares={}), "domain_shares is empty"),
        (_stage(token_budget=0), r"stages\.0\.token_budget"),
        (_stage(repeat_cap=0), r"stages\.0\.repeat_cap"),
        (_stage(name="../evil"), "stage name"),
        (_stage(name="tokenizer"), "'tokenizer' is reserved"),
        (_stage(name="plan.json"), "'plan.json' is reserved"),
        (_stage(typo_field=1), r"stages\.0\.typo_field.*[Ee]xtra"),
        (_stage(quality_bucket_weights={1: -1.0}), "quality_bucket_weights"),
        (_stage(min_doc_tokens=100, max_doc_tokens=10), "min_doc_tokens 100 > max_doc_tokens"),
        ({**GOOD, "stages": GOOD["stages"] * 2}, "unique.*broad"),
        ({**GOOD, "stages": []}, "stages"),
        ({**GOOD, "tokenizer": {"vocab_size": 10}}, r"tokenizer\.vocab_size"),
        ("stages: [unclosed", "not valid YAML at line 1, column 18"),
        ("seed: 1\nstages:\n  - name: a\n   token_budget: 5\n", "not valid YAML at line 4"),
        ("seed: 1\ndescription: a\x07b\n", "not valid YAML at line 2: special characters"),
        ("- just\n- a list\n", "must be a mapping"),
        ({**GOOD, "rows_per_shard": 5}, "rows_per_shard was replaced by shard_tokens"),
        (_stage(share_rule="temperature"), "share_rule temperature needs temperature"),
        (_stage(share_rule="unimax", domain_shares=None), "unimax needs unimax_max_epochs"),
        (_stage(temperature=2.0), r"share_rule explicit does not use \['temperature'\]"),
        (_stage(share_rule="bogus"), r"stages\.0\.share_rule"),
        (_stage(share_rule="temperature", temperature=0.0, domain_shares=None), "temperature"),
        (_stage(share_rule="temperature", temperature=1.0, domain_shares=None,
                domains=["web", "web"]), r"domains lists \['web'\] more than once"),
    ],
)
def test_bad_recipes_name_file_and_field(tmp_path, data, match):
    path = _write(tmp_path, data)
    with pytest.raises(RecipeError, match=match) as info:
        load_recipe(path)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_shares_within_tolerance_and_missing_file(tmp_path):
    ok = _stage(domain_shares={"web": 0.6 + 5e-7, "code": 0.4})
    assert load_recipe(_write(tmp_path, ok)).stages[0].domain_shares["web"] > 0.6
    with pytest.raises(RecipeError, match="not found"):
        load_recipe(tmp_path / "nope.yaml")
