"""Per-domain configs (by_domain merge and validation), the code rule set, and the defaults on
documentation: reST/Markdown pages are kept, real junk is still removed, and on the bundled
sample each documentation source keeps at least 90% of its non-duplicate pages."""

from __future__ import annotations

import pytest

from benchmarks.filter_keep_rates import SAMPLE, read_sample
from curation.config import CurationConfig
from curation.filters import FilterConfig, evaluate, evaluate_one, rule_names

REST_PAGE = """\
.. _list_api:

=====================
The list object layer
=====================

This page describes the functions that create and change list objects.  Each
function checks its arguments and reports errors through the usual exception
machinery, so that callers can rely on a single convention across the API.

.. c:function:: PyObject* PyList_New(Py_ssize_t len)

   Return a new list of length *len* on success, or ``NULL`` on failure.
   The items of the new list are set to ``NULL`` before they are returned.

.. c:function:: PyObject* PyList_GetItem(PyObject *list, Py_ssize_t index)

   Return the object at position *index* in the list pointed to by *list*.
   Return a new list of length *len* on success, or ``NULL`` on failure.

Example
-------

A short program that builds a list and prints it looks like this::

    static int build(void) {
        PyObject *list = PyList_New(2);
        if (list == NULL) {
            return -1;
        }
        return 0;
    }

The function above returns ``-1`` when the allocation fails and ``0`` otherwise.
Callers should check the result before they use the list, as the example shows,
because a failed allocation leaves an exception set for the caller to handle.
Errors of this kind are rare in practice, but a robust extension handles them.
"""

MARKDOWN_PAGE = """\
# Configuring the service

The service reads its settings from a single file when it starts, and it
reloads that file when it receives a hang-up signal from the administrator.

## Example

```json
{"listen": "0.0.0.0:8080", "workers": 4}
```

Every key is optional; a missing key keeps the default value documented below.
The defaults suit a small installation, and larger sites usually raise the
number of workers to match the number of cores that the machine has.

- `listen`: the address and port that the service binds to when it starts.
- `workers`: how many requests the service handles at the same time.
"""


def _junk_pages(paragraphs: list[str]) -> dict[str, str]:
    return {
        "repeated lines": "\n".join(["Buy cheap watches online today, free shipping!"] * 40),
        "keyword list": "\n".join(
            f"{w} watches" for w in ("cheap", "best", "luxury", "replica", "discount", "gold",
                                     "silver", "men", "women", "sale", "buy", "online") * 4),
        "lorem ipsum": "\n".join(paragraphs[:5]) + "\nLorem ipsum dolor sit amet, consectetur "
                       "adipiscing elit, sed do eiusmod tempor incididunt ut labore.\n",
        "mostly symbols": " ".join(["#### ==== **** ---- |||| ~~~~ >>>> <<<<"] * 60),
        "navigation only": "\n".join(["Home", "About us", "Products", "Contact", "Login",
                                      "Privacy", "Sitemap", "Careers"] * 6),
        "repeated paragraph": "\n\n".join([paragraphs[0]] + [paragraphs[1]] * 6),
    }


@pytest.mark.parametrize("domain", ["web", "books", "reference", None])
def test_default_rules_still_remove_junk(paragraphs, domain):
    for name, page in _junk_pages(paragraphs).items():
        result = evaluate_one(page, domain, FilterConfig())
        assert result.removed_by is not None, f"{name} kept in {domain}"


def test_documentation_pages_are_kept_with_markup_awareness_and_not_without():
    aware = FilterConfig()
    published = FilterConfig(markup_aware=False)
    for page in (REST_PAGE, MARKDOWN_PAGE):
        assert evaluate_one(page, "web", aware).kept, evaluate_one(page, "web", aware)
    assert not evaluate_one(REST_PAGE, "web", published).kept


def test_curly_bracket_with_markup_awareness_fires_on_code_in_prose_only(paragraphs):
    cfg = FilterConfig.model_validate(
        {"gopher_repetition": {"enabled": False}, "gopher_quality": {"enabled": False},
         "fineweb": {"enabled": False}, "c4": {"curly_bracket": {"action": "remove"}}})
    prose = "\n".join(paragraphs[:6]) + "\n"
    quoted = prose + "Write ``{name}`` or dma_{map,unmap}_single() where the name goes.\n"
    assert evaluate_one(quoted, "web", cfg).kept
    pasted = prose + "Paste this: function f() { return document.cookie; } into the page.\n"
    assert evaluate_one(pasted, "web", cfg).removed_by == "c4.curly_bracket"


def test_by_domain_overrides_merge_over_the_defaults(paragraphs):
    page = "\n".join(paragraphs[:8])
    cfg = FilterConfig.model_validate({"by_domain": {
        "books": {"gopher_quality": {"word_count": {"min_value": 10_000}}},
        "reference": {"gopher_repetition": {
            "duplicate_ngram_char_fraction": {"max_fraction_by_n": {5: 0.5}}}},
    }})
    assert evaluate_one(page, "web", cfg).kept
    assert evaluate_one(page, "books", cfg).removed_by == "gopher_quality.word_count"
    books = cfg.for_domain("books")
    assert books.gopher_quality.word_count.max_value == 100_000  # sibling key kept
    assert books.gopher_quality.mean_word_length.min_value == 3
    reference = cfg.for_domain("reference")  # the n -> fraction map is replaced, not merged
    assert reference.gopher_repetition.duplicate_ngram_char_fraction.max_fraction_by_n == {5: 0.5}
    assert cfg.for_domain("web") is cfg and cfg.for_domain(None) is cfg


