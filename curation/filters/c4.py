"""C4 rules (Raffel et al. 2020, section 2.2; TFDS ``c4_utils.clean_page``).

C4 walks the lines of a page and keeps a line only if, in this order: no word is longer than
``max_word_length``; (after stripping citation markers) it ends in terminal punctuation and not
in an ellipsis; it has at least ``min_words_per_line`` words; it does not mention javascript;
it has no cookie/policy phrase. Two tests on a line that got that far drop the whole page:
'lorem ipsum' and '{'. Finally the page needs ``too_few_sentences.min_value`` sentences in its
kept lines. Line rules never remove a document by themselves.

With ``markup_aware`` (the default), C4 walks the prose and list units of
:mod:`curation.filters.structure` instead of physical lines: code blocks and markup never reach
the curly-bracket test, which then fires only on a brace that opens a block (see
:func:`_code_brace`), and a hard-wrapped paragraph counts
as one line (C4's line rules assume a line is a paragraph, as in its HTML-extracted text).

Deviations: sentences are counted with a regex (runs of . ! ? followed by whitespace or the end
of the line) instead of NLTK punkt; the bad-words list rule is not implemented. Evaluation order
of the document rules: lorem_ipsum / curly_bracket (whichever line comes first), then
too_few_sentences. C4 sees the whole text, not only the analysed prefix, so that
``modify_text`` never truncates a document.
"""

from __future__ import annotations

import re

from curation.filters.config import Action, C4Config
from curation.filters.decision import Decision
from curation.filters.text_stats import TextStats

PREFIX = "c4."
_DOC_RULES = ("lorem_ipsum", "curly_bracket", "too_few_sentences")
_TERMINAL = (".", "?", "!", '"', "'")
_CITATION = re.compile(r"\[\d*\]|\[edit\]|\[citation needed\]", re.IGNORECASE)
_BLOCK_BRACE = re.compile(r"\{(?:\s|$)|[)=]\s*\{")
_SENTENCE_END = re.compile(r"[.!?]+[\"'”’)\]]*(?=\s|$)")
_POLICY = (
    "terms of use",
    "privacy policy",
    "cookie policy",
    "uses cookies",
    "use of cookies",
    "use cookies",
)


def rule_names(cfg: C4Config) -> list[str]:
    """Enabled document-level rule names, in evaluation order."""
    if not cfg.enabled:
        return []
    return [PREFIX + r for r in _DOC_RULES if getattr(cfg, r).action != "off"]


def apply(doc: TextStats, cfg: C4Config, decision: Decision) -> bool:
    """Walk the lines as C4 does; returns True as soon as a document rule removes it."""
    check_lorem = cfg.lorem_ipsum.action != "off"
    check_curly = cfg.curly_bracket.action != "off"
    lorem_seen = curly_seen = False
    aware = doc.markup_aware
    kept: list[str] = []
    sentences = 0
    for raw in doc.c4_lines:
        line = raw.strip()
        if not line:
            continue
        words = line.split()
        if cfg.max_word_length and max(map(len, words)) > cfg.max_word_length:
            continue
        if cfg.remove_citations and "[" in line:
            line = _CITATION.sub("", line).strip()
        if cfg.drop_lines_without_terminal_punctuation and (
            not line.endswith(_TERMINAL) or line.endswith("...")
        ):
            continue
        if len(words) < cfg.min_words_per_line:
            continue
        lower = line.lower()
        if check_lorem and not lorem_seen and "lorem ipsum" in lower:
            lorem_seen = True
            if _record(decision, "lorem_ipsum", cfg.lorem_ipsum.action, True):
                return True
        if cfg.drop_javascript_lines and "javascript" in lower:
            continue
        if check_curly and not curly_seen and (_code_brace(line) if aware else "{" in line):
            curly_seen = True
            if _record(decision, "curly_bracket", cfg.curly_bracket.action, True):
                return True
        if cfg.drop_policy_lines and any(p in lower for p in _POLICY):
            continue
        sentences += max(len(_SENTENCE_END.findall(line)), 1)
        kept.append(line)

    if check_lorem and not lorem_seen:
        _record(decision, "lorem_ipsum", cfg.lorem_ipsum.action, False)
    if check_curly and not curly_seen:
        _record(decision, "curly_bracket", cfg.curly_bracket.action, False)
    rule = cfg.too_few_sentences
    if rule.action != "off":
        fired = sentences < rule.min_value
        if decision.record(PREFIX + "too_few_sentences", rule.action, sentences, fired):
            return True
    if cfg.modify_text:
        decision.text = "\n".join(kept)
    return False


def _code_brace(line: str) -> bool:
    """Markup-aware curly-bracket test: a ``{`` outside inline code spans (```x```, reST roles)
    that opens a block, i.e. is followed by whitespace or the line end, or follows ``)`` or
    ``=`` (``f() {``, ``x = {``). Braces that wrap words in prose (``{g,x}config``,
    ``${HOME}``, ``{e.g., ...}``) do not count: C4 meant to drop pages with code."""
    if "{" not in line:
        return False
    outside = "".join(line.replace("``", "`").split("`")[::2])
    return _BLOCK_BRACE.search(outside) is not None


def _record(decision: Decision, rule: str, action: Action, fired: bool) -> bool:
    return decision.record(PREFIX + rule, action, 1.0 if fired else 0.0, fired)
