"""Gopher repetition rules on crafted pages, and the vectorised n-gram counts against a
brute-force reference."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from curation.filters import FilterConfig, evaluate_one
from curation.filters.gopher_repetition import WordNgrams

RULE = "gopher_repetition."
NEWSLETTER = (
    "Subscribe to our newsletter to get the latest stories delivered to your inbox every "
    "morning, and follow us on social media for updates."
)


def _brute_top_chars(words: list[str], n: int) -> int:
    grams = [" ".join(words[i : i + n]) for i in range(len(words) - n + 1)]
    if not grams:
        return 0
    counts = Counter(grams)
    top = max(counts.values())
    if top < 2:
        return 0
    return top * max(len(g) for g, c in counts.items() if c == top)


def _brute_duplicate_chars(words: list[str], n: int) -> int:
    seen: set[tuple[str, ...]] = set()
    covered = [False] * len(words)
    for i in range(len(words) - n + 1):
        gram = tuple(words[i : i + n])
        if gram in seen:
            for j in range(i, i + n):
                covered[j] = True
        seen.add(gram)
    chars = sum(len(w) for w, c in zip(words, covered, strict=True) if c)
    return chars + sum(1 for a, b in zip(covered, covered[1:], strict=False) if a and b)


def test_ngram_counts_match_brute_force():
    rng = random.Random(7)
    vocab = ["the", "a", "free", "software", "license", "copies", "x", "GNU"]
    for trial in range(60):
        words = [rng.choice(vocab[: 2 + trial % 7]) for _ in range(rng.randrange(0, 40))]
        ngrams = WordNgrams(words)
        for n in range(1, 11):
            assert ngrams.top_chars(n) == _brute_top_chars(words, n), (words, n)
            assert ngrams.duplicate_chars(n) == _brute_duplicate_chars(words, n), (words, n)


def test_real_prose_passes(prose, paragraphs):
    for text in (prose, "\n\n".join(paragraphs)):
        assert evaluate_one(text, "web", FilterConfig()).removed_by is None


def test_repeated_boilerplate_paragraph_fires_paragraph_rule(only, paragraphs):
    page = "\n\n".join(p for para in paragraphs[:6] for p in (para, NEWSLETTER))
    result = evaluate_one(page, "web", only("gopher_repetition"))
    assert result.removed_by == RULE + "duplicate_paragraph_fraction"
    assert result.stats[RULE + "duplicate_paragraph_fraction"] == pytest.approx(5 / 12)


def test_long_repeated_paragraph_fires_char_rule(only, paragraphs):
    longest = max(paragraphs, key=len)
    page = "\n\n".join([*paragraphs, longest, longest])  # 2 of 13 paragraphs repeat: 0.15
    cfg = only("gopher_repetition", "duplicate_paragraph_char_fraction")
    assert evaluate_one(page, "web", cfg).removed_by == RULE + "duplicate_paragraph_char_fraction"
    cfg = only("gopher_repetition", "duplicate_paragraph_fraction")
    assert evaluate_one(page, "web", cfg).removed_by is None


def test_repeated_lines_fire_line_rules(only, paragraphs):
    page = "\n".join(p for para in paragraphs[:5] for p in (para, NEWSLETTER, "Share this."))
    cfg = only("gopher_repetition", "duplicate_line_fraction")
    assert evaluate_one(page, "web", cfg).removed_by == RULE + "duplicate_line_fraction"
    longest = max(paragraphs, key=len)
    page = "\n".join([*paragraphs, longest, longest])
    cfg = only("gopher_repetition", "duplicate_line_char_fraction")
    assert evaluate_one(page, "web", cfg).removed_by == RULE + "duplicate_line_char_fraction"


def test_keyword_stuffing_fires_top_2gram(only, paragraphs):
    stuffing = " ".join(["cheap flights"] * 120)
    page = "\n\n".join([paragraphs[1], f"Book {stuffing} today.", paragraphs[2]])
    result = evaluate_one(page, "web", only("gopher_repetition", "top_ngram_char_fraction"))
    assert result.removed_by == RULE + "top_2gram_char_fraction"


def test_sentence_reused_across_lines_fires_duplicate_ngrams(only, paragraphs):
    # the same long clause inside otherwise different lines: no duplicate line, many 5..10-grams
    clause = "you have the freedom to distribute copies of free software and change it"
    page = "\n".join(f"In section {i}, {clause}; see note {i}." for i in range(30))
    cfg = only("gopher_repetition", "duplicate_ngram_char_fraction")
    assert evaluate_one(page, "web", cfg).removed_by == RULE + "duplicate_5gram_char_fraction"
    assert evaluate_one(page, "web", only("gopher_repetition", "duplicate_line_fraction")).kept
    # with the 5..9-gram rules dropped the 10-gram rule still catches it
    cfg = only("gopher_repetition", "duplicate_ngram_char_fraction",
               duplicate_ngram_char_fraction={"max_fraction_by_n": {10: 0.10}})
    assert evaluate_one(page, "web", cfg).removed_by == RULE + "duplicate_10gram_char_fraction"
