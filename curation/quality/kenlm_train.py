"""`sharpen curate train-kenlm`: a KenLM n-gram model of the positive reference set.

As in CCNet (Wenzek et al. 2020), which trained 5-gram KenLM models on Wikipedia and kept
the Common Crawl documents with the lowest perplexity: a model of text we want makes
perplexity a fluency signal (low = like the reference set). The reference documents are
deduplicated, split by source (`reference_sets.split_by_source`: no source on both
sides), and their paragraphs prepared with `ccnet_normalize.prepare_line` (the function
scoring uses) and written one per line. `lmplz` estimates a modified Kneser-Ney model
into ARPA with bounded sorting memory (`-S`), `build_binary` turns it into a trie (small)
or probing (fast) binary, and the held-out documents' CCNet perplexities (see
`kenlm_model.py`) give the percentiles `heldout_log10_ppl` (p5..p95) that the quality
ensemble uses to map a perplexity to [0, 1]. The model directory is written atomically
(`model_dir.write_model_dir`); lmplz is deterministic, so the same input gives the same
model.binary.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import math
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from curation.config import _Strict
from curation.quality.ccnet_normalize import PREPARATION, paragraphs
from curation.quality.fasttext_train import describe_inputs, load_yaml_config
from curation.quality.kenlm_build import KENLM_VERSION, find_binaries
from curation.quality.kenlm_model import KIND, MODEL_FILE, doc_perplexity, load_kenlm_file
from curation.quality.model_dir import ModelDir, write_model_dir
from curation.quality.reference_sets import RefDoc, read_reference_set, split_by_source

PERCENTILES = (5, 25, 50, 75, 95)
WHAT = "kenlm reference set"


class KenLMTrainConfig(_Strict):
    reference: list[str] = Field(min_length=1, description="Paths or globs of JSONL(.gz)/.txt files of the positive reference set (text the corpus should look like); read with `reference_sets.read_reference_set`, one document per record, `source` per record or file.")
    heldout_fraction: float = Field(0.1, ge=0, lt=1, description="About this fraction of the documents is held out, by whole sources, to measure the perplexity percentiles the ensemble uses. 0: no held-out split, the percentiles are measured on the training documents (optimistic).")
    order: int = Field(5, ge=2, le=6, description="n-gram order (CCNet: 5). At most 6, the KENLM_MAX_ORDER of the kenlm build.")
    memory: str = Field("1G", pattern=r"^\d+(\.\d+)?[%bKMGTP]?$", description="Sorting memory of lmplz and build_binary (`-S`), e.g. 1G, 512M or 20%. Their own default, 80% of RAM, is too much beside Spark.")
    prune: list[int] | None = Field(None, description="lmplz `--prune`: per order from unigrams, drop n-grams seen at most this often, e.g. [0, 0, 1] drops singleton trigrams and longer. Non-decreasing, first 0 (unigrams are never pruned). null: no pruning.")
    discount_fallback: bool = Field(True, description="lmplz `--discount_fallback`: when a small corpus has too few count-of-counts to estimate the Kneser-Ney discounts, use the fallback discounts (0.5 1 1.5) instead of failing.")
    data_structure: Literal["trie", "probing"] = Field("trie", description="build_binary's format: trie (smallest; bit-packed) or probing (fastest lookups, about 2-3x larger).")
    seed: int = Field(0, description="Seed of the split by source.")
    min_chars: int = Field(100, ge=1, description="Shorter documents are skipped.")
    output: str = Field("models/quality-kenlm", description="Model directory to write (model.binary + provenance.json); the config field `quality.kenlm_model` names it.")

    @field_validator("reference", mode="before")
    @classmethod
    def _one_or_many(cls, v: object) -> object:
        return [v] if isinstance(v, str) else v

    @field_validator("prune")
    @classmethod
    def _prune(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and (not v or v[0] != 0 or any(b < a for a, b in zip(v, v[1:], strict=False))
                              or min(v) < 0):
            raise ValueError("prune must be non-decreasing counts starting with 0, e.g. [0, 0, 1]")
        return v

    @classmethod
    def load(cls, path: str | Path) -> KenLMTrainConfig:
        return load_yaml_config(cls, path)


class KenLMToolError(RuntimeError):
    """lmplz or build_binary failed; the message has the command and its stderr's tail."""

    user_facing = True


