"""The heuristic quality score as it was before issue 6 (commit b4df185), kept only as a
baseline for `benchmarks/quality_eval.py`: it rewards length (28k characters of random
consonant words score 1.0)."""
from __future__ import annotations

import math
import re

_ALNUM = re.compile(r"\w")
_REPLACEMENT = "\ufffd"


def heuristic_quality(text: str, max_chars: int = 100_000) -> float:
    """Higher is better. Deterministic, never raises on odd text."""
    t = text[:max_chars]
    n = len(t)
    if n == 0:
        return 0.0
    lines = [ln for ln in t.splitlines() if ln.strip()]
    n_lines = max(len(lines), 1)
    # 1. enough text to be a document: 0 at 50 chars, 1 at ~20k chars
    length = min(max(math.log10(max(n, 1)) - math.log10(50), 0.0) / math.log10(400), 1.0)
    # 2. word characters vs symbols/garbage
    alnum = len(_ALNUM.findall(t)) / n
    alnum_s = min(alnum / 0.7, 1.0)
    # 3. repeated lines (menus, boilerplate, spam)
    unique = len(set(lines)) / n_lines
    # 4. lines of a plausible length (not one giant line, not all fragments)
    mean_len = sum(len(ln) for ln in lines) / n_lines
    line_s = 1.0 if 20 <= mean_len <= 300 else max(0.0, 1.0 - abs(math.log(max(mean_len, 1) / (20 if mean_len < 20 else 300))))
    # 5. no mojibake
    bad = t.count(_REPLACEMENT) / n
    clean = max(0.0, 1.0 - 50 * bad)
    return round((length + alnum_s + unique + line_s + clean) / 5.0, 6)
