"""Shared, lazily computed splits of one document (lines, paragraphs, tokens, words).

Every rule set reads the same :class:`TextStats`, so a document is split at most once per kind
however many rules look at it. Definitions (chosen to be cheap and language-agnostic, no NLTK):

* *analysed text*: the first ``max_analysis_chars`` characters (bounds work on huge texts).
* *lines*: stripped, non-blank lines (blank lines would otherwise count as duplicates/short).
* *paragraphs*: stripped, non-blank blocks separated by blank lines.
* *tokens*: whitespace-separated tokens; *words*: tokens with punctuation stripped from both
  ends, dropping tokens that were punctuation only.
"""

from __future__ import annotations

import re
import string
from functools import cached_property
from itertools import filterfalse, repeat

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


def duplicate_counts(items: list[str]) -> tuple[int, int]:
    """(number of items equal to an earlier item, total characters of those repeats)."""
    seen: set[str] = set()
    dup_items = 0
    dup_chars = 0
    for item in items:
        if item in seen:
            dup_items += 1
            dup_chars += len(item)
        else:
            seen.add(item)
    return dup_items, dup_chars


class TextStats:
    """Lazily computed views of one document; each property is computed once."""

    def __init__(self, text: str, max_analysis_chars: int) -> None:
        self.text = text
        self.truncated = len(text) > max_analysis_chars
        self.analysed = text[:max_analysis_chars] if self.truncated else text

    @cached_property
    def lines(self) -> list[str]:
        return [s for s in (line.strip() for line in self.analysed.splitlines()) if s]

    @cached_property
    def paragraphs(self) -> list[str]:
        return [s for s in (p.strip() for p in _PARAGRAPH_BREAK.split(self.analysed)) if s]

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
        return duplicate_counts(self.lines)

    @cached_property
    def paragraph_duplicates(self) -> tuple[int, int]:
        return duplicate_counts(self.paragraphs)