def _run_tool(cmd: list[str], log_file: Path) -> float:
    """Run a KenLM binary with its output in `log_file`; seconds taken."""
    start = time.perf_counter()
    with open(log_file, "wb") as out:
        rc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        text = log_file.read_text(encoding="utf-8", errors="replace")
        lines = [x.strip() for x in text.splitlines() if x.strip() and not x.startswith("*")]
        tail = " | ".join(lines[-4:])[-400:] or "(no output)"
        raise KenLMToolError(f"`{' '.join(cmd)}` failed (exit {rc}): {tail}")
    return round(time.perf_counter() - start, 3)


def _prepared(docs: list[RefDoc]) -> tuple[list[tuple[RefDoc, list[str]]], int, int]:
    """(doc, prepared paragraphs) without repeated documents (first kept) or documents with
    no token; and the numbers of duplicates and of empty documents dropped."""
    seen: set[bytes] = set()
    kept: list[tuple[RefDoc, list[str]]] = []
    dups = empty = 0
    for d in docs:
        paras = paragraphs(d.text)
        h = hashlib.blake2b("\n".join(paras).encode(), digest_size=16).digest()
        if not paras:
            empty += 1
        elif h in seen:
            dups += 1
        else:
            seen.add(h)
            kept.append((d, paras))
    return kept, dups, empty


def _split(docs: list[RefDoc], fraction: float, seed: int, what: str
           ) -> tuple[list[RefDoc], list[RefDoc]]:
    if fraction <= 0:
        return docs, []
    sources = sorted({d.source for d in docs})
    if len(sources) < 2:
        raise ValueError(f"{what}: only the source(s) {sources}; a held-out split by source "
                         f"needs at least 2 (or heldout_fraction: 0)")
    return split_by_source(docs, fraction, seed)