def test_rule_names_include_rules_enabled_in_one_domain_only(paragraphs):
    cfg = FilterConfig.model_validate({
        "c4": {"lorem_ipsum": {"action": "off"}},
        "by_domain": {"web": {"c4": {"lorem_ipsum": {"action": "flag"}}}},
    })
    assert "c4.lorem_ipsum" in rule_names(cfg)
    assert "c4.lorem_ipsum" not in rule_names(cfg.model_copy(update={"by_domain": {}}))
    lorem = _junk_pages(paragraphs)["lorem ipsum"]
    assert evaluate_one(lorem, "web", cfg).flags == ["c4.lorem_ipsum"]
    assert evaluate_one(lorem, "books", cfg).flags == []


@pytest.mark.parametrize(("override", "expected"), [
    ({"web": {"c4": {"curly_brackets": {"action": "off"}}}}, r"by_domain\.web: c4\.curly_brackets"),
    ({"code": {"code": {"mean_line_length": {"max_value": -1}}}}, r"by_domain\.code: code\.mean"),
    ({"web": {"fineweb": {"short_lines": {"action": "drop"}}}}, r"by_domain\.web: .*action"),
    ({"web": {"by_domain": {"books": {}}}}, r"by_domain\.web: by_domain cannot be nested"),
    ({"web": 3}, r"by_domain\.web"),
])
def test_bad_overrides_are_errors_naming_domain_and_field(tmp_path, override, expected):
    with pytest.raises(ValueError, match=expected):
        FilterConfig.model_validate({"by_domain": override})
    path = tmp_path / "filters.yaml"
    path.write_text(f"by_domain: {override!r}\n".replace("'", '"'))
    with pytest.raises(ValueError, match=str(path)):
        FilterConfig.from_yaml(path)


def test_curation_config_checks_by_domain_against_the_taxonomy():
    with pytest.raises(ValueError, match=r"filters\.by_domain: \['recipes'\] not in domains"):
        CurationConfig.model_validate({"filters": {"by_domain": {"recipes": {}}}})
    ok = CurationConfig.model_validate(
        {"domains": ["web", "recipes"], "default_domain": "web",
         "filters": {"by_domain": {"recipes": {"c4": {"enabled": False}}}}})
    assert ok.filters.for_domain("recipes").c4.enabled is False


def test_disabled_switches_off_every_rule_set_in_every_domain(paragraphs):
    cfg = FilterConfig.model_validate(
        {"by_domain": {"math": {"code": {"apply_to_domains": ["math"]}}}})
    off = cfg.disabled()
    assert rule_names(off) == [] and off.by_domain == {}
    junk = _junk_pages(paragraphs)["repeated lines"]
    assert all(r.kept for r in evaluate([junk] * 3, ["web", "code", "math"], off))


def _source(lines: list[str]) -> str:
    return "\n".join(lines) + "\n"


def test_code_rules():
    cfg = FilterConfig()
    ordinary = _source([line for i in range(30)
                        for line in (f"def f{i}(x):", f"    return x + {i}  # add {i}", "")])
    assert evaluate_one(ordinary, "code", cfg).kept
    cases = {
        "code.auto_generated": _source(["# This file is auto-generated. Do not edit."])
        + ordinary,
        "code.max_line_length": ordinary + "DATA = '" + "x1" * 800 + "'\n",
        "code.mean_line_length": _source(["x = [" + ", ".join(map(str, range(40))) + "]"] * 20),
        "code.alphanumeric_fraction": _source(["# " + "=-*/" * 20] * 40),
    }
    for rule, text in cases.items():
        assert evaluate_one(text, "code", cfg).removed_by == rule, rule
        assert evaluate_one(text, "math", cfg).kept  # math gets no rule set by default
    longer = FilterConfig.model_validate(
        {"by_domain": {"code": {"code": {"mean_line_length": {"max_value": 250}}}}})
    assert evaluate_one(cases["code.mean_line_length"], "code", longer).kept


def test_unknown_domain_is_judged_as_web(paragraphs):
    text = "\n".join(paragraphs)  # one paragraph a line: long lines, fine prose
    cfg = FilterConfig.model_validate(
        {"by_domain": {"web": {"gopher_quality": {"word_count": {"min_value": 10_000}}}}})
    assert evaluate_one(text, None, cfg).removed_by == "gopher_quality.word_count"
    assert evaluate_one(text, None, FilterConfig()).kept  # code rules do not apply
    assert evaluate_one(text, None, FilterConfig(apply_to_unknown_domain=False)).stats == {}


@pytest.mark.skipif(not SAMPLE.is_dir(), reason="bundled sample not present")
def test_sample_documentation_keeps_at_least_90_percent():
    sources = {"python3.11-doc", "linux-doc-6.1", "debian-handbook"}
    records = [r for r in read_sample() if r["source"] in sources and r["domain"] == "web"]
    results = evaluate([r["text"] for r in records], [r["domain"] for r in records],
                       FilterConfig())
    for source in sorted(sources):
        mine = [res for rec, res in zip(records, results, strict=True) if rec["source"] == source]
        kept = sum(r.kept for r in mine) / len(mine)
        assert kept >= 0.9, f"{source}: kept {kept:.1%} of {len(mine)}"
