"""Evaluate the heuristic rule sets on a batch of documents (pure Python, no Spark).

Fixed evaluation order, which decides ``removed_by`` when several removing rules fire:
gopher_repetition, gopher_quality, c4, fineweb (FineWeb's published pipeline order), code;
within a set, the order documented in its module. Evaluation of a document stops at its first
removal. Each document is split once (:class:`~curation.filters.text_stats.TextStats`) and that
split is shared by all rule sets.

A document is judged by the effective config of its domain (``FilterConfig.for_domain``: the
domain's ``by_domain`` overrides merged over the other settings), built once per batch.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from curation.filters import c4, code, fineweb, gopher_quality, gopher_repetition
from curation.filters.config import FilterConfig
from curation.filters.decision import Decision, FilterResult
from curation.filters.text_stats import TextStats

logger = logging.getLogger(__name__)

UNKNOWN_AS = "web"
_RULE_SETS = (
    ("gopher_repetition", gopher_repetition),
    ("gopher_quality", gopher_quality),
    ("c4", c4),
    ("fineweb", fineweb),
    ("code", code),
)


def rule_names(cfg: FilterConfig) -> list[str]:
    """Every enabled rule (action remove or flag) of any domain's effective config, in
    evaluation order, so that statistics can report rules that removed nothing."""
    configs = [cfg] + [cfg.for_domain(d) for d in cfg.by_domain]
    names: list[str] = []
    for attr, module in _RULE_SETS:
        for one in configs:
            names += [n for n in module.rule_names(getattr(one, attr)) if n not in names]
    return names


def _applies(section, domain: str | None) -> bool:
    if not section.enabled:
        return False
    return section.apply_to_domains is None or domain in section.apply_to_domains


def _as_domain(domain: str | None, cfg: FilterConfig) -> str | None:
    """The domain a document is judged as: its own, or web when it has none (if allowed)."""
    return UNKNOWN_AS if domain is None and cfg.apply_to_unknown_domain else domain


def _judge(text: str, domain: str | None, cfg: FilterConfig) -> FilterResult:
    """Evaluate one document with an already effective (per-domain) config."""
    doc = TextStats(text, cfg.max_analysis_chars, cfg.markup_aware)
    decision = Decision()
    for attr, module in _RULE_SETS:
        section = getattr(cfg, attr)
        if _applies(section, domain) and module.apply(doc, section, decision):
            break
    return decision.result()


def evaluate_one(text: str, domain: str | None, cfg: FilterConfig) -> FilterResult:
    """Evaluate one document; never raises on odd text (empty, binary-looking, huge)."""
    domain = _as_domain(domain, cfg)
    return _judge(text, domain, cfg.for_domain(domain))


def evaluate(
    texts: Sequence[str], domains: Sequence[str | None], cfg: FilterConfig
) -> list[FilterResult]:
    """Evaluate a batch; ``domains[i]`` is the domain of ``texts[i]`` (None = unknown)."""
    if len(texts) != len(domains):
        raise ValueError(f"texts has {len(texts)} entries but domains has {len(domains)}")
    effective: dict[str | None, FilterConfig] = {}
    results = []
    for i, (text, domain) in enumerate(zip(texts, domains, strict=True)):
        if not isinstance(text, str):
            raise ValueError(f"texts[{i}] must be str, got {type(text).__name__}")
        if domain is not None and not isinstance(domain, str):
            raise ValueError(f"domains[{i}] must be str or None, got {type(domain).__name__}")
        domain = _as_domain(domain, cfg)
        if domain not in effective:
            effective[domain] = cfg.for_domain(domain)
        results.append(_judge(text, domain, effective[domain]))
    logger.debug("heuristic filters: %d documents evaluated", len(results))
    return results


def tally(results: Iterable[FilterResult], cfg: FilterConfig) -> dict[str, dict[str, int]]:
    """Per-rule counts {'removed': {rule: n}, 'flagged': {rule: n}} with zeros for every
    enabled rule; 'kept' and 'total' are under the key 'documents'."""
    names = rule_names(cfg)
    removed = dict.fromkeys(names, 0)
    flagged = dict.fromkeys(names, 0)
    kept = total = 0
    for res in results:
        total += 1
        if res.removed_by is None:
            kept += 1
        else:
            removed[res.removed_by] = removed.get(res.removed_by, 0) + 1
        for flag in res.flags:
            flagged[flag] = flagged.get(flag, 0) + 1
    return {"removed": removed, "flagged": flagged, "documents": {"kept": kept, "total": total}}
