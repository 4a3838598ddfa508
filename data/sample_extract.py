"""Pure text-extraction functions used by build_sample.py.

Kept apart from the download/unpack code so they can be tested on small inline
fixtures without network or Debian packages.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from html import unescape
from html.parser import HTMLParser

MAX_DOC_BYTES = 200_000

_BLOCK_TAGS = frozenset(
    "address article aside blockquote body br dd div dl dt figcaption figure footer form "
    "h1 h2 h3 h4 h5 h6 header hr li main nav ol p pre section table tbody td tfoot th thead "
    "title tr ul".split()
)
_SKIP_TAGS = frozenset({"script", "style", "noscript", "template", "svg"})


class _TextCollector(HTMLParser):
    """Collects visible text; block elements become line breaks, <pre> keeps its spacing."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip_depth = 0
        self._pre_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP_TAGS:
            self._skip_depth += 1
        elif tag == "pre":
            self._pre_depth += 1
            self.parts.append("\n")
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS:
            self._skip_depth = max(0, self._skip_depth - 1)
        elif tag == "pre":
            self._pre_depth = max(0, self._pre_depth - 1)
            self.parts.append("\n")
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self._skip_depth:
            return
        if self._pre_depth:
            self.parts.append(data.replace("\n", "\x00"))  # protect from whitespace folding
        else:
            self.parts.append(re.sub(r"\s+", " ", data))


def normalize_whitespace(text: str) -> str:
    """Strip trailing spaces per line and fold runs of blank lines to one blank line."""
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    text = "\n".join(lines)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip("\n") + "\n" if text.strip() else ""


def html_to_text(html: str) -> str:
    """Visible text of an HTML page (navigation boilerplate included, on purpose)."""
    parser = _TextCollector()
    parser.feed(html)
    parser.close()
    raw = "".join(parser.parts)
    lines = [line.strip(" ") for line in raw.split("\n")]
    return normalize_whitespace("\n".join(lines).replace("\x00", "\n"))


def _strip_balanced(text: str, open_: str, close: str) -> str:
    """Remove (possibly nested) open_ ... close spans, e.g. wiki templates {{ ... }}."""
    out: list[str] = []
    depth = 0
    i = 0
    n = len(text)
    while i < n:
        if text.startswith(open_, i):
            depth += 1
            i += len(open_)
        elif depth and text.startswith(close, i):
            depth -= 1
            i += len(close)
        else:
            if not depth:
                out.append(text[i])
            i += 1
    return "".join(out)


_WIKI_DROP_NS = r"(?:(?i:File|Image|Category|Media)|[a-z]{2,3}(?:-[a-z]+)*):"
_WIKI_DROP_LINK = re.compile(r"\[\[" + _WIKI_DROP_NS + r"[^\[\]]*\]\]")
_WIKI_LABELLED = re.compile(r"\[\[(?!" + _WIKI_DROP_NS + r")([^\[\]|]*)\|([^\[\]]*)\]\]")
_WIKI_PLAIN = re.compile(r"\[\[(?!" + _WIKI_DROP_NS + r"):?([^\[\]|]*)\]\]")
_WIKI_TEMPLATE_TEXT = {"{{ndash}}": "\u2013", "{{mdash}}": "\u2014", "{{snd}}": " \u2013 ",
                       "{{spaced ndash}}": " \u2013 ", "{{nbsp}}": " "}


def _resolve_links(text: str) -> str:
    """[[target|label]] -> label, [[target]] -> target; File/Category/interlanguage links
    (whose captions may hold nested links) are dropped. Innermost links go first."""
    prev = None
    while prev != text:
        prev = text
        text = _WIKI_LABELLED.sub(r"\2", text)
        text = _WIKI_PLAIN.sub(r"\1", text)
        text = _WIKI_DROP_LINK.sub("", text)
    return text


def wikitext_to_text(wikitext: str) -> str:
    """Plain text of a MediaWiki article: templates, tables, refs and markup removed."""
    text = unescape(wikitext)
    text = re.sub(r"<!--.*?-->", "", text, flags=re.S)
    text = re.sub(r"<ref[^>/]*/>", "", text)
    text = re.sub(r"<ref[^>]*>.*?</ref>", "", text, flags=re.S)
    for template, replacement in _WIKI_TEMPLATE_TEXT.items():
        text = text.replace(template, replacement)
    text = _strip_balanced(text, "{{", "}}")
    text = _strip_balanced(text, "{|", "|}")
    text = _resolve_links(text)
    text = re.sub(r"\[https?://[^\s\]]+ ([^\]]*)\]", r"\1", text)
    text = re.sub(r"\[https?://[^\]]*\]", "", text)
    text = re.sub(r"</?[A-Za-z][^>]*>", "", text)
    text = re.sub(r"'{2,}", "", text)
    text = re.sub(r"^(=+)\s*(.*?)\s*\1\s*$", r"\2", text, flags=re.M)
    text = re.sub(r"^[*#:;]+\s*", "", text, flags=re.M)
    text = re.sub(r"__[A-Z]+__", "", text)
    # the dump's XML escaping is undone above; wikitext has its own entities (&nbsp;)
    return normalize_whitespace(unescape(text).replace("\u00a0", " "))


