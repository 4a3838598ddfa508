"""The scorer registry: the annotation schema and DDL come from the entries, entries run
in order on the final text, and a model is loaded once per process."""

from __future__ import annotations

import pyarrow as pa
import pytest
from corpus_fixture import real_texts

from curation.config import CurationConfig
from curation.dedup.lsh_params import lsh_params_for
from curation.quality.heuristic_score import heuristic_quality
from curation.scorers import registry
from curation.scorers.base import DocBatch, Scorer, load_count, load_once
from curation.scorers.dedup_keys import norm_hash


def _batch(texts, domains):
    n = len(texts)
    return pa.RecordBatch.from_pydict({
        "id": [f"d{i}" for i in range(n)], "source": ["s"] * n, "domain": domains,
        "text": texts, "meta": [None] * n})


def test_schema_and_ddl_are_derived_from_the_entries():
    scorers = registry.build_scorers(CurationConfig())
    schema = registry.annotation_schema(scorers)
    declared = [f.name for s in scorers for f in s.columns]
    # no filter rewrites text by default: the stage does not repeat the validated text
    assert schema.names == ["id", "source", "domain", "meta", "n_chars", "removed_by",
                            "heuristic_flags", *declared]
    rewriting = CurationConfig.model_validate({"filters": {"c4": {"modify_text": True}}})
    assert "text" in registry.annotation_schema(registry.build_scorers(rewriting)).names
    assert {"norm_hash", "quality_score", "lang", "quality_fasttext"} <= set(declared)
    ddl = registry.spark_ddl(schema)
    assert "heuristic_flags array<string>" in ddl and "norm_hash binary" in ddl
    assert "bands array<long>" in ddl
    assert ddl.count(",") == len(schema) - 1


def test_every_entry_scores_the_batch_it_is_given():
    texts = real_texts(6) + ["buy now " * 200]
    domains = ["web"] * 6 + ["web"]
    scorers = registry.build_scorers(CurationConfig())
    out = registry.score_batch(scorers, _batch(texts, domains),
                               registry.annotation_schema(scorers)).to_pylist()
    assert [r["norm_hash"] for r in out] == [norm_hash(t) for t in texts]
    assert [r["quality_score"] for r in out] == [heuristic_quality(t) for t in texts]
    assert out[-1]["removed_by"] is not None and out[0]["n_chars"] == len(texts[0])
    # LSH bands for every document a filter kept, none for a removed one
    n_bands = lsh_params_for(CurationConfig().dedup).bands
    assert [len(r["bands"]) if r["bands"] else 0 for r in out] == [
        0 if r["removed_by"] else n_bands for r in out]


class _Upper(Scorer):
    name = "upper"
    columns = (pa.field("upper", pa.string()),)
    reads = ("quality_score",)

    def score(self, batch: DocBatch) -> dict[str, list]:
        model = load_once("test:upper", lambda: str.upper)
        return {"upper": [model(t[:5]) for t in batch.texts]}


def test_a_new_entry_adds_its_column_and_loads_its_model_once(monkeypatch):
    monkeypatch.setattr(registry, "ENTRIES", (*registry.ENTRIES, _Upper))
    scorers = registry.build_scorers(CurationConfig())
    schema = registry.annotation_schema(scorers)
    assert schema.names[-1] == "upper"
    for _ in range(3):
        out = registry.score_batch(scorers, _batch(["abcdefg", "xyz"], ["web", "code"]), schema)
        assert out.column("upper").to_pylist() == ["ABCDE", "XYZ"]
    assert load_count("test:upper") == 1


def test_entries_that_cannot_run_are_refused_on_the_driver(monkeypatch):
    class NeedsMissing(_Upper):
        name = "needs_missing"
        columns = (pa.field("needs_missing", pa.string()),)
        packages = ("surely_not_an_installed_package",)

    class ReadsLater(_Upper):
        name = "reads_later"
        columns = (pa.field("reads_later", pa.string()),)
        reads = ("not_a_column",)

    base = registry.ENTRIES
    for entry, message in ((NeedsMissing, "needs the Python package"),
                           (ReadsLater, "no earlier entry adds")):
        monkeypatch.setattr(registry, "ENTRIES", (*base, entry))
        with pytest.raises(ValueError, match=message):
            registry.build_scorers(CurationConfig())