def _ngram_counts(arpa: Path) -> dict[str, int]:
    """The `ngram N=count` lines of the ARPA header."""
    counts: dict[str, int] = {}
    with open(arpa, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith("ngram "):
                n, c = line[6:].strip().split("=")
                counts[n] = int(c)
            elif counts and not line.strip():
                break
    return counts


def percentiles(values: list[float]) -> dict[str, float]:
    """p5..p95 (linear interpolation), rounded to 1e-6 so they are exact across platforms."""
    import numpy as np

    return {f"p{q}": round(float(np.percentile(values, q)), 6) for q in PERCENTILES}


def train_kenlm(cfg: KenLMTrainConfig, log: Callable[[str], None] = lambda s: None) -> ModelDir:
    """Train, measure held-out perplexities and save `cfg.output/`; returns the model dir."""
    started = time.perf_counter()
    what = f"{WHAT} {cfg.reference}"
    docs = read_reference_set(cfg.reference, "positive", what=WHAT, min_chars=cfg.min_chars)
    pairs, dups, empty = _prepared(docs)
    if not pairs:
        raise ValueError(f"{what}: no document has a word after normalisation")
    paras_of = {id(d): paras for d, paras in pairs}
    train, held = _split([d for d, _ in pairs], cfg.heldout_fraction, cfg.seed, what)
    n_tokens = sum(len(p.split()) for d in train for p in paras_of[id(d)])
    log(f"{len(train)} training documents ({n_tokens} tokens), {len(held)} held out; "
        f"{dups} duplicates and {empty} empty documents dropped")
    bins = find_binaries(log=log)
    timing: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="sharpen-kenlm-") as tmp_name:
        tmp = Path(tmp_name)
        corpus, arpa, binary = tmp / "corpus.txt", tmp / "model.arpa", tmp / MODEL_FILE
        with open(corpus, "w", encoding="utf-8", newline="\n") as f:
            for d in train:
                for para in paras_of[id(d)]:
                    f.write(para + "\n")
        lmplz = [str(bins.lmplz), "-o", str(cfg.order), "-S", cfg.memory, "-T", f"{tmp}/",
                 "--text", str(corpus), "--arpa", str(arpa), "--skip_symbols"]
        if cfg.discount_fallback:
            lmplz.append("--discount_fallback")
        if cfg.prune:
            lmplz += ["--prune", *map(str, cfg.prune)]
        log(f"lmplz: {cfg.order}-gram modified Kneser-Ney on {corpus.stat().st_size / 1e6:.2f} MB")
        timing["lmplz_seconds"] = _run_tool(lmplz, tmp / "lmplz.log")
        ngrams = _ngram_counts(arpa)
        build = [str(bins.build_binary), "-S", cfg.memory, "-T", f"{tmp}/", cfg.data_structure,
                 str(arpa), str(binary)]
        timing["build_binary_seconds"] = _run_tool(build, tmp / "build_binary.log")
        log(f"built {cfg.data_structure} binary ({binary.stat().st_size / 1e6:.2f} MB) from "
            f"ARPA ({arpa.stat().st_size / 1e6:.2f} MB) in "
            f"{timing['lmplz_seconds'] + timing['build_binary_seconds']:.1f} s")
        lm = load_kenlm_file(binary, "trained model")
        start = time.perf_counter()
        measured_on = held or train
        log10_ppl = [round(math.log10(doc_perplexity(lm, d.text)), 9) for d in measured_on]
        timing["perplexity_seconds"] = round(time.perf_counter() - start, 3)
        del lm
        sources: dict[str, dict[str, int]] = {}
        for side, part in (("train", train), ("heldout", held)):
            for d in part:
                sources.setdefault(d.source, {"train": 0, "heldout": 0})[side] += 1
        timing["total_seconds"] = round(time.perf_counter() - started, 3)
        provenance: dict[str, Any] = {
            "inputs": describe_inputs(cfg.reference, WHAT),
            "counts": {"train_documents": len(train), "heldout_documents": len(held),
                       "train_paragraphs": sum(len(paras_of[id(d)]) for d in train),
                       "train_tokens": n_tokens, "duplicates_dropped": dups,
                       "empty_dropped": empty, "ngrams": ngrams},
            "sources": dict(sorted(sources.items())),
            "heldout_log10_ppl": percentiles(log10_ppl),
            "heldout_log10_ppl_measured_on": "heldout" if held else "train",
            "heldout_fraction": cfg.heldout_fraction, "seed": cfg.seed,
            "min_chars": cfg.min_chars,
            "hyperparameters": {"order": cfg.order, "memory": cfg.memory, "prune": cfg.prune,
                                "discount_fallback": cfg.discount_fallback,
                                "data_structure": cfg.data_structure,
                                "smoothing": "modified Kneser-Ney (lmplz)"},
            "text_preparation": PREPARATION,
            "perplexity": "CCNet per document: 10 ** (-sum log10 P(paragraph) / "
                          "sum (tokens + 1)), paragraphs scored with <s> and </s>",
            "kenlm_version": KENLM_VERSION, "kenlm_python": _kenlm_python_version(),
            "timing": timing, "arpa_bytes": arpa.stat().st_size,
        }
        md = write_model_dir(cfg.output, MODEL_FILE, KIND,
                             lambda p: shutil.copyfile(binary, p), provenance)
    pct = provenance["heldout_log10_ppl"]
    log(f"saved {md.model_file} ({md.model_file.stat().st_size / 1e6:.2f} MB, sha256 "
        f"{md.sha256[:12]}); held-out ppl median {10 ** pct['p50']:.1f}")
    return md


def _kenlm_python_version() -> str:
    try:
        return importlib.metadata.version("kenlm")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def format_summary(md: ModelDir) -> str:
    """The held-out perplexity percentiles of a trained model, for the CLI."""
    prov = md.provenance
    pct = prov["heldout_log10_ppl"]
    counts = prov["counts"]
    on = prov.get("heldout_log10_ppl_measured_on", "heldout")
    lines = [f"{on} documents: {counts['heldout_documents'] or counts['train_documents']}; "
             f"perplexity percentiles (CCNet, per document):"]
    lines += [f"  p{q:<2}: ppl {10 ** pct[f'p{q}']:10.1f}  (log10 {pct[f'p{q}']:.3f})"
              for q in PERCENTILES]
    lines.append(f"n-grams: {counts['ngrams']}; trained on {counts['train_tokens']} tokens")
    return "\n".join(lines)
