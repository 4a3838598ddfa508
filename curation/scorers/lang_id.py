"""Registry entry: language identification (`lang`, `lang_score`) and the language filter.

A fastText language-ID model (trained by `sharpen curate train-langid`, or any fastText
model whose labels are language codes, put in a model directory) gives each document its
most probable language and that probability, from the first 10k characters
(`fasttext_text.MAX_CHARS`). With `language.languages` set, a document of a domain in
`language.apply_to_domains` that is identified as another language with at least
`language.min_score` is removed as `filter:lang`. CCNet and FineWeb also drop documents
whose top score is low; we keep those and flag them `lang_uncertain`, because a small
language-ID model trained on documentation is unsure of short or technical English far
more often than it is wrong about a foreign page (measured in benchmarks/RESULTS.md).
"""

from __future__ import annotations

import pyarrow as pa

from curation.scorers.base import DocBatch
from curation.scorers.fasttext_quality import FastTextScorer

RULE = "lang"  # written as `filter:lang` in removed/ and stats.json, like every filter
UNSURE = "lang_uncertain"  # flag: the top language scored below min_score


class LanguageId(FastTextScorer):
    name = "lang_id"
    columns = (pa.field("lang", pa.string()), pa.field("lang_score", pa.float64()))
    kind = "fasttext-langid"
    field = "language.model"

    def model_path(self) -> str | None:
        return self.cfg.language.model

    def score(self, batch: DocBatch) -> dict[str, list]:
        n, lc = len(batch.texts), self.cfg.language
        if self.model_path() is None:
            return {"lang": [None] * n, "lang_score": [None] * n}
        todo = [i for i, d in enumerate(batch.domains)
                if lc.apply_to_domains is None or d in lc.apply_to_domains]
        langs: list[str | None] = [None] * n
        scores: list[float | None] = [None] * n
        if todo:
            got, probs = self.model.predict([batch.texts[i] for i in todo])
            for i, lang, p in zip(todo, got, probs, strict=True):
                langs[i], scores[i] = lang, p
        out: dict[str, list] = {"lang": langs, "lang_score": scores}
        if lc.languages is not None:
            out["removed_by"] = [
                RULE if s is not None and lang not in lc.languages and s >= lc.min_score
                else None for lang, s in zip(langs, scores, strict=True)]
            out["heuristic_flags"] = [[UNSURE] if s is not None and s < lc.min_score else []
                                      for s in scores]
        return out
