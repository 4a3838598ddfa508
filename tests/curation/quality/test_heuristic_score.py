"""The heuristic quality score measures text quality, not length: garbage of any length scores
below a clean real paragraph, and length beyond 2k characters changes little."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import pytest

from curation.quality.heuristic_score import components, heuristic_quality, length_factor, measures

SAMPLE_BOOKS = Path(__file__).resolve().parents[3] / "data" / "sample" / "books.jsonl.gz"
CONSONANTS = "bcdfghjklmnpqrstvwxz"


@pytest.fixture(scope="module")
def paragraphs() -> list[str]:
    """Clean paragraphs of 'Copyright does not exist' (cfi-en) from the bundled sample."""
    if not SAMPLE_BOOKS.is_file():
        pytest.skip("bundled sample not present")
    with gzip.open(SAMPLE_BOOKS, "rt", encoding="utf-8") as fh:
        texts = [r["text"] for r in map(json.loads, fh) if r["source"] == "cfi-en"]
    paras = [" ".join(p.split()) for t in texts for p in t.split("\n\n")]
    return [p for p in paras if 600 <= len(p) <= 1500 and p.count(". ") >= 3][:40]


@pytest.fixture(scope="module")
def clean(paragraphs) -> str:
    return paragraphs[0]


def _consonant_words(n_chars: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    words: list[str] = []
    size = 0
    while size < n_chars:
        words.append("".join(rng.choice(CONSONANTS) for _ in range(rng.randint(2, 12))))
        size += len(words[-1]) + 1
    return " ".join(words)[:n_chars]


def test_clean_paragraph_scores_high(clean):
    assert heuristic_quality(clean) >= 0.9


@pytest.mark.parametrize("n_chars", [300, 2_000, 28_000, 200_000])
def test_random_consonant_words_of_any_length_score_below_a_clean_paragraph(clean, n_chars):
    garbage = _consonant_words(n_chars)
    assert heuristic_quality(garbage) < 0.5 < heuristic_quality(clean)


def test_word_salad_repeated_lines_and_mojibake_score_below_the_clean_paragraph(paragraphs):
    clean = paragraphs[0]
    words = " ".join(paragraphs[:3]).split()
    random.Random(1).shuffle(words)
    salad = " ".join(words)
    repeated = "\n".join([paragraphs[0][:80]] * 30)
    mojibake = clean.encode("utf-8").decode("latin-1").replace("e", "Ã©")
    replaced = clean.replace("a", "\ufffd")
    symbols = " ".join(["#### ==== **** ---- |||| ~~~~ >>>> <<<<"] * 30)
    best = heuristic_quality(clean)
    for name, text in [("salad", salad), ("repeated", repeated), ("mojibake", mojibake),
                       ("replacement chars", replaced), ("symbols", symbols)]:
        assert heuristic_quality(text) < best - 0.2, name


def test_length_beyond_2k_changes_little(paragraphs):
    text = "\n\n".join(paragraphs)
    assert len(text) > 20_000
    scores = [heuristic_quality(text[:n]) for n in (2_000, 5_000, 20_000)]
    assert max(scores) - min(scores) <= 0.05
    assert length_factor(2_000) == length_factor(2_000_000) == 1.0


def test_short_snippets_score_lower_than_the_same_text_at_full_length(clean):
    snippet = clean[:120]
    assert heuristic_quality(snippet) < heuristic_quality(clean)
    assert heuristic_quality(snippet) >= 0.6  # a penalty, not a verdict


def test_odd_input_never_raises_and_stays_in_range():
    rng = random.Random(0)
    odd = ["", "   \n\t", "\x00" * 500, "\ud800 lone surrogate", "a" * 300_000, "\n" * 10_000,
           "".join(chr(rng.randrange(1, 0xD7FF)) for _ in range(5_000)), "é" * 100, "x"]
    for text in odd:
        score = heuristic_quality(text)
        assert 0.0 <= score <= 1.0
        assert score == heuristic_quality(text)  # deterministic
    assert heuristic_quality("") == 0.0


def test_components_name_the_symptom(clean):
    assert components(_consonant_words(5_000))["word_shape"] == 0.0
    assert components("\n".join(["the same line of text again"] * 20))["unique_lines"] == 0.0
    assert all(v == 1.0 for k, v in components(clean).items() if k != "stop_words")


def _reference_measures(t: str) -> dict[str, int]:
    """The score's counts written plainly (regexes and str methods, no fast paths)."""
    import re
    from collections import Counter

    from curation.quality import heuristic_score as h

    words = Counter(re.findall(r"[^\W\d_]+", t))
    lines = [s for s in (ln.strip() for ln in t.splitlines()) if len(s) >= 10]
    return {"words": words.total(),
            "implausible": sum(c for w, c in words.items() if not h._plausible(w)),
            "stop_words": sum(c for w, c in words.items() if w.lower() in h._STOP_WORDS),
            "visible": sum(map(len, t.split())), "alnum": sum(map(str.isalnum, t)),
            "lines": len(lines), "distinct_lines": len(set(lines)),
            "mojibake": sum(t.count(m) for m in h._MOJIBAKE)}


def test_fast_paths_count_what_the_plain_definitions_count(paragraphs):
    """ASCII bytes, mostly-ASCII (only non-letters outside ASCII) and general Unicode text:
    each fast path counts exactly what the plain definitions count."""
    texts = [*paragraphs[:10],
             paragraphs[1].replace(". ", ". \u201cQuoted\u201d \u00a9 2024 \u2014 ", 5),
             "The THE tHe ThE of OF. Which WHICH. These THESE? ok. " * 20,
             "Stra\u00dfe und Gr\u00fc\u00dfe. \u0130stanbul is big. \u212a is Kelvin. " * 10,
             "\u00c3\u00a9\u00c3\u00a8\u00e2\u20ac\u2122 \u00c2\u00b7\u00ef\u00bb\u00bf\ufffd "
             "\u00c3 \u00c3 \u00c2\u00c2 x \u00bd \u00b2 \u0663 \U0001d7d8 \u216b" * 30,
             "line one is long enough\n\x0bline one is long enough\x1c  tail text here\u2028x",
             "", "   \n  ", "12345 67890"]
    for t in texts:
        assert measures(t) == _reference_measures(t), t[:60]
