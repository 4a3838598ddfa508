"""KenLM perplexity trained and used inside the platform (no mocks).

A real 5-gram model is trained once per module with the real lmplz/build_binary (built
and cached by `kenlm_build` on first use) on about 500 KB of the KJV Bible from
data/sample, one source per book, so the held-out documents are books the model never
saw. Perplexities are checked against the kenlm module's own scores.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import random
import shutil
from pathlib import Path

import pyarrow as pa
import pytest

from curation.config import CurationConfig
from curation.quality import kenlm_build, kenlm_cli
from curation.quality.ccnet_normalize import normalize_line, paragraphs, prepare_line
from curation.quality.ensemble import PerplexityScale
from curation.quality.kenlm_model import KenLMModel, doc_perplexity
from curation.quality.kenlm_train import KenLMTrainConfig, train_kenlm
from curation.quality.model_dir import ModelDir
from curation.scorers import registry
from curation.scorers.base import DocBatch, load_count
from curation.scorers.kenlm_perplexity import KenLMPerplexity

SAMPLE = Path(__file__).resolve().parents[3] / "data" / "sample"


def _records(name: str) -> list[dict]:
    with gzip.open(SAMPLE / f"{name}.jsonl.gz", "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def _write(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def kjv(tmp_path_factory) -> Path:
    """Two documents of 40 verses from each KJV book (about 500 KB), source = the book."""
    docs = []
    for r in _records("books"):
        if not r["id"].startswith("bible-kjv-text/") or "#part1" in r["id"]:
            continue
        book = r["id"].split("/")[-1].split("#")[0]
        verses = [v for v in r["text"].split("\n") if v[:1].isdigit()][:80]
        for i in range(0, len(verses), 40):
            docs.append({"id": f"{book}:{i}", "source": book, "text": "\n".join(verses[i:i + 40])})
    return _write(tmp_path_factory.mktemp("kjv") / "kjv.jsonl", docs)


def _cfg(reference: Path, output: Path, **kw) -> KenLMTrainConfig:
    return KenLMTrainConfig(reference=[str(reference)], output=str(output), heldout_fraction=0.2,
                            order=5, memory="256M", min_chars=50, seed=1, **kw)


@pytest.fixture(scope="module")
def model(kjv, tmp_path_factory) -> ModelDir:
    return train_kenlm(_cfg(kjv, tmp_path_factory.mktemp("m") / "kenlm"))


def _heldout(md: ModelDir, kjv: Path) -> list[str]:
    held = {s for s, c in md.provenance["sources"].items() if c["heldout"]}
    return [json.loads(x)["text"] for x in kjv.read_text().splitlines()
            if json.loads(x)["source"] in held]


def test_ccnet_normalisation_and_tokenisation():
    assert normalize_line("  Café NAÏVE Über 1984 ") == "cafe naive uber 0000"
    assert normalize_line("L’été — «oui» 12,5％") == "l'ete  -  \"oui\" 00,0%"
    assert normalize_line("a\tb\x00c\x07") == "a bc"
    assert prepare_line("Don’t panic: 42 ÉLÈVES!") == "don ' t panic : 00 eleves !"
    assert paragraphs("First line.\n\n  \n\x01\x02\nSecond, line") == ["first line .",
                                                                       "second , line"]
    assert paragraphs("") == [] and math.isnan(doc_perplexity(None, " \n\t\n"))


def test_training_writes_a_model_dir_with_heldout_percentiles(model):
    prov = model.provenance
    assert model.model_file.name == "model.binary" and prov["kind"] == "kenlm"
    pct = prov["heldout_log10_ppl"]
    assert list(pct) == ["p25", "p5", "p50", "p75", "p95"]  # sorted keys in the JSON
    assert pct["p5"] <= pct["p25"] <= pct["p50"] <= pct["p75"] <= pct["p95"]
    assert prov["heldout_log10_ppl_measured_on"] == "heldout"
    c = prov["counts"]
    assert c["heldout_documents"] > 0 and c["train_documents"] > c["heldout_documents"]
    assert set(c["ngrams"]) == {"1", "2", "3", "4", "5"}
    assert not any(v["train"] and v["heldout"] for v in prov["sources"].values())
    assert prov["hyperparameters"]["order"] == 5 and prov["kenlm_version"] == "0.3.0"
    assert PerplexityScale.from_provenance(prov).quality(10 ** pct["p50"]) > 0.5


def test_heldout_text_beats_shuffled_words_mojibake_and_other_domains(model, kjv):
    lm = KenLMModel.load(model.path)
    held = _heldout(model, kjv)
    rng = random.Random(0)
    for text in held:
        words = text.split()
        rng.shuffle(words)
        shuffled = "\n".join(" ".join(words[i:i + 25]) for i in range(0, len(words), 25))
        mojibake = text.encode("cp500", errors="replace").decode("cp1252", errors="replace")
        ppl = lm.doc_perplexity(text)
        assert ppl < lm.doc_perplexity(shuffled) / 3 and ppl < lm.doc_perplexity(mojibake) / 3
    web = [r["text"] for r in _records("web")[:20]]
    assert max(lm.perplexities(held)) < sorted(lm.perplexities(web))[len(web) // 2]


def test_doc_perplexity_is_length_weighted_over_paragraphs(model):
    lm = KenLMModel.load(model.path)
    p1 = "And God said unto Moses, I AM THAT I AM: and he said, Thus shalt thou say."
    p2 = "Quantum servers reboot nightly."
    scores = [list(lm.lm.full_scores(prepare_line(p))) for p in (p1, p2)]  # bos and eos
    total = sum(s[0] for para in scores for s in para)
    n = sum(len(para) for para in scores)
    assert n == len(prepare_line(p1).split()) + len(prepare_line(p2).split()) + 2
    expected = 10 ** (-total / n)
    doc = f"{p1}\n\n{p2}\n"
    assert lm.doc_perplexity(doc) == pytest.approx(expected, rel=1e-6)
    unweighted = sum(10 ** (-sum(s[0] for s in para) / len(para)) for para in scores) / 2
    assert abs(lm.doc_perplexity(doc) - unweighted) > 0.05 * expected
    assert lm.perplexities(["", doc]) == [None, pytest.approx(expected, rel=1e-6)]


def test_training_is_deterministic(model, kjv, tmp_path):
    again = train_kenlm(_cfg(kjv, tmp_path / "again"))
    assert again.sha256 == model.sha256
    assert again.provenance["heldout_log10_ppl"] == model.provenance["heldout_log10_ppl"]
    texts = _heldout(model, kjv)[:5]
    assert KenLMModel.load(again.path).perplexities(texts) == \
        KenLMModel.load(model.path).perplexities(texts)


def test_missing_and_corrupt_model_files_are_one_line_errors(model, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(model.path, bad)
    data = (bad / "model.binary").read_bytes()
    (bad / "model.binary").write_bytes(data[: len(data) // 3])
    for verify, words in ((True, "does not match the sha256"), (False, "not a readable KenLM")):
        with pytest.raises(ValueError, match=words) as e:
            KenLMModel.load(bad, verify=verify)
        assert str(bad / "model.binary") in str(e.value) and "\n" not in str(e.value)
    (bad / "model.binary").unlink()
    with pytest.raises(ValueError, match=r"model file .*model\.binary not found"):
        KenLMModel.load(bad)
    cfg = CurationConfig.model_validate({"quality": {"kenlm_model": str(tmp_path / "nowhere")}})
    with pytest.raises(ValueError, match="quality.kenlm_model: model directory .*nowhere"):
        KenLMPerplexity(cfg).check()


def test_bad_reference_sets_are_one_line_errors_and_write_nothing(tmp_path):
    out = tmp_path / "out"
    empty = _write(tmp_path / "empty.jsonl", [{"text": " "}, {"text": ""}])
    with pytest.raises(ValueError, match="holds no document with text") as e:
        train_kenlm(_cfg(empty, out))
    assert str(empty) in str(e.value)
    with pytest.raises(ValueError, match="matches no file"):
        train_kenlm(_cfg(tmp_path / "none-*.jsonl", out))
    junk = _write(tmp_path / "junk.jsonl", [{"text": "\x01\x02 \x03" * 30, "source": "a"}])
    with pytest.raises(ValueError, match="no document has a word"):
        train_kenlm(_cfg(junk, out))
    one = _write(tmp_path / "one.jsonl", [{"text": "in the beginning " * 10, "source": "a"}])
    with pytest.raises(ValueError, match="a held-out split by source needs at least 2"):
        train_kenlm(_cfg(one, out))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.jsonl", "junk.jsonl",
                                                          "one.jsonl"]


def test_lmplz_failure_shows_its_stderr_and_leaves_nothing(kjv, tmp_path):
    with pytest.raises(RuntimeError, match=r"lmplz .* failed \(exit 1\): .*minimum block size"):
        train_kenlm(_cfg(kjv, tmp_path / "out").model_copy(update={"memory": "1b"}))
    assert list(tmp_path.iterdir()) == []


def test_scorer_entry_scores_batches_and_loads_the_model_once(model, kjv):
    cfg = CurationConfig.model_validate({"quality": {"kenlm_model": str(model.path)}})
    scorer = KenLMPerplexity(cfg)
    scorer.check()
    schema = registry.annotation_schema([scorer])
    assert schema.field("quality_kenlm_ppl").type == pa.float64()
    held = _heldout(model, kjv)[:6]
    lm = KenLMModel.load(model.path)
    for start in range(0, 6, 2):
        texts = [*held[start:start + 2], ""]
        batch = pa.RecordBatch.from_pydict({
            "id": ["a", "b", "c"], "source": ["s"] * 3, "domain": ["books"] * 3,
            "text": texts, "meta": [None] * 3})
        out = registry.score_batch([scorer], batch, schema).column("quality_kenlm_ppl")
        assert out.to_pylist() == [*lm.perplexities(texts[:2]), None]
    assert load_count(scorer.key()) == 1
    off = KenLMPerplexity(CurationConfig())
    off.check()
    assert off.score(DocBatch(["text"], [None])) == {"quality_kenlm_ppl": [None]}


def test_cli_trains_from_reference_and_prints_the_summary(kjv, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    kenlm_cli.register(parser.add_subparsers())
    args = parser.parse_args(["train-kenlm", "--reference", str(kjv), "--output",
                              str(tmp_path / "cli")])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "p50: ppl" in out and f"model: {tmp_path / 'cli' / 'model.binary'}" in out


def test_binaries_are_cached_and_a_non_root_user_is_told_the_apt_command(model, monkeypatch):
    bins = kenlm_build.find_binaries(build_missing=False)
    assert bins.lmplz.parent == kenlm_build.bin_dir() and bins.build_binary.is_file()
    monkeypatch.setattr(kenlm_build, "missing_apt_packages", lambda: ["libboost-thread-dev"])
    monkeypatch.setattr(kenlm_build.os, "geteuid", lambda: 1000)
    with pytest.raises(kenlm_build.KenLMBuildError,
                       match="sudo apt-get install -y libboost-thread-dev"):
        kenlm_build.ensure_prerequisites()
