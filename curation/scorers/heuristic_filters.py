"""Registry entry: the Gopher, C4 and FineWeb rule sets (`curation/filters/`)."""

from __future__ import annotations

from curation.filters.runner import evaluate
from curation.scorers.base import DocBatch, Scorer


class HeuristicFilters(Scorer):
    """Which rule removed the document (first in evaluation order) and which flagged it.
    A rule set configured to rewrite text (e.g. dropping lines) replaces the text here,
    first in the pass, so every later entry scores the final text."""

    name = "heuristic_filters"
    columns = ()  # returns the registry's decision columns (removed_by, heuristic_flags)
    rewrites_text = True

    def __init__(self, cfg):
        super().__init__(cfg)
        # only C4's `modify_text` rewrites; without it the annotated stage need not carry
        # the text (`registry.annotation_schema`)
        f = cfg.filters
        self.rewrites_text = any(
            c.c4.enabled and c.c4.modify_text
            for c in (f, *(f.for_domain(d) for d in f.by_domain)))

    def score(self, batch: DocBatch) -> dict[str, list]:
        results = evaluate(batch.texts, batch.domains, self.cfg.filters)
        return {
            "text": [r.text if r.text is not None else t
                     for r, t in zip(results, batch.texts, strict=True)],
            "removed_by": [r.removed_by for r in results],
            "heuristic_flags": [r.flags for r in results],
        }
