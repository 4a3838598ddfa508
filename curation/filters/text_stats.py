"""Shared, lazily computed splits of one document (lines, paragraphs, tokens, words).

Every rule set reads the same :class:`TextStats`, so a document is split at most once per kind
however many rules look at it. Definitions (chosen to be cheap and language-agnostic, no NLTK):

* *analysed text*: the first ``max_analysis_chars`` characters (bounds work on huge texts);
  with ``markup_aware``, only its prose and list units (:mod:`curation.filters.structure`):
  code, markup and headings are set aside and hard-wrapped paragraphs are joined.
* *lines*: stripped, non-blank lines (blank lines would otherwise count as duplicates/short).
* *paragraphs*: stripped, non-blank blocks separated by blank lines.
* *tokens*: whitespace-separated tokens; *words*: tokens with punctuation stripped from both
  ends, dropping tokens that were punctuation only.
* *sections*: with ``markup_aware``, headings and reST directives start a new section, and a
  line, paragraph or word n-gram counts as repeated only when it occurred earlier *in the same
  section*. API references repeat a formula in every entry ("Return 0 on success, -1 on
  failure."); boilerplate and spam repeat within one stretch of text. Without markup the whole
  text is one section, as in the published rules.
"""

from __future__ import annotations

import re
import string
from functools import cached_property
from itertools import filterfalse, repeat

from curation.filters.structure import Unit, classify, prose_text, text_units

PUNCTUATION = string.punctuation + "“”‘’«»„‚…–—·•¡¿"
_PARAGRAPH_BREAK = re.compile(r"\n[ \t\r\f\v]*\n\s*")
_HAS_ALPHA = re.compile(r"[^\W\d_]")
_COUNT_CHUNK = 1 << 20


def count_tokens(text: str) -> int:
    """Exact whitespace-token count in 1 MiB chunks (no giant token list for huge texts)."""
    if len(text) <= _COUNT_CHUNK:
        return len(text.split())
    total = 0
    prev_last_is_space = True
    for start in range(0, len(text), _COUNT_CHUNK):
        chunk = text[start : start + _COUNT_CHUNK]
        total += len(chunk.split())
        if not prev_last_is_space and not chunk[0].isspace():
            total -= 1  # one token straddles the chunk boundary and was counted twice
        prev_last_is_space = chunk[-1].isspace()
    return total


def duplicate_counts(items: list[str], sections: list[int] | None = None) -> tuple[int, int]:
    """(number of items equal to an earlier item of the same section, total characters of
    those repeats); ``sections[i]`` is the section of ``items[i]`` (None: one section)."""
    seen: set[object] = set()
    dup_items = 0
    dup_chars = 0
    keys = items if sections is None else zip(sections, items, strict=True)
    for item, key in zip(items, keys, strict=True):
        if key in seen:
            dup_items += 1
            dup_chars += len(item)
        else:
            seen.add(key)
    return dup_items, dup_chars


class TextStats:
    """Lazily computed views of one document; each property is computed once."""

    def __init__(self, text: str, max_analysis_chars: int, markup_aware: bool = False) -> None:
        self.text = text
        self.markup_aware = markup_aware
        self.truncated = len(text) > max_analysis_chars
        prefix = text[:max_analysis_chars] if self.truncated else text
        self.prefix = prefix  # the analysed characters before any markup is set aside

    @cached_property
    def _units(self) -> list[Unit] | None:
        return classify(self.prefix) if self.markup_aware else None

    @cached_property
    def _text_units(self) -> list[Unit] | None:
        return text_units(self._units) if self._units is not None else None

    @cached_property
    def analysed(self) -> str:
        """The text the Gopher and FineWeb rules measure (see the module docstring); computed
        on first use, so rule sets that read only ``prefix`` (code) never classify lines."""
        units = self._text_units
        return prose_text(units) if units is not None else self.prefix

    @cached_property
    def c4_lines(self) -> list[str]:
        """Lines C4 walks, over the whole text: the physical lines, or with ``markup_aware``
        the prose and list units (code blocks and markup are skipped, wrapped lines joined)."""
        if not self.markup_aware:
            return self.text.splitlines()
        units = self._units if not self.truncated and self._units is not None else classify(
            self.text)
        return [u.text for u in text_units(units)]

    @cached_property
    def lines(self) -> list[str]:
        if self._text_units is not None:
            return [u.text for u in self._text_units]
        return [s for s in (line.strip() for line in self.analysed.splitlines()) if s]

    @cached_property
    def line_sections(self) -> list[int] | None:
        """Section of each line (None: the whole text is one section)."""
        return None if self._text_units is None else [u.section for u in self._text_units]

    @cached_property
    def paragraphs(self) -> list[str]:
        return [s for s in (p.strip() for p in _PARAGRAPH_BREAK.split(self.analysed)) if s]

    @cached_property
    def paragraph_sections(self) -> list[int] | None:
        """Section of each paragraph's first line (None: one section)."""
        if self._text_units is None:
            return None
        firsts, last = [], None
        for unit in self._text_units:
            if unit.paragraph != last:
                firsts.append(unit.section)
                last = unit.paragraph
        return firsts

    @cached_property
    def word_sections(self) -> list[int] | None:
        """Section of each word (None: one section)."""
        if self._text_units is None:
            return None
        out: list[int] = []
        strip = PUNCTUATION
        for unit in self._text_units:
            n = sum(1 for tok in unit.text.split() if tok.strip(strip))
            out += [unit.section] * n
        return out

    @cached_property
    def tokens(self) -> list[str]:
        return self.analysed.split()

    @cached_property
    def words(self) -> list[str]:
        tokens = self.tokens
        return list(filter(None, map(str.strip, tokens, repeat(PUNCTUATION, len(tokens)))))

    @cached_property
    def n_words_total(self) -> int:
        """Word count over the whole text; estimated from the analysed prefix's word/token
        ratio when truncated (tokens are counted exactly)."""
        if not self.truncated:
            return len(self.words)
        n_tokens = len(self.tokens)
        if n_tokens == 0:
            return 0
        return round(count_tokens(self.text) * len(self.words) / n_tokens)

    @cached_property
    def n_alphabetic_words(self) -> int:
        words = self.words
        search = _HAS_ALPHA.search
        mixed = list(filterfalse(str.isalpha, words))  # usually few: numbers, 'e.g', 'x86'
        return len(words) - len(mixed) + sum(1 for w in mixed if search(w) is not None)

    @cached_property
    def line_duplicates(self) -> tuple[int, int]:
        return duplicate_counts(self.lines, self.line_sections)

    @cached_property
    def paragraph_duplicates(self) -> tuple[int, int]:
        return duplicate_counts(self.paragraphs, self.paragraph_sections)
