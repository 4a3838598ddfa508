"""Gopher repetition rules (Rae et al. 2021, table A1), vectorised with numpy.

Evaluation order: duplicate_paragraph_fraction, duplicate_paragraph_char_fraction,
duplicate_line_fraction, duplicate_line_char_fraction, top_<n>gram_char_fraction (n ascending),
duplicate_<n>gram_char_fraction (n ascending). Character fractions are relative to the analysed
text. N-grams are over words (see :mod:`curation.filters.text_stats`); their character length
is the words' lengths plus one separator between consecutive words. With markup-aware
filtering, repeats count only within a section (an API entry, a headed section): see
:mod:`curation.filters.text_stats`. The top n-gram rules stay document-wide.

Word n-grams are identified exactly (no hashing): the id of an n-gram at position i is the
rank of the pair (id of the (n-1)-gram at i, id of word i+n-1), computed with one sort per n.
"""

from __future__ import annotations

from itertools import count

import numpy as np

from curation.filters.config import GopherRepetitionConfig
from curation.filters.decision import Decision
from curation.filters.text_stats import TextStats

PREFIX = "gopher_repetition."
_LINE_PARA_RULES = (
    "duplicate_paragraph_fraction",
    "duplicate_paragraph_char_fraction",
    "duplicate_line_fraction",
    "duplicate_line_char_fraction",
)


def rule_names(cfg: GopherRepetitionConfig) -> list[str]:
    """Enabled rule names, in evaluation order."""
    if not cfg.enabled:
        return []
    names = [PREFIX + r for r in _LINE_PARA_RULES if getattr(cfg, r).action != "off"]
    if cfg.top_ngram_char_fraction.action != "off":
        ns = sorted(cfg.top_ngram_char_fraction.max_fraction_by_n)
        names += [f"{PREFIX}top_{n}gram_char_fraction" for n in ns]
    if cfg.duplicate_ngram_char_fraction.action != "off":
        ns = sorted(cfg.duplicate_ngram_char_fraction.max_fraction_by_n)
        names += [f"{PREFIX}duplicate_{n}gram_char_fraction" for n in ns]
    return names


class WordNgrams:
    """Exact n-gram ids over a word list, built incrementally and cached per n."""

    def __init__(self, words: list[str], sections: list[int] | None = None) -> None:
        # id of a word = position of its first occurrence (distinct, not dense; < n_words)
        index: dict[str, int] = {}
        ids = list(map(index.setdefault, words, count()))
        self.n_words = len(ids)
        self._word_ids = np.asarray(ids, dtype=np.int64)
        self._vocab = max(self.n_words, 1)
        lens = np.fromiter(map(len, words), dtype=np.int64, count=len(words))
        self.word_lens = lens
        # section of each word: a repeat counts only within its section (None: one section)
        self._sections = None if sections is None or len(set(sections)) < 2 else np.asarray(
            sections, dtype=np.int64)
        self._cum = np.concatenate(([0], np.cumsum(lens)))
        # n -> (group id per start position, first-occurrence positions, number of groups)
        self._cache: dict[int, tuple[np.ndarray, np.ndarray, int]] = {}
        if self.n_words:
            first = np.unique(self._word_ids, return_index=True)[1]
            self._cache[1] = (self._word_ids, first, len(index))

    def groups(self, n: int) -> tuple[np.ndarray, np.ndarray, int] | None:
        """(group ids, first-occurrence start positions, group count) or None if too short."""
        if n > self.n_words:
            return None
        if n in self._cache:
            return self._cache[n]
        k = max(m for m in self._cache if m < n)
        for step in range(k + 1, n + 1):
            prev_ids, _, prev_count = self._cache[step - 1]
            m = len(prev_ids) - 1
            if prev_count == len(prev_ids):  # no repeated (n-1)-gram -> no repeated n-gram
                unique = np.arange(m, dtype=np.int64)
                self._cache[step] = (unique, unique, m)
                continue
            key = prev_ids[:-1] * self._vocab + self._word_ids[step - 1 :]
            _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
            self._cache[step] = (inverse.reshape(-1), first, len(first))
        return self._cache[n]

    def char_lens(self, n: int) -> np.ndarray:
        """Characters of the n-gram starting at each position (words plus separators)."""
        cum = self._cum
        return cum[n:] - cum[: len(cum) - n] + (n - 1)

    def top_chars(self, n: int) -> int:
        """Characters in all occurrences of the most frequent n-gram (0 if none repeats)."""
        grouped = self.groups(n)
        if grouped is None or grouped[2] == len(grouped[0]):
            return 0
        ids = grouped[0]
        counts = np.bincount(ids)
        top = int(counts.max())
        starts = np.flatnonzero(counts[ids] == top)
        return top * int(self.char_lens(n)[starts].max())

    def duplicate_chars(self, n: int) -> int:
        """Characters covered by non-first occurrences of n-grams, overlaps counted once."""
        grouped = self.groups(n)
        if grouped is None or grouped[2] == len(grouped[0]):
            return 0
        ids, first, _ = grouped
        if self._sections is not None:
            span = int(self._sections.max()) + 1
            first = np.unique(ids * span + self._sections[: len(ids)], return_index=True)[1]
        is_dup = np.ones(len(ids), dtype=bool)
        is_dup[first] = False
        starts = np.flatnonzero(is_dup)
        size = self.n_words + 1
        delta = np.bincount(starts, minlength=size) - np.bincount(starts + n, minlength=size)
        covered = np.cumsum(delta)[: self.n_words] > 0
        separators = int(np.count_nonzero(covered[:-1] & covered[1:]))
        return int(self.word_lens[covered].sum()) + separators


def apply(doc: TextStats, cfg: GopherRepetitionConfig, decision: Decision) -> bool:
    """Evaluate the enabled rules; returns True as soon as one removes the document."""
    n_chars = max(len(doc.analysed), 1)
    checks = (
        ("duplicate_paragraph_fraction", lambda: _fraction(doc.paragraph_duplicates[0],
                                                           len(doc.paragraphs))),
        ("duplicate_paragraph_char_fraction", lambda: doc.paragraph_duplicates[1] / n_chars),
        ("duplicate_line_fraction", lambda: _fraction(doc.line_duplicates[0], len(doc.lines))),
        ("duplicate_line_char_fraction", lambda: doc.line_duplicates[1] / n_chars),
    )
    for name, measure in checks:
        rule = getattr(cfg, name)
        if rule.action == "off":
            continue
        value = measure()
        if decision.record(PREFIX + name, rule.action, value, value > rule.max_value):
            return True

    ngrams: WordNgrams | None = None
    for kind, rule in (("top", cfg.top_ngram_char_fraction),
                       ("duplicate", cfg.duplicate_ngram_char_fraction)):
        if rule.action == "off":
            continue
        for n in sorted(rule.max_fraction_by_n):
            if ngrams is None:
                ngrams = WordNgrams(doc.words, doc.word_sections)
            chars = ngrams.top_chars(n) if kind == "top" else ngrams.duplicate_chars(n)
            value = chars / n_chars
            limit = rule.max_fraction_by_n[n]
            if decision.record(f"{PREFIX}{kind}_{n}gram_char_fraction", rule.action, value,
                               value > limit):
                return True
    return False


def _fraction(part: int, whole: int) -> float:
    return part / whole if whole else 0.0
