"""The one text preparation of every fastText model: used for training lines and for
prediction alike, so a model never sees text prepared differently from what it learnt on.

fastText reads whitespace-separated tokens and `predict` takes one line, so the text is
lower-cased and every run of whitespace (newlines included) becomes one space. Tokens
starting with `__label__` would be read as labels in a training file; they are defused.

The text is cut to its first `MAX_CHARS` (10,000) characters before anything else. A
fastText document vector is the mean of its token (and n-gram) embeddings: after a
couple of thousand words that mean has settled, while the cost of predicting grows with
the length, and the annotation pass predicts every document of the corpus (up to 2 MB
each). 10k characters is about 1,500-2,000 English words, several paragraphs, which is
also where DCLM-style quality classifiers and CCNet-style language ID look.
"""

from __future__ import annotations

import re

MAX_CHARS = 10_000
LABEL_PREFIX = "__label__"
_LABEL_TOKEN = re.compile(r"(?<!\S)__label__")


def prepare(text: str, max_chars: int = MAX_CHARS) -> str:
    """`text` as one fastText line: first `max_chars` characters, lower case, single
    spaces, no NUL (fastText's C++ reader treats it as a word break), no label tokens."""
    text = text[:max_chars].replace("\x00", " ").lower()
    text = " ".join(text.split())
    return _LABEL_TOKEN.sub("_label_", text) if LABEL_PREFIX in text else text


def label_token(label: str) -> str:
    """`__label__<label>`; a label must be one token."""
    if not label or any(c.isspace() for c in label):
        raise ValueError(f"label {label!r} must be one non-empty token without spaces")
    return LABEL_PREFIX + label


def training_line(label: str, text: str) -> str:
    return f"{label_token(label)} {prepare(text)}"