_WIKI_PAGE = re.compile(r"<page>(.*?)</page>", re.S)
_WIKI_TITLE = re.compile(r"<title>(.*?)</title>", re.S)
_WIKI_NS = re.compile(r"<ns>(\d+)</ns>")
_WIKI_TEXT = re.compile(r"<text[^>]*>(.*?)</text>", re.S)


def iter_wiki_pages(xml: str) -> Iterator[tuple[str, str]]:
    """(title, plain text) for each main-namespace page of a MediaWiki XML dump."""
    for match in _WIKI_PAGE.finditer(xml):
        page = match.group(1)
        ns = _WIKI_NS.search(page)
        if ns is not None and ns.group(1) != "0":
            continue
        title = _WIKI_TITLE.search(page)
        body = _WIKI_TEXT.search(page)
        if title is None or body is None:
            continue
        name = unescape(title.group(1)).strip()
        text = wikitext_to_text(body.group(1))
        if text:
            yield name, f"{name}\n\n{text}"


def split_text(text: str, max_bytes: int = MAX_DOC_BYTES) -> list[str]:
    """Split text into parts of at most max_bytes UTF-8 bytes, at paragraph, then line breaks.

    A single line longer than max_bytes is cut at a character boundary.
    """
    if len(text.encode("utf-8")) <= max_bytes:
        return [text]
    parts: list[str] = []
    current: list[str] = []
    size = 0
    for piece in _pieces(text, max_bytes):
        n = len(piece.encode("utf-8"))
        if current and size + n > max_bytes:
            parts.append("".join(current))
            current, size = [], 0
        current.append(piece)
        size += n
    if current:
        parts.append("".join(current))
    return parts


def _pieces(text: str, max_bytes: int) -> Iterator[str]:
    """Paragraphs (with their trailing newlines), falling back to lines, then to characters."""
    for para in re.split(r"(?<=\n\n)", text):
        if len(para.encode("utf-8")) <= max_bytes:
            yield para
            continue
        for line in para.splitlines(keepends=True):
            while len(line.encode("utf-8")) > max_bytes:
                cut = max_bytes // 4  # a UTF-8 character is at most 4 bytes
                yield line[:cut]
                line = line[cut:]
            yield line


_BIBLE_VERSE = re.compile(r"^([1-3]?[A-Za-z]+)(\d+):(\d+) (.*)$")


def group_bible_books(verses_text: str) -> list[tuple[str, str]]:
    """Group `bible -f` output (one 'Ge1:1 text' verse per line) into (book, text) pairs.

    Each book's text has a heading per chapter, so a book reads like a printed book.
    """
    books: list[tuple[str, list[str]]] = []
    chapter = None
    for lineno, line in enumerate(verses_text.splitlines(), 1):
        if not line.strip():
            continue
        m = _BIBLE_VERSE.match(line)
        if m is None:
            raise ValueError(f"bible output line {lineno} is not 'BookC:V text': {line[:60]!r}")
        book, chap, verse, words = m.groups()
        if not books or books[-1][0] != book:
            books.append((book, []))
            chapter = None
        if chap != chapter:
            books[-1][1].append(f"\nChapter {chap}\n\n")
            chapter = chap
        books[-1][1].append(f"{verse} {words}\n")
    return [(book, "".join(lines).lstrip("\n")) for book, lines in books]


_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def dictd_number(code: str) -> int:
    """Decode a dictd index number (base64 digits, most significant first)."""
    value = 0
    for ch in code:
        digit = _B64.find(ch)
        if digit < 0:
            raise ValueError(f"invalid dictd base64 digit {ch!r} in {code!r}")
        value = value * 64 + digit
    return value


def parse_dictd_index(index_text: str) -> list[tuple[str, int, int]]:
    """(headword, offset, length) rows of a dictd .index file, one entry per distinct span,
    in file order (several headwords can point at one entry; the first one names it)."""
    seen: dict[tuple[int, int], str] = {}
    for lineno, line in enumerate(index_text.splitlines(), 1):
        fields = line.split("\t")
        if len(fields) < 3:
            raise ValueError(f"dictd index line {lineno}: expected 3 tab-separated fields")
        span = (dictd_number(fields[1]), dictd_number(fields[2]))
        seen.setdefault(span, fields[0])
    return sorted(((head, off, length) for (off, length), head in seen.items()),
                  key=lambda row: row[1])
