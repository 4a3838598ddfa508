"""Registry entry: the fastText domain classifier, the last resort of domain assignment.

A record's domain comes from the record, else a domain rule, else `domain_by_source`,
else this classifier (trained by `sharpen curate train-domain` on labelled sources),
else `default_domain`. Only rows whose `domain_given` column is False are classified;
without that column every row keeps its domain. Below `domain_classifier.min_score`
the prediction is not trusted and the row gets `default_domain`. `domain_score` is the
classifier's probability of its top label, null where it was not asked. Without a model
every row keeps the domain it has (the assignment's fallback already gave it one).
"""

from __future__ import annotations

import pyarrow as pa

from curation.scorers.base import DocBatch
from curation.scorers.fasttext_quality import FastTextScorer


class DomainClassifier(FastTextScorer):
    name = "domain_classifier"
    columns = (pa.field("domain_score", pa.float64()),)
    rewrites_domain = True  # returns a "domain" list: the assigned domain of every row
    kind = "fasttext-domain"
    field = "domain_classifier.model"

    def model_path(self) -> str | None:
        return self.cfg.domain_classifier.model

    def check(self) -> None:
        super().check()
        if self.model_path() is not None:
            bad = sorted(set(self.model.labels) - set(self.cfg.domains))
            if bad:
                raise ValueError(f"{self.field}: {self.model_path()} predicts {bad}, which are "
                                 f"not in domains {self.cfg.domains}")

    def predict_domains(self, texts: list[str]) -> list[tuple[str, float]]:
        """(domain, probability of the top label) per text; `default_domain` below
        `min_score`."""
        labels, probs = self.model.predict(texts)
        floor, default = self.cfg.domain_classifier.min_score, self.cfg.default_domain
        return [(lab if p >= floor else default, p) for lab, p in zip(labels, probs, strict=True)]

    def score(self, batch: DocBatch) -> dict[str, list]:
        n = len(batch.texts)
        given = batch.columns.get("domain_given")
        todo = [] if given is None else [i for i in range(n) if given[i] is False]
        domains, scores = list(batch.domains), [None] * n
        if todo and self.model_path() is not None:
            for i, (dom, p) in zip(todo, self.predict_domains([batch.texts[i] for i in todo]),
                                   strict=True):
                domains[i], scores[i] = dom, p
        return {"domain_score": scores, "domain": domains}
