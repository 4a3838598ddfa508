"""Runner: actions, evaluation order, domains, rule names and tallies, determinism,
robustness on odd input, and config validation."""

from __future__ import annotations

import random

import pytest

from curation.filters import FilterConfig, evaluate, evaluate_one, rule_names, tally

LOREM = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.\n"


@pytest.fixture(scope="module")
def lorem_page(paragraphs) -> str:
    return "\n".join(paragraphs[:4]) + "\n" + LOREM + "\n".join(paragraphs[4:8])


def _with_action(cfg: FilterConfig, rule_set: str, rule: str, action: str) -> FilterConfig:
    data = cfg.model_dump()
    data[rule_set][rule]["action"] = action
    return FilterConfig.model_validate(data)


def test_action_remove_flag_off(lorem_page):
    cfg = FilterConfig()
    assert evaluate_one(lorem_page, "web", cfg).removed_by == "c4.lorem_ipsum"

    flagged = evaluate_one(lorem_page, "web", _with_action(cfg, "c4", "lorem_ipsum", "flag"))
    assert flagged.kept and flagged.flags == ["c4.lorem_ipsum"]

    off_cfg = _with_action(cfg, "c4", "lorem_ipsum", "off")
    off = evaluate_one(lorem_page, "web", off_cfg)
    assert off.kept and off.flags == [] and "c4.lorem_ipsum" not in off.stats
    assert "c4.lorem_ipsum" not in rule_names(off_cfg)
    assert "c4.lorem_ipsum" in rule_names(cfg)


def test_first_removing_rule_in_fixed_order_wins_and_earlier_flags_are_kept(paragraphs):
    # fires gopher_repetition.duplicate_paragraph_fraction and fineweb.duplicate_line_chars
    page = "\n\n".join([*paragraphs[:4]] + [paragraphs[4]] * 4)
    cfg = FilterConfig()
    assert evaluate_one(page, "web", cfg).removed_by.startswith("gopher_repetition.")
    cfg = _with_action(cfg, "gopher_repetition", "duplicate_paragraph_fraction", "flag")
    cfg = _with_action(cfg, "gopher_repetition", "duplicate_paragraph_char_fraction", "flag")
    cfg = _with_action(cfg, "gopher_repetition", "duplicate_line_fraction", "flag")
    cfg = _with_action(cfg, "gopher_repetition", "duplicate_line_char_fraction", "flag")
    result = evaluate_one(page, "web", cfg)
    assert result.flags == [
        "gopher_repetition.duplicate_paragraph_fraction",
        "gopher_repetition.duplicate_paragraph_char_fraction",
        "gopher_repetition.duplicate_line_fraction",
        "gopher_repetition.duplicate_line_char_fraction",
    ]
    assert result.removed_by == "gopher_repetition.duplicate_5gram_char_fraction"
    # nothing after the removing rule was evaluated
    assert list(result.stats)[-1] == result.removed_by


def test_apply_to_domains(lorem_page):
    cfg = FilterConfig()
    texts = [lorem_page] * 5
    domains = ["web", "code", "math", None, "books"]
    removed = [r.removed_by for r in evaluate(texts, domains, cfg)]
    # code gets the code rules only (one-line paragraphs of prose are long lines), math none
    assert removed == ["c4.lorem_ipsum", "code.mean_line_length", None, "c4.lorem_ipsum",
                       "c4.lorem_ipsum"]

    strict = cfg.model_copy(update={"apply_to_unknown_domain": False})
    assert evaluate_one(lorem_page, None, strict).kept

    data = cfg.model_dump()
    data["c4"]["apply_to_domains"] = None
    assert evaluate_one(lorem_page, "code", FilterConfig.model_validate(data)).removed_by == (
        "c4.lorem_ipsum"
    )


def test_rule_names_cover_every_reported_rule_and_tally_has_zeros(prose, paragraphs, lorem_page):
    cfg = FilterConfig()
    names = rule_names(cfg)
    assert len(names) == len(set(names)) == 32
    texts = [prose, lorem_page, "", paragraphs[0], "\n".join(paragraphs) * 3]
    results = evaluate(texts, ["web"] * len(texts), cfg)
    for res in results:
        assert set(res.stats) <= set(names)
        assert res.removed_by is None or res.removed_by in names
    counts = tally(results, cfg)
    assert list(counts["removed"]) == names
    assert sum(counts["removed"].values()) == 4
    assert counts["removed"]["c4.lorem_ipsum"] == 1
    assert counts["removed"]["fineweb.short_lines"] == 0
    assert counts["documents"] == {"kept": 1, "total": 5}

    data = cfg.model_dump()
    data["fineweb"]["enabled"] = False
    assert not any(n.startswith("fineweb.") for n in rule_names(FilterConfig.model_validate(data)))


