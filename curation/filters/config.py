"""Typed configuration of the heuristic document filters (Gopher, C4, FineWeb rule sets).

Every rule can be switched on its own and carries an ``action``:

* ``remove`` (default): a firing rule removes the document; the first such rule (in the order
  documented in :mod:`curation.filters.runner`) is recorded as ``removed_by``.
* ``flag``: the document is kept and the rule name is added to ``heuristic_flags``.
* ``off``: the rule is not evaluated at all (a bare YAML ``off``, read as false, also works).

A comparison at exactly the threshold never fires: ``max_*`` rules fire when the measured value is
strictly greater, ``min_*`` rules when it is strictly smaller.

Domains: each rule set applies to the domains in its ``apply_to_domains`` (prose sets to web,
reference and books; the code set to code; math gets none, since both prose and code rules
misfire on LaTeX sources). ``by_domain`` overrides any setting for one domain, merged over the
rest, and is validated when the config loads. With ``markup_aware`` (the default) the prose
rules judge the prose of a page rather than its reST/Markdown markup and code blocks; the
published definitions are one setting away (``markup_aware: false``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator


def _yaml_off(value: object) -> object:
    """YAML 1.1 reads a bare ``off`` as false; treat that as the action 'off'."""
    return "off" if value is False else value


Action = Annotated[Literal["remove", "flag", "off"], BeforeValidator(_yaml_off)]

ACTION_DESCRIPTION = (
    "What a firing rule does: 'remove' drops the document (first such rule is reported), "
    "'flag' keeps it and records the rule name in heuristic_flags, 'off' skips the rule."
)
PROSE_DOMAINS = ["web", "reference", "books"]
DOMAINS_DESCRIPTION = (
    "Domains this rule set applies to; documents of other domains skip it. Prose rules remove "
    "code and LaTeX wrongly, hence the default excludes code and math. null = every domain."
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RuleAction(_Strict):
    """A rule without a threshold (e.g. 'document contains lorem ipsum')."""

    action: Action = Field("remove", description=ACTION_DESCRIPTION)


class MaxRule(_Strict):
    """Fires when the measured value is strictly greater than ``max_value``."""

    action: Action = Field("remove", description=ACTION_DESCRIPTION)
    max_value: float = Field(ge=0, description="Fires when the measured value exceeds this.")


class MinRule(_Strict):
    """Fires when the measured value is strictly smaller than ``min_value``."""

    action: Action = Field("remove", description=ACTION_DESCRIPTION)
    min_value: float = Field(ge=0, description="Fires when the measured value is below this.")


class RangeRule(_Strict):
    """Fires when the measured value is outside ``[min_value, max_value]``."""

    action: Action = Field("remove", description=ACTION_DESCRIPTION)
    min_value: float = Field(ge=0, description="Fires when the measured value is below this.")
    max_value: float = Field(ge=0, description="Fires when the measured value exceeds this.")

    @model_validator(mode="after")
    def _ordered(self) -> RangeRule:
        if self.min_value > self.max_value:
            raise ValueError(f"min_value {self.min_value} > max_value {self.max_value}")
        return self


class NgramRule(_Strict):
    """One threshold per n-gram size; each size is a separately named rule."""

    action: Action = Field("remove", description=ACTION_DESCRIPTION)
    max_fraction_by_n: dict[int, float] = Field(
        description="n -> largest allowed fraction of characters; drop a key to disable that n."
    )

    @model_validator(mode="after")
    def _valid_sizes(self) -> NgramRule:
        for n, frac in self.max_fraction_by_n.items():
            if not 1 <= n <= 20:
                raise ValueError(f"n-gram size {n} is outside 1..20")
            if not 0 <= frac <= 1:
                raise ValueError(f"fraction {frac} for n={n} is outside 0..1")
        return self


class _RuleSet(_Strict):
    enabled: bool = Field(True, description="Master switch of the whole rule set.")
    apply_to_domains: list[str] | None = Field(
        default_factory=lambda: list(PROSE_DOMAINS), description=DOMAINS_DESCRIPTION
    )


class GopherQualityConfig(_RuleSet):
    """Gopher quality rules (Rae et al. 2021, MassiveText, appendix A)."""

    word_count: RangeRule = Field(
        default_factory=lambda: RangeRule(min_value=50, max_value=100_000),
        description="Number of words (whitespace tokens that are not pure punctuation); counted "
        "over the whole text, not only the analysed prefix (with markup_aware: the words of its "
        "prose and list items, so a page that is only a table of contents or an include "
        "directive has none).",
    )
    mean_word_length: RangeRule = Field(
        default_factory=lambda: RangeRule(min_value=3, max_value=10),
        description="Mean word length in characters (punctuation stripped from word ends).",
    )
    hash_to_word_ratio: MaxRule = Field(
        default_factory=lambda: MaxRule(max_value=0.1),
        description="Count of '#' divided by the number of words.",
    )
    ellipsis_to_word_ratio: MaxRule = Field(
        default_factory=lambda: MaxRule(max_value=0.1),
        description="Count of '...' and '…' divided by the number of words.",
    )
    bullet_lines: MaxRule = Field(
        default_factory=lambda: MaxRule(max_value=0.9),
        description="Fraction of non-blank lines starting with a bullet (see bullet_prefixes).",
    )
    ellipsis_lines: MaxRule = Field(
        default_factory=lambda: MaxRule(max_value=0.3),
        description="Fraction of non-blank lines ending with '...' or '…'.",
    )
    alphabetic_words: MinRule = Field(
        default_factory=lambda: MinRule(action="flag", min_value=0.8),
        description="Fraction of words containing at least one alphabetic character. Flag by "
        "default: prose with code listings (shell, SQL) falls under 0.8 (10 good vs 6 bad "
        "removed on the labelled evaluation set); junk it catches is also caught by the "
        "symbol and mean-word-length rules or scored low.",
    )
    stop_words: MinRule = Field(
        default_factory=lambda: MinRule(min_value=2),
        description="Occurrences (case-insensitive) of words from stop_word_list.",
    )
    bullet_prefixes: list[str] = Field(
        default_factory=lambda: ["•", "‣", "◦", "●", "○", "▪", "■", "·", "-", "*", "–"],
        description="Line prefixes (after leading whitespace) that count as bullets.",
    )
    stop_word_list: list[str] = Field(
        default_factory=lambda: ["the", "be", "to", "of", "and", "that", "have", "with"],
        description="Stop words used by the stop_words rule (Gopher's English list).",
    )


class GopherRepetitionConfig(_RuleSet):
    """Gopher repetition rules (Rae et al. 2021, table A1). Fractions are of analysed chars."""

    duplicate_line_fraction: MaxRule = Field(
        default_factory=lambda: MaxRule(max_value=0.3),
        description="Fraction of non-blank lines that repeat an earlier line.",
    )
    duplicate_line_char_fraction: MaxRule = Field(
        default_factory=lambda: MaxRule(max_value=0.2),
        description="Characters in repeated lines divided by all characters.",
    )
    duplicate_paragraph_fraction: MaxRule = Field(
        default_factory=lambda: MaxRule(max_value=0.3),
        description="Fraction of paragraphs (split on blank lines) repeating an earlier one.",
    )
    duplicate_paragraph_char_fraction: MaxRule = Field(
        default_factory=lambda: MaxRule(max_value=0.2),
        description="Characters in repeated paragraphs divided by all characters.",
    )
    top_ngram_char_fraction: NgramRule = Field(
        default_factory=lambda: NgramRule(max_fraction_by_n={2: 0.2, 3: 0.18, 4: 0.16}),
        description="Characters covered by the most frequent word n-gram (occurring at least "
        "twice), counting all its occurrences, divided by all characters. Rule names are "
        "top_<n>gram_char_fraction.",
    )
    duplicate_ngram_char_fraction: NgramRule = Field(
        default_factory=lambda: NgramRule(
            max_fraction_by_n={5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10}
        ),
        description="Characters covered by repeat occurrences (not the first one) of word "
        "n-grams, overlaps counted once, divided by all characters. Rule names are "
        "duplicate_<n>gram_char_fraction.",
    )


class C4Config(_RuleSet):
    """C4 rules (Raffel et al. 2020 and TFDS c4_utils), evaluated over the whole text.

    Line rules decide which lines C4 would keep; they never remove a document on their own but
    feed ``too_few_sentences``. By default the text is left unchanged (decision only); set
    ``modify_text`` to get C4's cleaned text (kept lines joined by newlines) back.
    """

    modify_text: bool = Field(
        False,
        description="If true, kept documents get their text replaced by the kept lines "
        "(FilterResult.text); if false the filter only decides and never rewrites text.",
    )
    drop_lines_without_terminal_punctuation: bool = Field(
        True, description="Drop lines not ending in . ? ! \" ' (or ending in '...')."
    )
    min_words_per_line: int = Field(
        3, ge=0, description="Drop lines with fewer whitespace-separated words; 0 disables."
    )
    max_word_length: int = Field(
        1000, ge=0, description="Drop lines containing a longer word; 0 disables."
    )
    drop_javascript_lines: bool = Field(
        True, description="Drop lines mentioning 'javascript' (case-insensitive)."
    )
    drop_policy_lines: bool = Field(
        True, description="Drop lines with cookie/terms-of-use/privacy-policy phrases."
    )
    remove_citations: bool = Field(
        True, description="Strip Wikipedia-style markers like [1], [edit], [citation needed]."
    )
    lorem_ipsum: RuleAction = Field(
        default_factory=RuleAction,
        description="A kept line contains 'lorem ipsum' (case-insensitive).",
    )
    curly_bracket: RuleAction = Field(
        default_factory=lambda: RuleAction(action="flag"),
        description="A kept line contains '{' (with markup_aware: a '{' outside inline code "
        "that opens a block, see curation/filters/c4.py; code blocks are not kept lines). "
        "Flag by default: C4 used it against script-laden crawl pages, but it also fires on "
        "documentation that shows code (6 good vs 1 bad page removed on the labelled "
        "evaluation set, benchmarks/RESULTS.md); the learned quality score ranks those.",
    )
    too_few_sentences: MinRule = Field(
        default_factory=lambda: MinRule(action="flag", min_value=5),
        description="Number of sentences in the kept lines (regex sentence splitter). Flag "
        "by default: on documents that are not line-filtered crawl pages it fires on short "
        "good reference pages about as often as on junk (14 good vs 27 bad removed on the "
        "labelled evaluation set); the quality ensemble scores short pages instead.",
    )


class FineWebConfig(_RuleSet):
    """FineWeb quality rules (Penedo et al. 2024) over non-blank, stripped lines (with
    markup_aware: prose and list units, so list items count and headings and code do not)."""

    line_punctuation: MinRule = Field(
        default_factory=lambda: MinRule(min_value=0.12),
        description="Fraction of lines ending in . ? ! \" '.",
    )
    short_lines: MaxRule = Field(
        default_factory=lambda: MaxRule(max_value=0.67),
        description="Fraction of lines of at most short_line_length characters.",
    )
    short_line_length: int = Field(
        30, ge=1, description="Lines with at most this many characters count as short."
    )
    duplicate_line_chars: MaxRule = Field(
        default_factory=lambda: MaxRule(max_value=0.03),
        description="Characters in lines repeating an earlier line / non-newline characters. "
        "FineWeb publishes 0.01, where one repeated footer removes a short page; documentation "
        "repeats a question in its answer or a title in its table of contents, so 0.03 (at "
        "0.01 the sample's Python, kernel and handbook docs lose 6 more pages).",
    )
    duplicate_line_min_chars: int = Field(
        30, ge=0, description="duplicate_line_chars ignores repeats of lines shorter than this "
        "(list bullets, 'Answer:', table cells); 0 counts every line, as FineWeb does.",
    )
    newline_to_word_ratio: MaxRule = Field(
        default_factory=lambda: MaxRule(max_value=0.3),
        description="Count of newline characters divided by number of words (list-like text).",
    )


class CodeConfig(_Strict):
    """Source-code rules of Codex (Chen et al. 2021, section 3.1: average line length > 100,
    maximum line length > 1000, too few alphanumeric characters, auto-generated files), which
    The Stack (Kocetkov et al. 2022) and the StarCoder data cleaning (Li et al. 2023) reuse."""

    enabled: bool = Field(True, description="Master switch of the whole rule set.")
    apply_to_domains: list[str] | None = Field(
        default_factory=lambda: ["code"],
        description="Domains this rule set applies to (null = every domain). Prose and LaTeX "
        "are left to their own rule sets: a LaTeX paragraph is often one long line.",
    )
    max_line_length: MaxRule = Field(
        default_factory=lambda: MaxRule(max_value=1000),
        description="Length in characters of the longest line (minified or data files).",
    )
    mean_line_length: MaxRule = Field(
        default_factory=lambda: MaxRule(max_value=100),
        description="Mean length of the non-blank lines.",
    )
    alphanumeric_fraction: MinRule = Field(
        default_factory=lambda: MinRule(min_value=0.25),
        description="Letters and digits divided by all non-whitespace characters (encoded "
        "data, ASCII art, binary dumps).",
    )
    auto_generated: RuleAction = Field(
        default_factory=RuleAction,
        description="One of auto_generated_markers occurs (case-insensitive) in the first "
        "auto_generated_lines lines.",
    )
    auto_generated_markers: list[str] = Field(
        default_factory=lambda: ["auto-generated", "autogenerated", "automatically generated",
                                 "generated automatically", "do not edit"],
        description="Phrases that mark a generated file (CodeParrot and StarCoder cleaning).",
    )
    auto_generated_lines: int = Field(
        5, ge=1, description="How many leading lines are searched for auto_generated_markers."
    )


RULE_SET_NAMES = ("gopher_repetition", "gopher_quality", "c4", "fineweb", "code")


def _merge(base: dict, override: dict) -> dict:
    """Deep merge of an override over a config dump: sub-mappings merge key by key, anything
    else (lists, numbers, the n -> fraction maps of n-gram rules) replaces."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key != (
                "max_fraction_by_n"):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


