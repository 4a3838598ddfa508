"""The learned signals inside the real Spark job: every model runs in the one annotation
pass, each Python worker loads each model once, the language filter removes, the domain
classifier decides the domain of records nothing else labels, and stats.json says which
models (by sha256) scored the run."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from curation.config import CurationConfig
from curation.pipeline import run_curation
from curation.quality.bundled_models import with_models

SAMPLE = Path(__file__).resolve().parents[3] / "data" / "sample"
LANGID = SAMPLE.parent / "quality" / "langid"


def _records(name: str, n: int, keep=lambda r: True, root: Path = SAMPLE) -> list[dict]:
    with gzip.open(root / f"{name}.jsonl.gz", "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    return [r for r in rows if keep(r)][:n]


def _foreign() -> list[dict]:
    """German and French documentation pages (web), longer than a paragraph."""
    return [{"id": f"{lang}-{i}", "text": r["text"], "source": r["source"], "domain": "web"}
            for lang in ("de", "fr")
            for i, r in enumerate(_records(lang, 3, lambda r: len(r["text"]) > 1000, LANGID))]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("models_corpus")
    web = _records("web", 30, lambda r: r["source"] == "python3.11-doc")
    foreign = _foreign()
    unlabelled = [{k: v for k, v in r.items() if k != "domain"}
                  for r in _records("code", 10) + _records("books", 5)]
    assert len(foreign) == 6 and len(unlabelled) == 15
    with open(root / "docs.jsonl", "w", encoding="utf-8") as f:
        for r in web + foreign + unlabelled:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return root / "docs.jsonl"


@pytest.mark.slow
def test_every_model_scores_in_the_spark_pass_and_loads_once_per_worker(
        spark, corpus: Path, bundled_models: dict[str, str], tmp_path: Path) -> None:
    cfg = with_models(CurationConfig(shuffle_partitions=4, input_split_mb=1), bundled_models)
    log_dir = tmp_path / "loads"
    log_dir.mkdir()
    env = spark.sparkContext.environment
    env["SHARPEN_MODEL_LOAD_LOG"] = str(log_dir)  # reaches the Python workers
    try:
        stats = run_curation([str(corpus)], str(tmp_path / "out"), cfg, master="local[2]")
    finally:
        env.pop("SHARPEN_MODEL_LOAD_LOG", None)

    loads = {p.stem: p.read_text().split() for p in log_dir.glob("*.log")}
    assert loads, "no Python worker logged a model load"
    for pid, keys in loads.items():
        assert len(keys) == len(set(keys)), f"worker {pid} loaded a model twice: {keys}"
    loaded_kinds = {k.split(":")[0] for keys in loads.values() for k in keys}
    assert {"fasttext-quality", "fasttext-langid", "fasttext-domain"} <= loaded_kinds, loaded_kinds
    assert any("kenlm" in k for keys in loads.values() for k in keys), loads

    assert set(stats["models"]) == set(bundled_models)
    for field, path in bundled_models.items():
        prov = json.loads((Path(path) / "provenance.json").read_text())
        assert stats["models"][field]["sha256"] == prov["sha256"]
    assert stats["removed_by_filter"].get("lang", 0) >= 5, stats["removed_by_filter"]
    assert stats["docs_by_lang"].get("en", 0) >= 30, stats["docs_by_lang"]

    curated = pq.read_table(tmp_path / "out" / "curated").to_pylist()
    assert curated and all(r["quality_fasttext"] is not None for r in curated)
    assert all((r["lang"] is None) == (r["domain"] in ("code", "math")) for r in curated)
    assert any(r["quality_kenlm_ppl"] is not None for r in curated)
    assert all(0.0 <= r["quality_score"] <= 1.0 for r in curated)
    by_id = {r["id"]: r for r in curated}
    web_ids = [r["id"] for r in _records("web", 30, lambda r: r["source"] == "python3.11-doc")]
    assert all(by_id[i]["domain"] == "web" for i in web_ids if i in by_id)  # given: kept
    unlabelled = {r["id"] for r in _records("code", 10) + _records("books", 5)}
    assigned = [by_id[i]["domain"] for i in unlabelled if i in by_id]
    assert assigned and set(assigned) <= set(cfg.domains)
    assert "code" in assigned, assigned  # stdlib source is recognised as code
    removed = {r["id"]: r["reason"] for r in pq.read_table(tmp_path / "out" / "removed").to_pylist()}
    foreign = [removed.get(r["id"]) for r in _foreign()]
    assert foreign.count("filter:lang") >= 5, foreign


@pytest.mark.slow
def test_a_model_path_the_executor_cannot_see_is_served_from_the_shipped_archive(
        spark, bundled_models: dict[str, str], tmp_path: Path) -> None:
    from curation.scorers.model_shipping import ship_models

    def load_shipped(args):  # runs in a Python worker (pickled by value: a closure)
        from curation.scorers.base import DocBatch
        from curation.scorers.fasttext_quality import FastTextQuality
        from curation.scorers.model_shipping import resolve_models

        worker_cfg, names = args
        resolved = resolve_models(worker_cfg, names)
        out = FastTextQuality(resolved).score(DocBatch(["a b c"], ["web"]))
        return resolved.quality.fasttext_model, out

    real = bundled_models["quality.fasttext_model"]
    shipped = ship_models(spark.sparkContext, with_models(CurationConfig(), {
        "quality.fasttext_model": real}))
    assert list(shipped) == [real] and shipped[real].endswith(".tar")
    # the executor is told a path that only the driver had
    gone = str(tmp_path / "driver-only" / Path(real).name)
    cfg = with_models(CurationConfig(), {"quality.fasttext_model": gone})
    path, out = spark.sparkContext.parallelize([(cfg, {gone: shipped[real]})], 1).map(
        load_shipped).collect()[0]
    assert path != gone and Path(path).name == shipped[real]
    assert 0.0 <= out["quality_fasttext"][0] <= 1.0