def test_deterministic_and_independent_of_batch(prose, paragraphs, lorem_page):
    rng = random.Random(3)
    texts = [prose, lorem_page] + ["\n".join(rng.sample(paragraphs, 6)) for _ in range(20)]
    domains = [rng.choice(["web", "code", None]) for _ in texts]
    first = evaluate(texts, domains, FilterConfig())
    again = evaluate(texts, domains, FilterConfig.model_validate(FilterConfig().model_dump()))
    assert first == again
    assert [evaluate_one(t, d, FilterConfig()) for t, d in zip(texts, domains, strict=True)] == first


def test_odd_input_never_raises(prose):
    rng = random.Random(0)
    odd = [
        "",
        " \n\t\r\n  \n",
        bytes(range(256)).decode("latin-1") * 20,
        "".join(chr(rng.randrange(1, 0xD7FF)) for _ in range(20_000)),
        "\x00" * 1000,
        "\ud800 lone surrogate {" * 50,
        "a" * 200_000,
        "\n" * 50_000,
        "... … ### • " * 1000,
    ]
    results = evaluate(odd, ["web"] * len(odd), FilterConfig())
    assert results[0].removed_by == "gopher_quality.word_count"
    assert results[1].removed_by == "gopher_quality.word_count"
    assert all(not r.kept for r in results)


def test_five_megabyte_document(prose):
    big = (prose * (5_000_000 // len(prose) + 1))[:5_000_000]
    result = evaluate_one(big, "web", FilterConfig())
    assert result.removed_by is not None  # a text repeated 1,500 times is repetitive
    cfg = FilterConfig.model_validate(
        {"gopher_repetition": {"enabled": False}, "fineweb": {"enabled": False},
         "c4": {"modify_text": True}}
    )
    result = evaluate_one(big, "web", cfg)
    assert result.removed_by == "gopher_quality.word_count"  # ~850k words > 100k


def test_batch_input_errors_name_the_entry():
    with pytest.raises(ValueError, match="domains has 1"):
        evaluate(["a", "b"], ["web"], FilterConfig())
    with pytest.raises(ValueError, match=r"texts\[1\]"):
        evaluate(["a", None], ["web", "web"], FilterConfig())  # type: ignore[list-item]


def test_config_from_yaml(tmp_path):
    path = tmp_path / "filters.yaml"
    path.write_text(
        "max_analysis_chars: 50000\n"
        "c4:\n  modify_text: true\n  curly_bracket: {action: flag}\n"
        "fineweb:\n  apply_to_domains: null\n  short_lines: {action: off, max_value: 0.5}\n"
    )
    cfg = FilterConfig.from_yaml(path)
    assert cfg.c4.modify_text and cfg.c4.curly_bracket.action == "flag"
    assert cfg.fineweb.apply_to_domains is None and cfg.fineweb.short_lines.action == "off"
    assert cfg.gopher_quality.apply_to_domains == ["web", "reference", "books"]

    for bad, field in [
        ("c4:\n  lorem_ipsm: {action: flag}\n", "lorem_ipsm"),
        ("gopher_quality:\n  word_count: {min_value: 10, max_value: 5}\n", "min_value"),
        ("fineweb:\n  short_lines: {action: drop, max_value: 0.5}\n", "action"),
        ("gopher_repetition:\n  top_ngram_char_fraction: {max_fraction_by_n: {2: 1.5}}\n",
         "fraction"),
        ("- not a mapping\n", "mapping"),
    ]:
        path.write_text(bad)
        with pytest.raises(ValueError, match=field) as err:
            FilterConfig.from_yaml(path)
        assert str(path) in str(err.value)


def test_every_config_field_is_documented():
    from pydantic import BaseModel

    seen = set()
    stack = [FilterConfig]
    while stack:
        model = stack.pop()
        if model in seen:
            continue
        seen.add(model)
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} lacks a description"
            ann = field.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                stack.append(ann)
    assert len(seen) >= 9