class FilterConfig(_Strict):
    """All heuristic filter rule sets; evaluated in the order gopher_repetition,
    gopher_quality, c4, fineweb (FineWeb's published pipeline order), then code."""

    max_analysis_chars: int = Field(
        1_000_000,
        ge=1_000,
        description="Only the first this-many characters are analysed by the Gopher and FineWeb "
        "rules (bounds time on huge documents); C4 and the word-count rule see the whole text.",
    )
    markup_aware: bool = Field(
        True,
        description="Prose rules see only the prose and list items of a document: code blocks, "
        "reST/Markdown markup and headings are set aside and hard-wrapped paragraphs joined "
        "(see curation/filters/structure.py). false: every physical line counts, as in the "
        "published rule sets, which were tuned on text extracted from HTML crawls.",
    )
    apply_to_unknown_domain: bool = Field(
        True, description="Documents without a domain (null) are judged as web documents (the "
        "rule sets that apply to web, with web's by_domain overrides); false: they skip every "
        "rule set limited to some domains.",
    )
    gopher_repetition: GopherRepetitionConfig = Field(
        default_factory=GopherRepetitionConfig, description="Gopher repetition rules."
    )
    gopher_quality: GopherQualityConfig = Field(
        default_factory=GopherQualityConfig, description="Gopher quality rules."
    )
    c4: C4Config = Field(default_factory=C4Config, description="C4 rules.")
    fineweb: FineWebConfig = Field(default_factory=FineWebConfig, description="FineWeb rules.")
    code: CodeConfig = Field(default_factory=CodeConfig, description="Source-code rules.")
    by_domain: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Domain -> overrides of any of the settings above (not by_domain itself), "
        "merged over them for documents of that domain, e.g. {web: {fineweb: "
        "{duplicate_line_chars: {max_value: 0.01}}}, code: {code: {mean_line_length: "
        "{max_value: 120}}}}. Checked when the config loads; the curation config also checks "
        "that each domain is in its taxonomy.",
    )

    @model_validator(mode="after")
    def _valid_overrides(self) -> FilterConfig:
        for domain in self.by_domain:
            try:
                self.for_domain(domain)
            except ValidationError as exc:
                where = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                                  for e in exc.errors())
                raise ValueError(f"by_domain.{domain}: {where}") from None
            except ValueError as exc:
                raise ValueError(f"by_domain.{domain}: {exc}") from None
        return self

    def for_domain(self, domain: str | None) -> FilterConfig:
        """The effective config of one domain: its ``by_domain`` overrides merged over the
        other settings (``self`` when it has none)."""
        override = self.by_domain.get(domain) if domain is not None else None
        if not override:
            return self
        if "by_domain" in override:
            raise ValueError("by_domain cannot be nested")
        merged = _merge(self.model_dump(exclude={"by_domain"}), override)
        return FilterConfig.model_validate(merged)

    def disabled(self) -> FilterConfig:
        """Every rule set switched off, in every domain (dedup-only jobs)."""
        update = {name: getattr(self, name).model_copy(update={"enabled": False})
                  for name in RULE_SET_NAMES}
        return self.model_copy(update={**update, "by_domain": {}})

    @classmethod
    def from_yaml(cls, path: str | Path) -> FilterConfig:
        """Load and validate; errors name the file and the offending field."""
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ValueError(f"{path}: cannot read filter config: {exc}") from exc
        if not isinstance(data, dict):
            raise ValueError(f"{path}: filter config must be a mapping, got {type(data).__name__}")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ValueError(f"{path}: invalid filter config: {exc}") from exc
