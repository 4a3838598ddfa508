"""Markup-aware view of a document: which lines are prose, and which are code or markup.

Why: the Gopher, C4 and FineWeb thresholds were tuned on text extracted from HTML crawls, where
a line is a paragraph and code is rare. Documentation (reStructuredText, Markdown, HTML pages
with listings) breaks those assumptions: section underlines (``=====``) repeat on every page and
count as duplicated lines; code blocks have ``{`` (C4's curly-bracket rule) and lines without
terminal punctuation; hard-wrapped paragraphs put a line break every 72 characters, so most
lines "end without punctuation" and C4 keeps too few sentences. On the sample, the unadapted
rules kept 131 of 675 documentation pages.

This module classifies each physical line once (a single pass, no backtracking regexes):

* ``code``: fenced blocks (`````` / ``~~~``), reST literal blocks (the indented block after a
  line ending in ``::``), bodies of code directives (``.. code-block::``, ``.. kernel-doc::``,
  ...), doctest paragraphs (``>>>``), and lines that look like code in plain text: a shell
  prompt (``$ ``, ``>>>``) or a line ending in ``{``, ``}``, ``);`` (or ``;`` after an ``=``).
* ``markup``: reST adornment lines, table borders and rows, explicit markup (``.. x::``,
  ``.. _label:``, comments) and the bodies of non-prose directives (``toctree``, ``index``).
* ``heading``: a line directly above (or between) adornments, Markdown ``#`` headings, and
  numbered section titles of HTML-stripped manuals (``6.2.1. Initialization``).
* ``item``: bullet, enumerated and field-list items.
* ``prose``: everything else.

Runs of short unpunctuated lines at the start and end of the page (navigation) are set aside
too (:func:`text_units`). Prose lines that continue a hard-wrapped paragraph are joined into one
*unit*: a line joins the unit before it when that unit's last line has at least
:data:`WRAP_MIN` characters and does not end in terminal punctuation. Text whose paragraphs are
single lines (crawl output) is unchanged apart from the page chrome. A line is classified from
itself and the block it is in; headings, reST directives and code blocks start new *sections*,
within which the repetition rules look for repeats (see :mod:`curation.filters.text_stats`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PROSE, ITEM, HEADING, CODE, MARKUP = "prose", "item", "heading", "code", "markup"
TEXT_KINDS = frozenset({PROSE, ITEM})
WRAP_MIN = 40
CHROME_MAX_WORDS = 8
_TERMINAL = (".", "?", "!", '"', "'", ":", ";", "”", "’")
_ADORNMENT_CHARS = frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
_TABLE_CHARS = frozenset("=-+| :")
_CODE_DIRECTIVES = frozenset({
    "code", "code-block", "sourcecode", "literalinclude", "doctest", "testcode", "testsetup",
    "testcleanup", "testoutput", "productionlist", "highlight", "math", "kernel-doc",
    "parsed-literal", "raw", "graphviz", "digraph", "kernel-feat", "kernel-abi",
})
_MARKUP_DIRECTIVES = frozenset({
    "toctree", "index", "include", "image", "tabularcolumns", "contents", "sectnum",
    "csv-table", "meta", "default-role", "role", "currentmodule", "sectionauthor",
    "moduleauthor", "codeauthor", "spelling:word-list",
})
_DIRECTIVE = re.compile(r"\.\.\s+([\w:.+-]+)::")
_MD_HEADING = re.compile(r"#{1,6}\s+\S")
_NUMBERED_TITLE = re.compile(
    r"(?:(?:Chapter|Appendix|Part|Section)\s+\w{1,4}\.|(?:\d{1,3}|[A-Z])(?:\.\d{1,3})+\.?)\s+\S")
_ENUMERATED = re.compile(r"(?:\(?(?:\d{1,3}|[a-zA-Z]|[ivxlcIVXLC]{1,5})[.)]|#\.)\s+\S")
_FIELD = re.compile(r":[\w][\w .()-]{0,40}:(?:\s|$)")
_BULLETS = ("- ", "* ", "+ ", "• ", "‣ ", "◦ ", "● ", "○ ", "▪ ", "■ ", "· ", "– ", "→ ")
_PROMPTS = ("$ ", "# ", ">>> ", "% ")


@dataclass(frozen=True, slots=True)
class Unit:
    """One logical line: ``kind``, its stripped text (wrapped prose joined with spaces),
    ``paragraph``, the index of the blank-line separated block it belongs to, and ``section``,
    which advances at every heading, reST directive (an API entry such as ``.. c:function::``)
    and code block."""

    kind: str
    text: str
    paragraph: int
    section: int = 0


def _indent(line: str) -> int:
    n = len(line) - len(line.lstrip(" \t"))
    return len(line[:n].expandtabs(8))


def _is_adornment(s: str) -> bool:
    return len(s) >= 3 and s[0] in _ADORNMENT_CHARS and s == s[0] * len(s)


def _is_table(s: str) -> bool:
    if s[0] not in "=-+|:":
        return False
    if len(s) >= 3 and set(s) <= _TABLE_CHARS and ("==" in s or "--" in s):
        return True
    return len(s) >= 2 and s[0] == "|" and s[-1] == "|" or s.startswith(("+-", "+="))


def _kind_of(s: str) -> str:
    """Kind of a line outside any block, from its stripped text alone."""
    if _MD_HEADING.match(s) and not s.startswith("#!"):
        return HEADING
    if s.startswith(_PROMPTS) or s.endswith(("{", "}", ");", "];")) or s.startswith("}"):
        return CODE
    if s.endswith(";") and "=" in s:
        return CODE
    if len(s) < 100 and _NUMBERED_TITLE.match(s) and not s.endswith((".", "?", "!")):
        return HEADING
    if s.startswith(_BULLETS) or s in ("-", "*", "•") or _ENUMERATED.match(s) or _FIELD.match(s):
        return ITEM
    return PROSE


def classify(text: str) -> list[Unit]:
    """Units of ``text`` in order; blank lines only advance the paragraph counter. A section
    starts at each heading, reST directive and code block."""
    units: list[Unit] = []
    paragraph = section = 0
    fence: str | None = None  # opening marker of a fenced block
    block_kind: str | None = None  # kind of an indented block (literal, directive body)
    block_indent = 0
    doctest = False
    pending_literal: int | None = None  # indent of a line ending in '::'
    joinable = False  # the last unit is prose/item whose last line looks hard-wrapped

    def add(kind: str, s: str) -> None:
        nonlocal section
        if kind == HEADING or kind == CODE and (not units or units[-1].kind != CODE):
            section += 1
        units.append(Unit(kind, s, paragraph, section))

    for raw in text.splitlines():
        s = raw.strip()
        if fence is not None:
            if s.startswith(fence):
                fence = None
            add(CODE, s)
            continue
        if not s:
            paragraph += 1
            doctest = joinable = False
            continue
        indent = _indent(raw)
        if pending_literal is not None:
            block_kind, block_indent, pending_literal = CODE, pending_literal, None
        if block_kind is not None:
            if indent > block_indent:
                add(block_kind, s)
                continue
            block_kind = None
        joinable_before, joinable = joinable, False
        if doctest or s.startswith(">>>"):
            doctest = True
            add(CODE, s)
        elif s.startswith("```") or s.startswith("~~~") and not s.startswith("~~~~"):
            fence = s[:3]
            add(CODE, s)
        elif s == ".." or s.startswith((".. ", "..\t")):
            directive = _DIRECTIVE.match(s)
            name = directive.group(1).split(":")[-1] if directive else None
            section += directive is not None
            if name is None or name in _MARKUP_DIRECTIVES:  # comment, target or list body
                block_kind, block_indent = MARKUP, indent
            elif name in _CODE_DIRECTIVES:
                block_kind, block_indent = CODE, indent
            add(MARKUP, s)
        elif s == "::":
            pending_literal = indent
            add(MARKUP, s)
        elif _is_adornment(s) or _is_table(s) or s == "|":
            last = units[-1] if units else None
            if last is not None and last.kind == PROSE and last.paragraph == paragraph:
                section += 1
                units[-1] = Unit(HEADING, last.text, last.paragraph, section)
            add(MARKUP, s)
        else:
            kind = _kind_of(s)
            if s.endswith("::"):
                pending_literal = indent
                s = s[:-1]
                kind = PROSE if kind == CODE else kind
            if kind == PROSE and joinable_before:
                last = units[-1]
                units[-1] = Unit(last.kind, f"{last.text} {s}", last.paragraph, last.section)
            else:
                add(kind, s)
            joinable = kind in TEXT_KINDS and len(s) >= WRAP_MIN and not s.endswith(_TERMINAL)
    return units


def _is_chrome(unit: Unit) -> bool:
    return (unit.kind == PROSE and not unit.text.endswith(_TERMINAL)
            and len(unit.text.split()) <= CHROME_MAX_WORDS)


def text_units(units: list[Unit]) -> list[Unit]:
    """Prose and list units, without the page chrome: the runs of short unpunctuated prose
    lines (``Prev``, ``Next``, ``Download the ebook``, a site title) that open and close a
    page, which an HTML extractor such as trafilatura would have dropped."""
    text = [u for u in units if u.kind in TEXT_KINDS]
    start, end = 0, len(text)
    while start < end and _is_chrome(text[start]):
        start += 1
    while end > start and _is_chrome(text[end - 1]):
        end -= 1
    return text[start:end]


def prose_text(units: list[Unit]) -> str:
    """Text units (from :func:`text_units`) joined by newlines, paragraphs by blank lines.
    The Gopher and FineWeb rules measure this text when ``markup_aware`` is on."""
    paragraphs: list[list[str]] = []
    last = None
    for unit in units:
        if unit.paragraph != last:
            paragraphs.append([])
            last = unit.paragraph
        paragraphs[-1].append(unit.text)
    return "\n\n".join("\n".join(p) for p in paragraphs)
