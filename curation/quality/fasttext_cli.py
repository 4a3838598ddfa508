"""`sharpen curate train-quality | train-langid | train-domain`: train a platform fastText
model from a YAML config (fields: `curation/quality/train_*.py`), print its held-out
metrics, and save the model directory (model.bin + provenance.json)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from curation.quality.fasttext_metrics import format_metrics


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _trainers() -> dict[str, tuple[Any, Callable[..., Any]]]:
    from curation.quality.train_domain import DomainTrainConfig, train_domain
    from curation.quality.train_langid import LangIdTrainConfig, train_langid
    from curation.quality.train_quality import QualityTrainConfig, train_quality

    return {"train-quality": (QualityTrainConfig, train_quality),
            "train-langid": (LangIdTrainConfig, train_langid),
            "train-domain": (DomainTrainConfig, train_domain)}


HELP = {
    "train-quality": "train the fastText quality classifier (positive vs negative reference sets)",
    "train-langid": "train the fastText language-ID model (records labelled with language codes)",
    "train-domain": "train the fastText domain classifier (records labelled with domains)",
}


def register(inner: Any) -> None:
    """Add the three training commands to the `sharpen curate` subparsers `inner`."""
    for name, text in HELP.items():
        p = inner.add_parser(name, help=text, description=f"{text[0].upper()}{text[1:]}; "
                             "prints held-out metrics and writes model.bin + provenance.json.")
        p.add_argument("--config", required=True, help="YAML config of the training "
                       "(see curation/recipes/" + name.replace("-", "_") + ".yaml)")
        p.add_argument("--output", "-o", help="model directory (overrides the config's `output`)")
        p.set_defaults(func=run_training, train_command=name)


def run_training(args: argparse.Namespace) -> int:
    """Run the command named by `args.train_command` with `args.config` / `args.output`."""
    config_cls, train = _trainers()[args.train_command]
    cfg = config_cls.load(args.config)
    if args.output:
        cfg = cfg.model_copy(update={"output": args.output})
    _log(f"{args.train_command}: {args.config} -> {cfg.output}")
    result = train(cfg, log=_log)
    print(format_metrics(result.metrics))
    print(f"model: {result.path}/{result.provenance['model_file']} "
          f"sha256 {result.provenance['sha256']}")
    return 0
