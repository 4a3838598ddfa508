"""CCNet's text normalisation and our tokenisation, shared by KenLM training and scoring.

A KenLM model only means something on text prepared exactly as its training corpus was,
so `prepare_line` is the one function both `kenlm_train` (to write the corpus) and
`kenlm_model` (to score documents) call. It follows CCNet (Wenzek et al. 2020,
`cc_net/text_normalizer.normalize` with its defaults): strip, lower case, strip accents
(NFD, then drop combining marks, category Mn), every digit to 0, CJK and typographic
punctuation mapped to ASCII, control characters (U+0000-U+001F, U+007F-U+009F) removed.
One deviation: a tab or other whitespace control becomes a space before that removal,
so "a\\tb" stays two words (CCNet would glue them into "ab").

Tokenisation: CCNet tokenises with a per-language SentencePiece model; we ship none and
train none, so a line is split into words (`\\w+`, Unicode letters, digits and `_`) and
single punctuation characters (each non-space, non-word character on its own), joined by
single spaces. This is language-agnostic for space-separated scripts; for scripts
without spaces (Chinese, Japanese, Thai) a whole run of characters is one "word", so the
model sees few, rare tokens and perplexities there are high and not comparable.
"""

from __future__ import annotations

import re
import unicodedata

# CCNet's UNICODE_PUNCT table (punct=1: replace, not remove)
UNICODE_PUNCT = {
    "，": ",", "。": ".", "、": ",", "„": '"', "”": '"', "“": '"', "«": '"', "»": '"',
    "１": '"', "」": '"', "「": '"', "《": '"', "》": '"', "´": "'", "∶": ":", "：": ":",
    "？": "?", "！": "!", "（": "(", "）": ")", "；": ";", "–": "-", "—": " - ", "．": ". ",
    "～": "~", "’": "'", "…": "...", "━": "-", "〈": "<", "〉": ">", "【": "[", "】": "]",
    "％": "%", "►": "-",
}
_PUNCT_TABLE = str.maketrans(UNICODE_PUNCT)
_SPACE_CONTROLS = re.compile(r"[\t\x0b\x0c\r\x1c-\x1f\x85]")
_NON_PRINTING = re.compile("[" + "".join(map(chr, [*range(0, 32), *range(127, 160)])) + "]")
_DIGIT = re.compile(r"\d")
_TOKEN = re.compile(r"\w+|[^\w\s]")

# what the provenance of a KenLM model records about its text preparation
PREPARATION = {
    "normalisation": "ccnet text_normalizer.normalize defaults (lower case, accents "
                     "stripped, digits to 0, unicode punctuation mapped, non-printing "
                     "chars removed; whitespace controls become spaces first)",
    "tokenisation": r"regex \w+|[^\w\s], joined by single spaces (no SentencePiece)",
    "paragraphs": "lines (split on \\n); lines empty after preparation are skipped",
}


def strip_accents(text: str) -> str:
    """NFD decomposition without its combining marks: "é" -> "e", "ñ" -> "n"."""
    nfd = unicodedata.normalize("NFD", text)
    return "".join(c for c in nfd if unicodedata.category(c) != "Mn")


def normalize_line(line: str) -> str:
    """CCNet's `normalize(line)` (accent, case, numbers, punct=1), for one line of text."""
    line = line.strip()
    if not line:
        return line
    line = strip_accents(line.lower())
    line = _DIGIT.sub("0", line)
    line = line.translate(_PUNCT_TABLE)
    line = _SPACE_CONTROLS.sub(" ", line)
    return _NON_PRINTING.sub("", line)


def tokenize(normalized: str) -> list[str]:
    """Words and single punctuation characters of an already normalised line."""
    return _TOKEN.findall(normalized)


def prepare_line(line: str) -> str:
    """One line as the model sees it, in training and in scoring: normalised, tokenised,
    tokens joined by single spaces ("" when nothing is left)."""
    return " ".join(tokenize(normalize_line(line)))


def paragraphs(text: str) -> list[str]:
    """The prepared, non-empty paragraphs (lines) of a document: the units that KenLM
    scores with sentence boundaries, and the lines of the training corpus."""
    out = []
    for line in text.split("\n"):
        prepared = prepare_line(line)
        if prepared:
            out.append(prepared)
    return out
