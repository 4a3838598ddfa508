"""Registry entry: language identification (`lang`, `lang_score`) and the language filter.

A fastText language-ID model (trained by `sharpen curate train-langid`, or any fastText
model whose labels are language codes, put in a model directory) gives each document its
most probable language and that probability, from the first 10k characters
(`fasttext_text.MAX_CHARS`). With `language.languages` set, a document in another
language, or identified with less than `language.min_score`, is removed as `filter:lang`
(CCNet and FineWeb keep documents whose top language score passes a threshold).
"""

from __future__ import annotations

import pyarrow as pa

from curation.scorers.base import DocBatch
from curation.scorers.fasttext_quality import FastTextScorer

RULE = "lang"  # written as `filter:lang` in removed/ and stats.json, like every filter


class LanguageId(FastTextScorer):
    name = "lang_id"
    columns = (pa.field("lang", pa.string()), pa.field("lang_score", pa.float64()))
    reads = ("removed_by",)  # adds to it: the first removal wins
    kind = "fasttext-langid"
    field = "language.model"

    def model_path(self) -> str | None:
        return self.cfg.language.model

    def score(self, batch: DocBatch) -> dict[str, list]:
        n = len(batch.texts)
        if self.model_path() is None:
            return {"lang": [None] * n, "lang_score": [None] * n}
        langs, scores = self.model.predict(batch.texts)
        out: dict[str, list] = {"lang": langs, "lang_score": scores}
        keep, min_score = self.cfg.language.languages, self.cfg.language.min_score
        if keep is not None:
            out["removed_by"] = [None if lang in keep and s >= min_score else RULE
                                 for lang, s in zip(langs, scores, strict=True)]
        return out
