"""`sharpen curate`: the Spark curation job (`run`, the default) and `dedup` alone."""

from __future__ import annotations

import argparse
import json

SUBCOMMANDS = ("run", "dedup", "train-quality", "train-kenlm", "train-langid", "train-domain")


def _common(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("--input", "-i", nargs="+", required=required,
                   help="JSONL(.gz) / Parquet files, directories or globs (any Hadoop FS path)")
    p.add_argument("--output", "-o", required=required, help="output directory")
    p.add_argument("--config", help="curation config YAML (see curation/config.py)")
    p.add_argument("--master", help="Spark master URL (default local[*]; spark-submit sets its own)")
    p.add_argument("--threshold", type=float, help="near-duplicate Jaccard threshold")
    p.add_argument("--conf", action="append", metavar="KEY=VALUE",
                   help="any spark.* setting (repeatable), e.g. --conf spark.driver.memory=8g; "
                        "wins over the config's `spark:`")


def register(sub) -> None:
    p = sub.add_parser("curate", help="run the Spark curation job",
                       description="Curate raw documents with Spark. `sharpen curate --input ... "
                       "--output ...` runs the whole job; `sharpen curate dedup ...` only "
                       "validation + exact + near dedup.")
    _common(p, required=False)
    inner = p.add_subparsers(dest="curate_command", metavar="{" + ",".join(SUBCOMMANDS) + "}")
    run = inner.add_parser("run", help="the whole job (default)")
    _common(run)
    run.set_defaults(func=_run, mode="full")
    dedup = inner.add_parser("dedup", help="validation + exact + MinHash near dedup only")
    _common(dedup)
    dedup.set_defaults(func=_run, mode="dedup")
    from curation.quality import fasttext_cli, kenlm_cli

    fasttext_cli.register(inner)  # train-quality, train-langid, train-domain
    kenlm_cli.register(inner)     # train-kenlm
    p.set_defaults(func=_run, mode="full", _curate_parser=p)


def _run(args: argparse.Namespace) -> int:
    from curation.config import CurationConfig
    from curation.pipeline import run_curation
    from curation.spark_session import parse_conf_args

    if not args.input or not args.output:
        args._curate_parser.error("--input and --output are required")
    cfg = CurationConfig.load(args.config)
    if args.threshold is not None:
        cfg = cfg.model_copy(update={"dedup": cfg.dedup.model_copy(update={"threshold": args.threshold})})
        CurationConfig.model_validate(cfg.model_dump())
    stats = run_curation(args.input, args.output, cfg, master=args.master, mode=args.mode,
                         spark_conf=parse_conf_args(args.conf))
    c = stats["counts"]
    print(f"in {c['input']} = kept {c['kept']} + removed {c['removed']} "
          f"+ quarantined {c['quarantined']}")
    print(json.dumps({"removed_by_filter": {k: v for k, v in stats["removed_by_filter"].items() if v},
                      "removed_exact_dup": stats["removed_exact_dup"],
                      "removed_near_dup": stats["removed_near_dup"],
                      "quarantined_by_reason": stats["quarantined_by_reason"]}, indent=2))
    print(f"outputs under {args.output}: curated/ removed/ quarantine/ dedup/ stats.json")
    return 0
