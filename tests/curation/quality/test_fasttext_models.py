"""fastText models trained inside the platform: quality, language ID and domains.

Small real models are trained once per module on real text from data/sample (no mocks):
positives are paragraphs of the Python docs, the KJV Bible, English Wikipedia and the
Debian handbook; negatives are derived from them here (word salad, repeated boilerplate
lines, garbled characters), under source names of their own. Language ID learns English
against the sample's Bulgarian Wikipedia article; domains learn the sample's five files.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
from pathlib import Path

import pytest

from curation.config import DEFAULT_DOMAINS, CurationConfig
from curation.quality import fasttext_cli
from curation.quality.fasttext_metrics import roc_auc
from curation.quality.fasttext_model import FastTextModel
from curation.quality.fasttext_text import prepare
from curation.quality.fasttext_train import FastTextParams
from curation.quality.model_dir import sha256_file
from curation.quality.train_domain import DomainTrainConfig, train_domain
from curation.quality.train_langid import LangIdTrainConfig, train_langid
from curation.quality.train_quality import QualityTrainConfig, train_quality
from curation.scorers.base import DocBatch, load_count
from curation.scorers.domain_classifier import DomainClassifier
from curation.scorers.fasttext_quality import FastTextQuality, model_key
from curation.scorers.lang_id import LanguageId

SAMPLE = Path(__file__).resolve().parents[3] / "data" / "sample"
SMALL = FastTextParams(dim=16, epoch=30, lr=0.5, wordNgrams=2, minCount=2, bucket=20_000)


def _records(name: str) -> list[dict]:
    with gzip.open(SAMPLE / f"{name}.jsonl.gz", "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def _paragraphs(text: str, size: int = 1200) -> list[str]:
    """Consecutive paragraphs joined up to about `size` characters."""
    out, cur = [], ""
    for p in (p.strip() for p in text.split("\n\n")):
        if p:
            cur = f"{cur}\n\n{p}" if cur else p
            if len(cur) >= size:
                out.append(cur)
                cur = ""
    return out + ([cur] if len(cur) >= 200 else [])


def _english() -> dict[str, list[str]]:
    """source -> English documents (about 1.2k characters each)."""
    picks = {"python3.11-doc": ("web", None), "debian-handbook": ("web", None),
             "linux-doc-6.1": ("web", None), "openjdk-17-doc": ("web", None),
             "bible-kjv-text": ("books", None), "gensim": ("reference", "enwiki-latest")}
    out: dict[str, list[str]] = {}
    for source, (file, path_part) in picks.items():
        docs = []
        for r in _records(file):
            if r["source"] == source and (path_part is None or path_part in r["meta"]["path"]):
                docs += _paragraphs(r["text"])
            if len(docs) >= 40:
                break
        out["enwiki" if source == "gensim" else source] = docs[:40]
    return out


def _negatives(english: dict[str, list[str]], rng: random.Random) -> dict[str, list[str]]:
    """Low-quality text made from each source's own documents, under the same source name
    (the split then holds out a source's positives and negatives together, so vocabulary
    never tells the labels apart): word salad of the source's words, boilerplate repeated
    line by line, and garbled characters."""
    out: dict[str, list[str]] = {}
    for source, docs in english.items():
        pool = [w for d in docs for w in d.split()]
        mine = out.setdefault(source, [])
        for i, doc in enumerate(docs):
            if i % 3 == 0:
                mine.append(" ".join(rng.sample(pool, min(len(pool), 200))))
            elif i % 3 == 1:
                line = " ".join(doc.split()[:rng.randint(3, 8)])
                mine.append("\n".join([line, "click here to subscribe", "home | login"] * 30))
            else:
                mine.append("".join(chr(0x400 + (ord(c) * 7) % 200)
                                    if c.isalpha() and rng.random() < 0.5 else c for c in doc))
    return out


def _write(path: Path, docs: dict[str, list[str]], label: str | None = None) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for source, texts in docs.items():
            for i, t in enumerate(texts):
                rec = {"id": f"{source}/{i}", "text": t, "source": source}
                if label:
                    rec["label"] = label
                f.write(json.dumps(rec) + "\n")
    return path.as_posix()


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("ft-data")
    english = _english()
    negatives = _negatives(english, random.Random(0))
    bg = next(r for r in _records("reference") if "bgwiki" in r["meta"]["path"])["text"]
    bg_paras = [p for p in bg.split("\n\n") if len(p) >= 40]
    bulgarian = {f"bgwiki-part{k}": bg_paras[k::4] for k in range(4)}
    domains = {}
    for name in ("web", "code", "math", "books", "reference"):
        by_source: dict[str, list[str]] = {}
        for r in _records(name):
            src = r["source"] if name != "math" else "texlive:" + r["id"].split("/")[6]
            if len(by_source.setdefault(src, [])) < 25:
                by_source[src].append(r["text"])
        domains[name] = _write(root / "domains" / f"{name}.jsonl.gz", by_source)
    return {
        "root": root, "english": english, "negatives": negatives, "bulgarian": bulgarian,
        "positive": _write(root / "positive" / "pos.jsonl.gz", english),
        "negative": _write(root / "negative" / "neg.jsonl.gz", negatives),
        "en": _write(root / "langid" / "en.jsonl.gz", english),
        "bg": _write(root / "langid" / "bg.jsonl.gz", bulgarian, label="bg"),
        "domains": domains,
    }


def _quality_cfg(data: dict, output: Path, **kw) -> QualityTrainConfig:
    return QualityTrainConfig(positive=[data["positive"]],
                              negative=[str(Path(data["negative"]).parent / "*.jsonl.gz")],
                              hyperparameters=SMALL, heldout_fraction=0.3, seed=1,
                              output=str(output), **kw)


@pytest.fixture(scope="module")
def quality(data):
    return train_quality(_quality_cfg(data, data["root"] / "models" / "quality"))


@pytest.fixture(scope="module")
def langid(data):
    return train_langid(LangIdTrainConfig(
        data=[str(data["root"] / "langid" / "*.jsonl.gz")], heldout_fraction=0.3, seed=1,
        output=str(data["root"] / "models" / "langid"), min_chars=40))


@pytest.fixture(scope="module")
def domain(data):
    return train_domain(DomainTrainConfig(
        data=list(data["domains"].values()), heldout_fraction=0.25, seed=1,
        hyperparameters=SMALL, output=str(data["root"] / "models" / "domain")))


def _no_source_on_both_sides(prov: dict) -> None:
    train = {s for per in prov["sources"].values() for s, c in per.items() if c["train"]}
    held = {s for per in prov["sources"].values() for s, c in per.items() if c["heldout"]}
    assert held and not train & held


def test_text_preparation_is_one_capped_line():
    text = "Hello\n\tWORLD  __label__x\x00 " + "a" * 20_000
    line = prepare(text)
    assert "\n" not in line and "  " not in line and "__label__" not in line
    assert line.startswith("hello world _label_x a") and len(line) <= 10_000


def test_roc_auc_is_rank_based_with_ties():
    assert roc_auc([1, 1, 0, 0], [0.9, 0.8, 0.2, 0.1]) == 1.0
    assert roc_auc([1, 0], [0.5, 0.5]) == 0.5
    assert roc_auc([1, 0, 1, 0], [0.9, 0.9, 0.1, 0.2]) == 0.375  # (0.5 + 1 + 0 + 0) / 4


def test_quality_model_on_held_out_sources(quality):
    prov, m = quality.provenance, quality.metrics
    assert prov["kind"] == "fasttext-quality" and prov["labels"] == ["hq", "lq"]
    model_file = Path(quality.path) / "model.bin"
    assert prov["sha256"] == sha256_file(model_file)
    assert model_file.stat().st_size < 5_000_000
    assert m["type"] == "binary" and m["roc_auc"] >= 0.9, m
    assert m["precision"] >= 0.8 and m["recall"] >= 0.8, m
    _no_source_on_both_sides(prov)
    assert prov["counts"]["hq"]["heldout"] > 0 and prov["counts"]["lq"]["heldout"] > 0
    assert prov["hyperparameters"] == SMALL.model_dump() and prov["seed"] == 1
    assert prov["deterministic"] is True and prov["fasttext_version"]
    inputs = prov["inputs"]["positive"][0]
    assert inputs["sha256"] == sha256_file(inputs["path"])


def test_training_is_deterministic(data, quality, tmp_path):
    again = train_quality(_quality_cfg(data, tmp_path / "again"))
    assert again.provenance["sha256"] == quality.provenance["sha256"]
    texts = [d for docs in data["english"].values() for d in docs[:3]]
    a = FastTextModel.load(quality.path, "fasttext-quality").prob_of(texts, "hq")
    b = FastTextModel.load(again.path, "fasttext-quality").prob_of(texts, "hq")
    assert a == b


def test_langid_model(langid):
    m = langid.metrics
    assert langid.provenance["labels"] == ["bg", "en"]
    assert m["type"] == "multiclass" and m["accuracy"] >= 0.95, m
    assert set(m["confusion"]) == {"bg", "en"} and m["confusion"]["bg"]["bg"] > 0
    _no_source_on_both_sides(langid.provenance)


def test_domain_model_and_confusion_matrix(domain, capsys):
    m = domain.metrics
    assert set(domain.provenance["labels"]) == {"web", "code", "math", "books", "reference"}
    assert m["accuracy"] >= 0.6 and m["macro_f1"] >= 0.4, m  # chance is 0.2
    assert all(set(row) == set(m["confusion"]) for row in m["confusion"].values())
    assert sum(map(sum, (row.values() for row in m["confusion"].values()))) == m["n"]
    # "debian-handbook" is both a web and a reference source: never on both sides
    _no_source_on_both_sides(domain.provenance)


def test_cli_trains_prints_metrics_and_respects_output(data, tmp_path, capsys):
    cfg = tmp_path / "train.yaml"
    cfg.write_text(json.dumps({"data": [str(data["root"] / "langid" / "*.jsonl.gz")],
                               "heldout_fraction": 0.3, "min_chars": 40,
                               "hyperparameters": {"epoch": 5}, "output": "unused"}))
    parser = argparse.ArgumentParser()
    fasttext_cli.register(parser.add_subparsers())
    args = parser.parse_args(["train-langid", "--config", str(cfg), "--output",
                              str(tmp_path / "lid")])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "accuracy" in out and "true \\ pred" in out and "sha256" in out
    prov = json.loads((tmp_path / "lid" / "provenance.json").read_text())
    assert prov["hyperparameters"]["epoch"] == 5 and prov["hyperparameters"]["minn"] == 1


def test_bad_inputs_are_one_line_errors_and_write_nothing(data, tmp_path):
    out = tmp_path / "model"
    empty = tmp_path / "empty.jsonl"
    empty.write_text(json.dumps({"text": "too short", "source": "x"}) + "\n")
    with pytest.raises(ValueError, match=r"negative reference set: .*empty\.jsonl.* no document"):
        train_quality(QualityTrainConfig(positive=[data["positive"]], negative=[str(empty)],
                                         output=str(out)))
    with pytest.raises(ValueError, match=r"only one class \['en'\]"):
        train_langid(LangIdTrainConfig(data=[data["en"]], output=str(out)))
    with pytest.raises(ValueError, match=r"label 'bg' has only the source\(s\) \['bgwiki'\]"):
        one = _write(tmp_path / "one" / "bg.jsonl.gz", {"bgwiki": data["bulgarian"]["bgwiki-part0"]})
        train_langid(LangIdTrainConfig(data=[data["en"], one], output=str(out), min_chars=40))
    kept = train_langid(LangIdTrainConfig(data=[data["en"], one], output=str(tmp_path / "lid"),
                                          min_chars=40, single_source="train_only"))
    assert kept.metrics["evaluated_labels"] == ["en"] and kept.provenance["labels"] == ["bg", "en"]
    assert kept.provenance["counts"]["bg"] == {"train": 8, "heldout": 0}
    with pytest.raises(ValueError, match=r"web\.jsonl\.gz: labels \['web'\] are not among"):
        train_domain(DomainTrainConfig(data=list(data["domains"].values()),
                                       domains=["code", "math", "books", "reference"],
                                       output=str(out)))
    with pytest.raises(ValueError, match=r"missing\.jsonl matches no file"):
        train_quality(QualityTrainConfig(positive=[str(tmp_path / "missing.jsonl")],
                                         negative=[data["negative"]], output=str(out)))
    assert not out.exists() and list(tmp_path.glob("model.tmp-*")) == []


def test_missing_and_corrupt_model_files(quality, tmp_path):
    import shutil

    with pytest.raises(ValueError, match=r"language.model: model directory .*nowhere not found"):
        LanguageId(_cfg(language={"model": str(tmp_path / "nowhere")})).check()
    broken = tmp_path / "broken"
    shutil.copytree(quality.path, broken)
    (broken / "model.bin").unlink()
    with pytest.raises(ValueError, match=r"model file .*broken/model\.bin not found"):
        FastTextQuality(_cfg(quality={"fasttext_model": str(broken)})).check()
    data = (Path(quality.path) / "model.bin").read_bytes()
    (broken / "model.bin").write_bytes(data[:len(data) // 3])
    with pytest.raises(ValueError, match=r"broken/model\.bin does not match the sha256"):
        FastTextQuality(_cfg(quality={"fasttext_model": str(broken)})).check()
    (broken / "model.bin").write_bytes(b"not a fasttext model" * 10)
    with pytest.raises(ValueError, match=r"model file .*broken/model\.bin is not a readable fastText"):
        FastTextModel.load(broken, "fasttext-quality", verify=False)
    with pytest.raises(ValueError, match="holds a 'fasttext-quality' model, not 'fasttext-langid'"):
        FastTextModel.load(quality.path, "fasttext-langid")


def _cfg(**kw) -> CurationConfig:
    return CurationConfig.model_validate(kw)


def test_quality_entry_scores_and_loads_once(data, quality):
    scorer = FastTextQuality(_cfg(quality={"fasttext_model": quality.path}))
    scorer.check()
    good = [d for docs in data["english"].values() for d in docs[-3:]]
    bad = [d for docs in data["negatives"].values() for d in docs[-1:]]
    for _ in range(3):
        out = scorer.score(DocBatch(good + bad, ["web"] * (len(good) + len(bad))))
    p = out["quality_fasttext"]
    assert all(0.0 <= x <= 1.0 for x in p)
    assert roc_auc([1] * len(good) + [0] * len(bad), p) >= 0.9
    assert load_count(model_key("fasttext-quality", quality.provenance["sha256"])) == 1
    none = FastTextQuality(_cfg()).score(DocBatch(["a", "b"], ["web", "web"]))
    assert none == {"quality_fasttext": [None, None]}


def test_lang_id_entry_removes_other_languages(data, langid):
    en = [d for docs in data["english"].values() for d in docs[:2]]
    bg = data["bulgarian"]["bgwiki-part1"][:3]
    batch = DocBatch(en + bg, ["web"] * (len(en) + len(bg)))
    out = LanguageId(_cfg(language={"model": langid.path, "languages": ["en"]})).score(batch)
    assert out["lang"] == ["en"] * len(en) + ["bg"] * len(bg)
    assert all(0.5 <= s <= 1.0 for s in out["lang_score"])
    assert out["removed_by"] == [None] * len(en) + ["lang"] * len(bg)
    # below min_score the model is unsure: kept and flagged, never removed
    unsure = LanguageId(_cfg(language={"model": langid.path, "min_score": 1.0})).score(batch)
    assert unsure["removed_by"] == [None] * len(batch.texts)
    assert all(f == ["lang_uncertain"] for f in unsure["heuristic_flags"])
    # code and math are not language-identified nor filtered by default
    code = LanguageId(_cfg(language={"model": langid.path})).score(
        DocBatch(bg, ["code"] * len(bg)))
    assert code["removed_by"] == [None] * len(bg) and code["lang"] == [None] * len(bg)
    every = LanguageId(_cfg(language={"model": langid.path, "apply_to_domains": None})).score(
        DocBatch(bg, ["code"] * len(bg)))
    assert every["removed_by"] == ["lang"] * len(bg)
    keep_all = LanguageId(_cfg(language={"model": langid.path, "languages": None})).score(batch)
    assert "removed_by" not in keep_all and keep_all["lang"] == out["lang"]
    assert LanguageId(_cfg()).score(batch) == {"lang": [None] * len(batch.texts),
                                               "lang_score": [None] * len(batch.texts)}


def test_domain_entry_classifies_only_rows_without_a_given_domain(data, domain):
    scorer = DomainClassifier(_cfg(domain_classifier={"model": domain.path}))
    scorer.check()
    code = [r["text"] for r in _records("code") if r["source"] == "maxima-share"][-2:]
    texts = code + code
    batch = DocBatch(texts, ["web", "web", "books", "books"],
                     {"domain_given": [False, False, True, True]})
    out = scorer.score(batch)
    assert out["domain"] == ["code", "code", "books", "books"]
    assert out["domain_score"][2:] == [None, None] and out["domain_score"][0] >= 0.5
    fallback = DomainClassifier(_cfg(domain_classifier={"model": domain.path, "min_score": 1.0},
                                     default_domain="reference")).score(batch)
    assert fallback["domain"][:2] == ["reference", "reference"]
    assert DomainClassifier(_cfg()).score(batch)["domain"] == batch.domains
    narrow = DomainClassifier(_cfg(domains=["web", "code"], default_domain="web",
                                   domain_classifier={"model": domain.path}))
    with pytest.raises(ValueError, match="not in domains"):
        narrow.check()
    assert set(DEFAULT_DOMAINS) >= set(domain.provenance["labels"])


def test_entries_run_in_the_registry_pass(data, quality, langid, domain, monkeypatch):
    import pyarrow as pa

    from curation.scorers import registry

    assert {FastTextQuality, LanguageId, DomainClassifier} <= set(registry.ENTRIES)
    cfg = _cfg(quality={"fasttext_model": quality.path},
               language={"model": langid.path, "languages": ["en"]},
               domain_classifier={"model": domain.path})
    scorers = registry.build_scorers(cfg)
    schema = registry.annotation_schema(scorers)
    ddl = registry.spark_ddl(schema)
    assert "quality_fasttext double" in ddl and "lang string" in ddl and "domain_score double" in ddl
    texts = data["english"]["enwiki"][:2] + data["bulgarian"]["bgwiki-part2"][:2]
    n = len(texts)
    batch = pa.RecordBatch.from_pydict({"id": [str(i) for i in range(n)], "source": ["s"] * n,
                                        "domain": ["reference"] * n, "text": texts,
                                        "meta": [None] * n})
    rows = registry.score_batch(scorers, batch, schema).to_pylist()
    assert [r["lang"] for r in rows] == ["en", "en", "bg", "bg"]
    # Bulgarian is removed; the heuristic filters, earlier in the pass, win if they fire
    assert all(r["removed_by"] is not None for r in rows[2:])
    assert all(r["removed_by"] is None or r["removed_by"] == "lang" for r in rows[:2])
    assert all(isinstance(r["quality_fasttext"], float) for r in rows)
    # the ensemble reads the fastText signal: it is not the heuristic score alone
    assert any(r["quality_score"] != r["quality_heuristic"] for r in rows)
