"""`sharpen curate train-kenlm`: train the KenLM model of the positive reference set from a
YAML config (fields: `curation/quality/kenlm_train.py`), print the held-out perplexity
percentiles, and save the model directory (model.binary + provenance.json)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

HELP = "train the KenLM 5-gram model of the positive reference set (perplexity signal)"


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def register(inner: Any) -> None:
    """Add `train-kenlm` to the `sharpen curate` subparsers `inner`."""
    p = inner.add_parser("train-kenlm", help=HELP, description=(
        "Train a modified Kneser-Ney n-gram model with KenLM's lmplz on CCNet-normalised "
        "reference text; prints the held-out perplexity percentiles and writes "
        "model.binary + provenance.json. lmplz is built and cached on first use."))
    p.add_argument("--config", help="YAML config of the training (see "
                   "curation/recipes/kenlm_reference.yaml); without it, --reference and "
                   "the defaults")
    p.add_argument("--reference", nargs="+", metavar="PATH_OR_GLOB",
                   help="reference set files (override the config's `reference`)")
    p.add_argument("--output", "-o", help="model directory (overrides the config's `output`)")
    p.set_defaults(func=run_train_kenlm, _kenlm_parser=p)


def run_train_kenlm(args: argparse.Namespace) -> int:
    from curation.quality.kenlm_train import KenLMTrainConfig, format_summary, train_kenlm

    if args.config:
        cfg = KenLMTrainConfig.load(args.config)
    elif args.reference:
        cfg = KenLMTrainConfig(reference=args.reference)
    else:
        args._kenlm_parser.error("give --config or --reference")
    updates = {k: v for k, v in (("reference", args.reference), ("output", args.output)) if v}
    if updates:
        cfg = KenLMTrainConfig.model_validate({**cfg.model_dump(), **updates})
    _log(f"train-kenlm: {cfg.reference} -> {cfg.output}")
    md = train_kenlm(cfg, log=_log)
    print(format_summary(md))
    print(f"model: {md.model_file} sha256 {md.sha256}")
    return 0
