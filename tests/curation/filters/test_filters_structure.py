"""The markup-aware line classifier: what counts as prose, code, markup, heading and item."""

from __future__ import annotations

from curation.filters.structure import classify, prose_text, text_units
from curation.filters.text_stats import TextStats


def _kinds(text: str) -> list[tuple[str, str]]:
    return [(u.kind, u.text) for u in classify(text)]


def test_rest_headings_literal_blocks_and_directives():
    text = """\
=====
Title
=====

Intro text that is wrapped at a fixed width, as reStructuredText sources
usually are, continues here.

Subtitle
~~~~~~~~

Run this::

    x = {1: 2}
    print(x)

.. code-block:: c

   int main(void) { return 0; }

.. toctree::
   :maxdepth: 2

   intro

.. note::

   A note is prose.
"""
    kinds = _kinds(text)
    assert ("heading", "Title") in kinds and ("heading", "Subtitle") in kinds
    assert ("prose", "Intro text that is wrapped at a fixed width, as reStructuredText sources "
            "usually are, continues here.") in kinds
    assert ("prose", "Run this:") in kinds
    assert ("code", "x = {1: 2}") in kinds and ("code", "int main(void) { return 0; }") in kinds
    assert ("markup", "intro") in kinds and ("markup", ":maxdepth: 2") in kinds
    assert ("prose", "A note is prose.") in kinds
    assert ("markup", "~~~~~~~~") in kinds  # a tilde underline is not a code fence


def test_markdown_fences_lists_and_plain_text_code():
    text = "# Setup\n\nInstall it:\n\n```sh\n$ make install\n```\n\n- first item\n1. second\n" \
           "$ apt-get install foo\nint x = 1;\n"
    kinds = dict((t, k) for k, t in _kinds(text))
    assert kinds["# Setup"] == "heading"
    assert kinds["$ make install"] == "code" and kinds["```sh"] == "code"
    assert kinds["- first item"] == "item" and kinds["1. second"] == "item"
    assert kinds["$ apt-get install foo"] == "code" and kinds["int x = 1;"] == "code"


def test_crawl_text_is_unchanged_except_for_page_chrome():
    body = ["A paragraph on one line that ends properly.", "Another one, also complete."]
    text = "\n".join(["Home", "Prev", *body, "Next", "Up"])
    units = classify(text)
    assert [u.text for u in text_units(units)] == body
    assert prose_text(text_units(units)) == "\n".join(body)
    assert TextStats(text, 10_000, markup_aware=False).lines == text.splitlines()


def test_sections_scope_repeats_to_one_entry():
    entry = "Return 0 on success or -1 on failure, with an exception set."
    text = "\n\n".join(f".. c:function:: int f{i}(void)\n\n   {entry}" for i in range(5))
    doc = TextStats(text, 10_000, markup_aware=True)
    assert doc.lines == [entry] * 5
    assert doc.line_duplicates == (0, 0)
    plain = TextStats("\n\n".join([entry] * 5), 10_000, markup_aware=True)
    assert plain.line_duplicates == (4, 4 * len(entry))
    assert len(doc.word_sections) == len(doc.words)
