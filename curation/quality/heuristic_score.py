"""A cheap, domain-agnostic document quality score in [0, 1] that measures the text, not its size.

An interim signal until the fastText and KenLM models land: it orders keepers within a
duplicate cluster and seeds ``quality_bucket`` for the mixture planner. The previous version
rewarded length (28k characters of random consonant strings scored 1.0, a clean paragraph
0.84); here length is only a penalty for snippets, and the score is driven by symptoms of bad
text, each mapped to [0, 1]:

* ``word_shape``: share of words that look like words (letters only; a vowel when 3+ ASCII
  letters long; at most 20 letters; no run of 6 consonants). Random strings, base64 and hashes
  fail it.
* ``stop_words``: share of common English function words, mapped softly (no function words
  halves this component, it does not zero it): prose needs them, word salad and keyword lists
  lack them, code and other languages lose a little.
* ``sentence_form``: after a sentence end (``. ! ?`` then a space), the next word starts with a
  capital, a digit, a quote or a bracket. Shuffled words break this; text with fewer than three
  sentence ends is not judged (1.0).
* ``symbols``: letters and digits among the non-space characters (symbol soup, ASCII art).
* ``unique_lines``: lines of 10+ characters that are not repeats (menus, spam, boilerplate).
* ``clean_encoding``: no U+FFFD and no UTF-8-read-as-Latin-1 sequences (``Ã©``, ``â€™``).

The score is a weighted geometric mean of the components, so one bad symptom pulls it down
however good the rest is, times a length factor that rises from 0.6 (a few characters) to 1.0
at 1,000 characters and stays there. Deterministic, linear-time, pure Python; never raises.
Speed (it runs on every document of `sharpen curate`): ASCII
text is counted on its bytes with `bytes.translate` (the same values as the character
classes), each distinct word is judged once (remembered per process, looked up with set
operations), stop words are one set intersection with every case spelling, lines are
stripped by C iterators, and the sentence scan is one regex led by its punctuation: about
2.2x the first per-word loops, same scores. `sharpen curate dedup` scores only the
documents of multi-member clusters (`curation/dedup/keeper_quality.py`).
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter

_WORD = re.compile(r"[^\W\d_]+")
_ASCII_LETTERS = bytes(c if c < 128 and chr(c).isalpha() else 0x20 for c in range(256))
_ASCII_SPACE = bytes(c for c in range(128) if chr(c).isspace())
_ASCII_NOT_ALNUM = bytes(c for c in range(128) if not chr(c).isalnum())
# a sentence end closing a token of 3+ characters, capturing the next token's first
# character (the look-behind last: re finds the punctuation by fast scan first)
_SENTENCE_END = re.compile(r"[.!?](?=\s+(\S))(?<=\S\S\S)")
_VOWELS = frozenset("aeiouyAEIOUY")
_STOP_WORDS = frozenset(
    "the of and to a in is that it for as with was on be by are this or from at an which not "
    "have has but can if all will one their they there his her its we you he she were been "
    "so no when what than into more other some these would may also".split())
# every upper/lower-case spelling ("The", "THE", ...): a document's stop words are then one
# set intersection (no str.lower per word); no other character lower-cases to these letters
_STOP_SPELLINGS = frozenset(
    "".join(c.upper() if bit else c for c, bit in zip(w, bits, strict=True))
    for w in _STOP_WORDS for bits in itertools.product((0, 1), repeat=len(w)))
_STOP_BYTES = frozenset(w.encode("ascii") for w in _STOP_SPELLINGS)
_MOJIBAKE = ("\ufffd", "Ã©", "Ã¨", "Ã¤", "Ã¶", "Ã¼", "Ã ", "â€", "Â ", "Â·", "ï»¿", "Ã¡", "Ã³")
# one scan for all of them: no sequence ends with a character another starts with, so the
# non-overlapping matches of the alternation are the sum of each sequence's count
_MOJIBAKE_RE = re.compile("|".join(map(re.escape, _MOJIBAKE)))
_ASCII_BYTES = bytes(range(128))
# every mojibake sequence starts with one of these (non-ASCII) characters
_MOJIBAKE_LEADS = frozenset(m[0] for m in _MOJIBAKE)
_NOT_ASCII_ALNUM = bytes(range(256)).translate(None, bytes(c for c in range(128) if chr(c).isalnum()))
# words of text with non-ASCII letters: the non-ASCII characters that are not letters
# (`\W` or a digit) become spaces, then the UTF-8 bytes are split as the ASCII path does
# (its letters kept, its other characters spaces, bytes of other characters unchanged)
_NON_ASCII_NON_LETTER = re.compile(r"[^\x00-\x7f](?<=[\W\d])")
_UTF8_LETTERS = bytes(c if c >= 128 else _ASCII_LETTERS[c] for c in range(256))
_OPENERS = "\"'“‘([*`<"
_WEIGHTS = {"word_shape": 3.0, "stop_words": 1.0, "sentence_form": 1.0, "symbols": 2.0,
            "unique_lines": 2.0, "clean_encoding": 2.0}
_FLOOR = 0.01
_LENGTH_FULL = 1_000
_LENGTH_MIN_FACTOR = 0.6


def _ramp(value: float, low: float, high: float) -> float:
    """0 at or below ``low``, 1 at or above ``high``, linear in between."""
    if value <= low:
        return 0.0
    if value >= high:
        return 1.0
    return (value - low) / (high - low)


def _plausible(word: str) -> bool:
    if len(word) > 20:
        return False
    if not word.isascii() or len(word) < 3:
        return True  # other scripts and short abbreviations are not judged
    run = 0
    has_vowel = False
    for ch in word:
        if ch in _VOWELS:
            has_vowel = True
            run = 0
        else:
            run += 1
            if run >= 6:
                return False
    return has_vowel


# Per worker process, most words repeat across documents: each distinct word is judged
# once and remembered in one of two sets, so a document's words are looked up with set
# operations in C instead of a Python loop per word.
_GOOD: set[str | bytes] = set()
_BAD: set[str | bytes] = set()
_CACHE_MAX = 1_000_000


def _implausible_words(counts: Counter) -> int:
    """Words failing `_plausible` (`str`, or UTF-8 `bytes` decoded to judge them), counted
    with their repeats."""
    words = counts.keys()
    known_bad = words & _BAD
    bad = sum(map(counts.__getitem__, known_bad))
    unknown = words - _GOOD - known_bad
    room = len(_GOOD) + len(_BAD) < _CACHE_MAX
    for word in unknown:
        ok = _plausible(word if isinstance(word, str) else word.decode("utf-8"))
        if room:
            (_GOOD if ok else _BAD).add(word)
        if not ok:
            bad += counts[word]
    return bad


def _sentence_form(text: str) -> float:
    nexts = _SENTENCE_END.findall(text)
    ends = len(nexts)
    if ends < 3:
        return 1.0
    starts_ok = sum(1 for c in nexts if c.isupper() or c.isdigit() or c in _OPENERS)
    return _ramp(starts_ok / ends, 0.3, 0.85)


def measures(t: str) -> dict[str, int]:
    """The counts the components are made of (exposed so tests can hold each fast path to
    the plain definitions: words and implausible words, stop words, visible and
    alphanumeric characters, lines of 10+ characters and distinct ones, mojibake)."""
    isascii = t.isascii()
    if isascii:  # the common case: byte-level counts in C, same values as the regexes
        b = t.encode("ascii")
        words = Counter(b.translate(_ASCII_LETTERS).split())  # bytes keys
        visible = len(b.translate(None, _ASCII_SPACE))
        alnum = len(b.translate(None, _ASCII_NOT_ALNUM))
    else:
        utf8 = t.encode("utf-8")
        # the non-ASCII characters in order: UTF-8 without its ASCII bytes is still UTF-8
        other = utf8.translate(None, _ASCII_BYTES).decode("utf-8")
        if _WORD.search(other) is None:  # no non-ASCII letter: they only split words, as
            words = Counter(utf8.translate(_ASCII_LETTERS).split())  # the bytes path does
        else:  # UTF-8 bytes keys: 1.5x `_WORD.findall` on str
            spaced = _NON_ASCII_NON_LETTER.sub(" ", t).encode("utf-8")
            words = Counter(spaced.translate(_UTF8_LETTERS).split())
        visible = sum(map(len, t.split()))
        # ASCII letters and digits on the bytes, the other characters one by one
        alnum = len(utf8.translate(None, _NOT_ASCII_ALNUM)) + sum(map(str.isalnum, other))
    stripped = list(map(str.strip, t.splitlines()))  # iterators in C, no loop per line
    lines = list(itertools.compress(stripped, map((10).__le__, map(len, stripped))))
    stops = 0
    if words:
        spellings = _STOP_BYTES if isinstance(next(iter(words)), bytes) else _STOP_SPELLINGS
        stops = sum(map(words.__getitem__, words.keys() & spellings))
    return {"words": words.total(), "implausible": _implausible_words(words) if words else 0,
            "stop_words": stops, "visible": visible, "alnum": alnum, "lines": len(lines),
            "distinct_lines": len(set(lines)),
            "mojibake": 0 if isascii or _MOJIBAKE_LEADS.isdisjoint(other)
            else len(_MOJIBAKE_RE.findall(t))}


def components(text: str, max_chars: int = 100_000) -> dict[str, float]:
    """Each component in [0, 1] (1 = no symptom), over the first ``max_chars`` characters."""
    t = text[:max_chars]
    m = measures(t)
    n_words, visible, lines = m["words"], m["visible"], m["lines"]
    shape = (n_words - m["implausible"]) / n_words if n_words else 0.0
    stop = m["stop_words"] / n_words if n_words else 0.0
    return {
        "word_shape": _ramp(shape, 0.5, 0.92),
        "stop_words": 0.5 + 0.5 * _ramp(stop, 0.0, 0.2),
        "sentence_form": _sentence_form(t),
        "symbols": _ramp(m["alnum"] / visible if visible else 0.0, 0.45, 0.75),
        "unique_lines": _ramp(m["distinct_lines"] / lines, 0.3, 0.9) if lines else 1.0,
        "clean_encoding": max(0.0, 1.0 - 200.0 * m["mojibake"] / max(len(t), 1)),
    }


def length_factor(n_chars: int) -> float:
    """0.6 for a few characters, rising with log length to 1.0 at 1,000 characters, then flat."""
    if n_chars >= _LENGTH_FULL:
        return 1.0
    rise = math.log(max(n_chars, 10) / 10) / math.log(_LENGTH_FULL / 10)
    return _LENGTH_MIN_FACTOR + (1 - _LENGTH_MIN_FACTOR) * rise


def heuristic_quality(text: str, max_chars: int = 100_000) -> float:
    """Higher is better. Deterministic, never raises on odd text."""
    try:
        t = text[:max_chars]
        if not t.strip():
            return 0.0
        parts = components(t, max_chars)
        total = sum(_WEIGHTS.values())
        log_mean = sum(w * math.log(max(parts[k], _FLOOR)) for k, w in _WEIGHTS.items()) / total
        return round(min(max(length_factor(len(t.strip())) * math.exp(log_mean), 0.0), 1.0), 6)
    except Exception:  # noqa: BLE001 - a score must never fail a Spark task
        return 0.0
