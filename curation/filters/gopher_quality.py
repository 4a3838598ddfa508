"""Gopher quality rules (Rae et al. 2021, "Scaling Language Models", appendix A.1.1).

Evaluation order (the first removing rule wins): word_count, mean_word_length,
hash_to_word_ratio, ellipsis_to_word_ratio, bullet_lines, ellipsis_lines, alphabetic_words,
stop_words. A document without words fails the word-based rules (value 0).
"""

from __future__ import annotations

from curation.filters.config import GopherQualityConfig
from curation.filters.decision import Decision
from curation.filters.text_stats import TextStats

PREFIX = "gopher_quality."
_RULES = (
    "word_count",
    "mean_word_length",
    "hash_to_word_ratio",
    "ellipsis_to_word_ratio",
    "bullet_lines",
    "ellipsis_lines",
    "alphabetic_words",
    "stop_words",
)


def rule_names(cfg: GopherQualityConfig) -> list[str]:
    """Enabled rule names, in evaluation order."""
    if not cfg.enabled:
        return []
    return [PREFIX + r for r in _RULES if getattr(cfg, r).action != "off"]


def apply(doc: TextStats, cfg: GopherQualityConfig, decision: Decision) -> bool:
    """Evaluate the enabled rules; returns True as soon as one removes the document."""
    words = doc.words
    n_words = len(words)
    per_word = max(n_words, 1)

    rule = cfg.word_count
    if rule.action != "off":
        n = doc.n_words_total
        fired = n < rule.min_value or n > rule.max_value
        if decision.record(PREFIX + "word_count", rule.action, n, fired):
            return True

    rule = cfg.mean_word_length
    if rule.action != "off":
        mean = sum(map(len, words)) / n_words if n_words else 0.0
        fired = mean < rule.min_value or mean > rule.max_value
        if decision.record(PREFIX + "mean_word_length", rule.action, mean, fired):
            return True

    text = doc.analysed
    rule = cfg.hash_to_word_ratio
    if rule.action != "off":
        ratio = text.count("#") / per_word
        if decision.record(PREFIX + "hash_to_word_ratio", rule.action, ratio, ratio > rule.max_value):
            return True

    rule = cfg.ellipsis_to_word_ratio
    if rule.action != "off":
        ratio = (text.count("...") + text.count("…")) / per_word
        fired = ratio > rule.max_value
        if decision.record(PREFIX + "ellipsis_to_word_ratio", rule.action, ratio, fired):
            return True

    lines = doc.lines
    per_line = max(len(lines), 1)
    rule = cfg.bullet_lines
    if rule.action != "off":
        bullets = tuple(cfg.bullet_prefixes)
        frac = sum(1 for line in lines if line.startswith(bullets)) / per_line if bullets else 0.0
        if decision.record(PREFIX + "bullet_lines", rule.action, frac, frac > rule.max_value):
            return True

    rule = cfg.ellipsis_lines
    if rule.action != "off":
        frac = sum(1 for line in lines if line.endswith(("...", "…"))) / per_line
        if decision.record(PREFIX + "ellipsis_lines", rule.action, frac, frac > rule.max_value):
            return True

    rule = cfg.alphabetic_words
    if rule.action != "off":
        frac = doc.n_alphabetic_words / n_words if n_words else 0.0
        fired = frac < rule.min_value
        if decision.record(PREFIX + "alphabetic_words", rule.action, frac, fired):
            return True

    rule = cfg.stop_words
    if rule.action != "off":
        stop = frozenset(w.lower() for w in cfg.stop_word_list)
        count = sum(map(stop.__contains__, map(str.lower, words)))
        if decision.record(PREFIX + "stop_words", rule.action, count, count < rule.min_value):
            return True
    return False
