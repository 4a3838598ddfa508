"""Tests of the sample-corpus builder's pure functions and of the bundled sample itself."""

from __future__ import annotations

import gzip
import hashlib
import json
import sys
from pathlib import Path

import pytest

DATA_DIR = Path(__file__).resolve().parents[2] / "data"
sys.path.insert(0, str(DATA_DIR))

from build_sample import write_domains  # noqa: E402
from sample_extract import (  # noqa: E402
    dictd_number,
    group_bible_books,
    html_to_text,
    iter_wiki_pages,
    parse_dictd_index,
    split_text,
    wikitext_to_text,
)
from sample_sources import DOMAINS, Doc  # noqa: E402


def test_html_to_text_drops_scripts_keeps_pre_and_entities() -> None:
    html = (
        "<html><head><title>T &amp; U</title><style>p{color:red}</style></head>"
        "<body><nav>Home</nav><p>Hello   <b>big</b>\nworld</p>"
        "<script>var x = 1;</script><pre>a  b\n  c</pre><ul><li>one</li><li>two</li></ul>"
        "</body></html>"
    )
    text = html_to_text(html)
    assert text == "T & U\n\nHome\n\nHello big world\n\na  b\n  c\n\none\n\ntwo\n"
    assert "color" not in text and "var x" not in text


def test_wikitext_to_text_removes_markup() -> None:
    wiki = (
        "{{Infobox|name={{nested|x}}}}'''Foo''' (1775{{ndash}}1783) is a [[bar|Bar]] "
        "and [[baz]].<ref name=a>cite</ref> See [[wikt:qux|qux]].\n"
        "[[File:Pic.png|thumb|A [[linked]] caption]]\n"
        "== History ==\n* item &amp;nbsp;one\n{| class=wikitable\n| cell\n|}\n"
        "[[Category:Things]]\n[[de:Foo]]"
    )
    text = wikitext_to_text(wiki)
    assert text == "Foo (1775\u20131783) is a Bar and baz. See qux.\n\nHistory\nitem  one\n"


def test_iter_wiki_pages_keeps_main_namespace_only() -> None:
    xml = (
        "<mediawiki><page><title>A &amp; B</title><ns>0</ns><revision>"
        "<text xml:space=\"preserve\">'''A''' is [[x|y]].</text></revision></page>"
        "<page><title>Talk:A</title><ns>1</ns><revision><text>talk</text></revision></page>"
        "</mediawiki>"
    )
    assert list(iter_wiki_pages(xml)) == [("A & B", "A & B\n\nA is y.\n")]


@pytest.mark.parametrize("max_bytes", [10, 64, 1000])
def test_split_text_bounds_parts_and_loses_nothing(max_bytes: int) -> None:
    text = "para one line\nline two\n\n" + "é" * 40 + "\n\npara three\n" * 5
    parts = split_text(text, max_bytes)
    assert "".join(parts) == text
    assert all(len(p.encode("utf-8")) <= max_bytes for p in parts)
    assert (len(parts) == 1) == (len(text.encode("utf-8")) <= max_bytes)


def test_group_bible_books_by_book_and_chapter() -> None:
    out = "Ge1:1 In the beginning.\nGe1:2 And.\nGe2:1 Thus.\nEx1:1 Now these.\n"
    books = group_bible_books(out)
    assert [b for b, _ in books] == ["Ge", "Ex"]
    assert books[0][1] == "Chapter 1\n\n1 In the beginning.\n2 And.\n\nChapter 2\n\n1 Thus.\n"
    with pytest.raises(ValueError, match="line 2"):
        group_bible_books("Ge1:1 ok\nnot a verse\n")


def test_dictd_index_decoding() -> None:
    assert dictd_number("A") == 0 and dictd_number("BA") == 64 and dictd_number("/") == 63
    index = "Beta\tBA\tC\nAlpha\tA\tB\nAlias\tBA\tC\n"
    assert parse_dictd_index(index) == [("Alpha", 0, 1), ("Beta", 64, 2)]
    with pytest.raises(ValueError, match="digit"):
        dictd_number("A!")
    with pytest.raises(ValueError, match="line 1"):
        parse_dictd_index("onlyone\n")


def _doc(i: int, domain: str) -> Doc:
    return Doc(f"pkg/file{i}", f"text {i} é", "pkg", domain, {"path": f"file{i}", "license": "x"})


def test_write_domains_is_byte_identical_and_rejects_duplicate_ids(tmp_path: Path) -> None:
    docs = [_doc(i, DOMAINS[i % len(DOMAINS)]) for i in range(12)]
    write_domains(docs, tmp_path / "a")
    write_domains(docs, tmp_path / "b")
    for domain in DOMAINS:
        a = (tmp_path / "a" / f"{domain}.jsonl.gz").read_bytes()
        assert a == (tmp_path / "b" / f"{domain}.jsonl.gz").read_bytes()
    first = json.loads(gzip.decompress((tmp_path / "a/web.jsonl.gz").read_bytes()).splitlines()[0])
    assert first == _doc(0, "web").record()
    with pytest.raises(ValueError, match="duplicate document id 'pkg/file1'"):
        write_domains([_doc(1, "web"), _doc(1, "code")], tmp_path / "c")


def test_bundled_sample_meets_acceptance() -> None:
    """The committed data/sample: 5 domains, >= 20 MB of text, <= 25 MB on disk, valid records,
    natural exact duplicates kept."""
    sample = DATA_DIR / "sample"
    total_text = total_disk = 0
    hashes: set[str] = set()
    dups = 0
    for domain in DOMAINS:
        path = sample / f"{domain}.jsonl.gz"
        total_disk += path.stat().st_size
        domain_text = 0
        ids: set[str] = set()
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                rec = json.loads(line)
                assert set(rec) == {"id", "text", "source", "domain", "meta"}, (path, n)
                assert rec["domain"] == domain and rec["text"].strip(), (path, n)
                assert rec["id"] not in ids and {"path", "license"} <= set(rec["meta"])
                ids.add(rec["id"])
                raw = rec["text"].encode("utf-8")
                assert len(raw) <= 200_000, rec["id"]
                domain_text += len(raw)
                digest = hashlib.sha256(raw).hexdigest()
                dups += digest in hashes
                hashes.add(digest)
        assert domain_text >= 1_500_000, domain
        total_text += domain_text
    assert total_text >= 20_000_000
    assert total_disk <= 25_000_000
    assert dups >= 50
