"""Shared fixtures: real prose (GPL-3 preamble, verbatim) and configs that isolate one rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from curation.filters import FilterConfig

DATA = Path(__file__).parent / "data"
RULE_SETS = ("gopher_repetition", "gopher_quality", "c4", "fineweb", "code")


@pytest.fixture(scope="session")
def prose() -> str:
    """The GPL-3 preamble as distributed: hard-wrapped lines, blank-line paragraphs."""
    return (DATA / "gpl3_preamble.txt").read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def paragraphs(prose: str) -> list[str]:
    """The preamble's paragraphs, each unwrapped to a single line."""
    return [" ".join(p.split()) for p in prose.split("\n\n") if p.strip()]


def _only(rule_set: str, rule: str | None = None, markup_aware: bool = False,
          **overrides) -> FilterConfig:
    """Config with every other rule set disabled, applied to all domains; with ``rule`` given,
    every other rule of ``rule_set`` is switched off too. ``overrides`` update the set.
    ``markup_aware`` is off by default and every rule removes, as published: these tests pin
    the published rule definitions."""
    data = FilterConfig().model_dump()
    data["markup_aware"] = markup_aware
    for name in RULE_SETS:
        data[name]["enabled"] = name == rule_set
        data[name]["apply_to_domains"] = None
    section = data[rule_set]
    for value in section.values():  # the published rules remove (some default to flag here)
        if isinstance(value, dict) and value.get("action") == "flag":
            value["action"] = "remove"
    if rule is not None:
        for key, value in section.items():
            if isinstance(value, dict) and "action" in value and key != rule:
                value["action"] = "off"
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(section.get(key), dict):
            section[key].update(value)
        else:
            section[key] = value
    return FilterConfig.model_validate(data)


@pytest.fixture(scope="session")
def only():
    """``only(rule_set, rule=None, markup_aware=False, **overrides) -> FilterConfig`` isolating
    a rule set/rule."""
    return _only
