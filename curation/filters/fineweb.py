"""FineWeb quality rules (Penedo et al. 2024, "The FineWeb Datasets"), published thresholds.

Evaluation order: line_punctuation, short_lines, duplicate_line_chars, newline_to_word_ratio.

Lines are the stripped, non-blank lines of the analysed text. FineWeb's thresholds were tuned on
trafilatura output, where paragraphs are separated by single newlines; ignoring blank lines
makes a blank-line paragraph layout (books, reference docs) score the same instead of doubling
the short-line and newline counts. Accordingly the newline count of ``newline_to_word_ratio`` is
the number of breaks between non-blank lines, and words are whitespace tokens (FineWeb uses
NLTK tokens, which also count punctuation, so this rule is slightly stricter than FineWeb's).
"""

from __future__ import annotations

from curation.filters.config import FineWebConfig
from curation.filters.decision import Decision
from curation.filters.text_stats import TextStats, duplicate_counts

PREFIX = "fineweb."
_RULES = ("line_punctuation", "short_lines", "duplicate_line_chars", "newline_to_word_ratio")
_TERMINAL = (".", "'", '"', "!", "?")


def rule_names(cfg: FineWebConfig) -> list[str]:
    """Enabled rule names, in evaluation order."""
    if not cfg.enabled:
        return []
    return [PREFIX + r for r in _RULES if getattr(cfg, r).action != "off"]


def apply(doc: TextStats, cfg: FineWebConfig, decision: Decision) -> bool:
    """Evaluate the enabled rules; returns True as soon as one removes the document."""
    lines = doc.lines
    per_line = max(len(lines), 1)

    rule = cfg.line_punctuation
    if rule.action != "off":
        frac = sum(1 for line in lines if line.endswith(_TERMINAL)) / per_line
        if decision.record(PREFIX + "line_punctuation", rule.action, frac, frac < rule.min_value):
            return True

    rule = cfg.short_lines
    if rule.action != "off":
        limit = cfg.short_line_length
        frac = sum(1 for line in lines if len(line) <= limit) / per_line
        if decision.record(PREFIX + "short_lines", rule.action, frac, frac > rule.max_value):
            return True

    rule = cfg.duplicate_line_chars
    if rule.action != "off":
        text = doc.analysed
        chars = max(len(text) - text.count("\n"), 1)
        if cfg.duplicate_line_min_chars:
            limit = cfg.duplicate_line_min_chars
            sections = doc.line_sections or [0] * len(lines)
            long_lines = [(s, line) for s, line in zip(sections, lines, strict=True)
                          if len(line) >= limit]
            repeated = duplicate_counts([line for _, line in long_lines],
                                        [s for s, _ in long_lines])[1]
        else:
            repeated = doc.line_duplicates[1]
        frac = repeated / chars
        fired = frac > rule.max_value
        if decision.record(PREFIX + "duplicate_line_chars", rule.action, frac, fired):
            return True

    rule = cfg.newline_to_word_ratio
    if rule.action != "off":
        ratio = max(len(lines) - 1, 0) / max(len(doc.tokens), 1)
        fired = ratio > rule.max_value
        if decision.record(PREFIX + "newline_to_word_ratio", rule.action, ratio, fired):
            return True
    return False
