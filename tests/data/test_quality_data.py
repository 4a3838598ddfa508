"""Checks of the committed data of the learned quality signals (data/quality/).

No network and no packages: these read the files that data/build_quality_data.py wrote.
"""

from __future__ import annotations

import gzip
import json
import sys
from collections import Counter
from functools import cache
from pathlib import Path

import pytest

DATA_DIR = Path(__file__).resolve().parents[2] / "data"
QUALITY = DATA_DIR / "quality"
sys.path.insert(0, str(DATA_DIR))

from build_quality_data import SAMPLE_SOURCES  # noqa: E402
from quality_negatives import NEGATIVE_KINDS  # noqa: E402
from quality_sources import (  # noqa: E402
    chunks,
    html_content_text,  # noqa: E402
    pod_to_text,
    roff_to_text,
)

FIELDS = {"id", "text", "source", "domain", "kind", "license"}
DOMAINS = {"web", "code", "math", "books", "reference", "academic", "conversation"}


@cache
def load(rel: str) -> tuple[dict, ...]:
    with gzip.open(QUALITY / rel, "rt", encoding="utf-8") as f:
        return tuple(json.loads(line) for line in f)


def files(sub: str) -> list[str]:
    return sorted(p.relative_to(QUALITY).as_posix() for p in (QUALITY / sub).glob("*.jsonl.gz"))


def package(source: str) -> str:
    return source.split(":", 1)[0]


def test_records_are_valid() -> None:
    for rel in files("reference/positive") + files("reference/negative") + files("langid") \
            + files("domains") + ["eval/labelled.jsonl.gz"]:
        recs = load(rel)
        assert recs, rel
        ids = [r["id"] for r in recs]
        assert len(ids) == len(set(ids)), f"{rel}: duplicate ids"
        for r in recs:
            assert FIELDS <= r.keys(), (rel, r["id"])
            assert all(isinstance(r[k], str) and r[k] for k in FIELDS), (rel, r["id"])
            assert r["domain"] in DOMAINS, (rel, r["id"], r["domain"])


def test_reference_positive_counts_and_sizes() -> None:
    recs = [r for rel in files("reference/positive") for r in load(rel)]
    sources = Counter(r["source"] for r in recs)
    assert len(sources) >= 8
    assert len(recs) >= 1500
    assert max(sources.values()) <= 0.15 * len(recs), "one source dominates"
    assert {"web", "code", "math", "books", "reference"} <= {r["domain"] for r in recs}
    assert all(300 <= len(r["text"]) <= 50_000 for r in recs)
    for rel in files("reference/positive"):
        assert {r["source"] for r in load(rel)} == {Path(rel).name[:-len(".jsonl.gz")]}


def test_reference_negatives_cover_every_kind() -> None:
    names = {Path(rel).name[:-len(".jsonl.gz")] for rel in files("reference/negative")}
    assert names == set(NEGATIVE_KINDS)
    recs = [r for rel in files("reference/negative") for r in load(rel)]
    positives = sum(len(load(rel)) for rel in files("reference/positive"))
    assert len(recs) >= 0.8 * positives
    assert len({package(r["source"]) for r in recs}) >= 8
    for kind in NEGATIVE_KINDS:
        kind_recs = load(f"reference/negative/{kind}.jsonl.gz")
        assert {r["kind"] for r in kind_recs} == {kind}
        assert len({package(r["source"]) for r in kind_recs}) >= 2, kind


def test_eval_set_is_labelled_and_balanced() -> None:
    recs = load("eval/labelled.jsonl.gz")
    labels = Counter(r["label"] for r in recs)
    assert set(labels) == {"good", "bad"}
    assert labels["good"] >= 300 and labels["bad"] >= 300
    assert {r["kind"] for r in recs if r["label"] == "bad"} == set(NEGATIVE_KINDS)
    good_domains = {r["domain"] for r in recs if r["label"] == "good"}
    assert {"web", "code", "math", "books", "reference"} <= good_domains


def test_sources_are_disjoint() -> None:
    ref = {package(r["source"]) for sub in ("reference/positive", "reference/negative")
           for rel in files(sub) for r in load(rel)}
    ev = {package(r["source"]) for r in load("eval/labelled.jsonl.gz")}
    others = {package(r["source"]) for sub in ("langid", "domains")
              for rel in files(sub) for r in load(rel)}
    assert not ref & SAMPLE_SOURCES
    assert not ev & SAMPLE_SOURCES
    assert not others & SAMPLE_SOURCES
    assert not ref & ev, sorted(ref & ev)


def test_langid_languages() -> None:
    langs = files("langid")
    assert len(langs) >= 8
    for rel in langs:
        recs = load(rel)
        lang = Path(rel).name[:-len(".jsonl.gz")]
        assert {r["label"] for r in recs} == {lang}
        assert len(recs) <= 300
        assert all(200 <= len(r["text"]) <= 5000 for r in recs)
    multi = [rel for rel in langs if len({r["source"] for r in load(rel)}) >= 2]
    assert len(multi) >= 8, "held-out splits by source need several sources per language"


def test_domains() -> None:
    doms = {Path(rel).name[:-len(".jsonl.gz")]: load(rel) for rel in files("domains")}
    assert {"web", "code", "math", "books", "reference"} <= set(doms)
    for dom, recs in doms.items():
        assert {r["label"] for r in recs} == {dom}
        assert len(recs) <= 400
        assert len({r["source"] for r in recs}) >= 2, dom


def test_size_on_disk() -> None:
    total = sum(p.stat().st_size for p in QUALITY.rglob("*") if p.is_file())
    assert total <= 12_000_000


# --- extraction helpers ------------------------------------------------------------------------

def test_html_content_text_drops_navigation() -> None:
    html = ('<html class="sidebar-visible"><body><nav>Home | Next</nav>'
            '<div class="navheader">Prev Up</div><div class="body"><h1>Title</h1>'
            '<p>Real <b>text</b>.</p></div><div class="footer">(c) 2020</div></body></html>')
    assert html_content_text(html) == "Title\n\nReal text.\n"


def test_pod_to_text() -> None:
    pod = "=head1 NAME\n\nperlx - B<bold> C<< $a <=> $b >> L<perlfunc/sort>\n\n=cut\n\ncode\n"
    assert pod_to_text(pod) == "NAME\n\nperlx - bold $a <=> $b perlfunc/sort\n"


def test_roff_to_text() -> None:
    man = '.TH LS 1\n.SH NAME\nls \\- list\n.B \\-a\nall \\fBfiles\\fR\n'
    assert roff_to_text(man) == "NAME\n\nls - list\n-a\nall files\n"


@pytest.mark.parametrize("max_chars", [50, 400])
def test_chunks_respect_bounds(max_chars: int) -> None:
    text = "\n\n".join(f"para {i} " + "x" * (i * 7) for i in range(40))
    parts = chunks(text, min_chars=10, max_chars=max_chars)
    assert parts and all(10 <= len(p.strip()) and len(p) <= max_chars + 1 for p in parts)
