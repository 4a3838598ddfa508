"""Source-code rules (Codex, Chen et al. 2021, section 3.1; reused by The Stack, Kocetkov et
al. 2022, and the StarCoder data cleaning, Li et al. 2023).

Why a separate set: prose rules (stop words, terminal punctuation, curly brackets) remove
almost every source file, so they skip the code domain; without these rules code would be
unfiltered. Each rule targets what is not source code someone wrote: minified or data files
(``max_line_length``, ``mean_line_length``), encoded blobs and ASCII art
(``alphanumeric_fraction``), and generated files (``auto_generated``: a marker phrase in the
first lines, as CodeParrot and StarCoder check).

Evaluation order: auto_generated, max_line_length, mean_line_length, alphanumeric_fraction.
Lines are the non-blank lines of the analysed text (the first ``max_analysis_chars``).
"""

from __future__ import annotations

from itertools import islice

from curation.filters.config import CodeConfig
from curation.filters.decision import Decision
from curation.filters.text_stats import TextStats

PREFIX = "code."
_RULES = ("auto_generated", "max_line_length", "mean_line_length", "alphanumeric_fraction")


def rule_names(cfg: CodeConfig) -> list[str]:
    """Enabled rule names, in evaluation order."""
    if not cfg.enabled:
        return []
    return [PREFIX + r for r in _RULES if getattr(cfg, r).action != "off"]


def apply(doc: TextStats, cfg: CodeConfig, decision: Decision) -> bool:
    """Evaluate the enabled rules; returns True as soon as one removes the document."""
    text = doc.prefix
    rule = cfg.auto_generated
    if rule.action != "off":
        head = "\n".join(islice(text.splitlines(), cfg.auto_generated_lines)).lower()
        fired = any(m.lower() in head for m in cfg.auto_generated_markers)
        if decision.record(PREFIX + "auto_generated", rule.action, float(fired), fired):
            return True

    lengths = [len(line) for line in text.splitlines() if line.strip()]
    rule = cfg.max_line_length
    if rule.action != "off":
        longest = max(lengths, default=0)
        if decision.record(PREFIX + "max_line_length", rule.action, longest,
                           longest > rule.max_value):
            return True

    rule = cfg.mean_line_length
    if rule.action != "off":
        mean = sum(lengths) / len(lengths) if lengths else 0.0
        if decision.record(PREFIX + "mean_line_length", rule.action, mean, mean > rule.max_value):
            return True

    rule = cfg.alphanumeric_fraction
    if rule.action != "off":
        visible = len(text) - sum(map(text.count, (" ", "\n", "\t", "\r")))
        alnum = sum(map(str.isalnum, text))
        frac = alnum / visible if visible > 0 else 0.0
        fired = frac < rule.min_value
        if decision.record(PREFIX + "alphanumeric_fraction", rule.action, frac, fired):
            return True
    return False
