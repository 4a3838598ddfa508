"""Domains: the record's own label (checked against the taxonomy), else the first matching
rule on source, input path or url, else the source mapping, else the default."""

from __future__ import annotations

import json

import pytest

from curation.config import CurationConfig
from curation.io.record_parser import RecordParser

CFG = {
    "domain_rules": [
        {"match": "url", "pattern": r"arxiv\.org/abs/", "domain": "academic"},
        {"match": "path", "pattern": r"/forums?/", "domain": "conversation"},
        {"match": "source", "pattern": r"^(pypi|debian-src)$", "domain": "code"},
    ],
    "domain_by_source": {"gutenberg": "books"},
}


def _domain(record: dict, path: str = "/data/crawl/part-0.jsonl", cfg: dict = CFG) -> dict:
    parser = RecordParser(CurationConfig.model_validate(cfg))
    return parser.parse(json.dumps({"text": "some text", **record}).encode(), path)


@pytest.mark.parametrize("record, path, domain", [
    ({"domain": "math", "url": "https://arxiv.org/abs/1"}, "/x.jsonl", "math"),  # own label wins
    ({"url": "https://arxiv.org/abs/2401.1"}, "/data/forum/a.jsonl", "academic"),  # first rule
    ({"url": "https://example.org"}, "/data/forum/a.jsonl", "conversation"),
    ({"source": "pypi"}, "/data/x.jsonl", "code"),
    ({"source": "gutenberg"}, "/data/x.jsonl", "books"),  # no rule: the source mapping
    ({"source": "blog", "url": 7}, "/data/x.jsonl", "web"),  # a non-string url matches nothing
])
def test_domain_comes_from_label_then_rules_then_source_then_default(record, path, domain):
    assert _domain(record, path)["domain"] == domain


def test_a_label_outside_the_taxonomy_is_quarantined_with_its_reason():
    row = _domain({"domain": "legal"})
    assert row["q_reason"] == "unknown_domain" and "'legal'" in row["q_detail"]
    assert _domain({"domain": "legal"}, cfg={"domains": ["web", "legal"]})["domain"] == "legal"


@pytest.mark.parametrize("cfg, message", [
    ({"domain_rules": [{"match": "url", "pattern": "(", "domain": "web"}]}, "not a regular"),
    ({"domain_rules": [{"match": "url", "pattern": "x", "domain": "legal"}]}, "domain_rules"),
    ({"domain_by_source": {"a": "legal"}}, "domain_by_source"),
    ({"default_domain": "legal"}, "default_domain"),
    ({"domain_rules": [{"match": "title", "pattern": "x", "domain": "web"}]}, "match"),
])
def test_rules_and_mappings_are_checked_when_the_config_loads(cfg, message):
    with pytest.raises(ValueError, match=message):
        CurationConfig.model_validate(cfg)
