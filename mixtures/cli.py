"""`sharpen mix`: materialise a recipe's stages from a curated table."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `mix` subcommand (heavy imports happen only when it runs)."""
    p = subparsers.add_parser(
        "mix",
        help="plan a mixture recipe and write tokenised Arrow stage shards",
        description="Curated Parquet table + recipe YAML -> tokenizer, per-stage plans, "
        "shuffled Arrow IPC shards with manifests, and plan.json.",
    )
    p.add_argument("--curated", required=True, help="curate output dir or its curated/ table")
    p.add_argument("--recipe", required=True, help="mixture recipe YAML")
    p.add_argument("--output", required=True, help="output directory for stages and plan.json")
    p.add_argument("--tokenizer", default=None, help="local tokenizer.json (skip training)")
    p.add_argument("--seed", type=int, default=None, help="override the recipe's seed")
    p.set_defaults(func=run)


def format_summary(summary: dict) -> str:
    """Per-stage table: planned tokens by domain against the targets, with shortfalls."""
    lines = []
    for name, stage in summary["stages"].items():
        report = stage["report"]
        lines.append(
            f"stage {name}: {stage['tokens']:,} tokens in {stage['rows']:,} rows, "
            f"{stage['shards']} shard(s) (budget {report['token_budget']:,})"
        )
        lines.append(
            f"  {'domain':<12}{'target':>14}{'planned':>14}{'share':>8}{'docs':>8}"
            f"{'max_rep':>8}{'shortfall':>12}"
        )
        for dom, r in report["domains"].items():
            lines.append(
                f"  {dom:<12}{r['target']:>14,}{r['planned']:>14,}{r['planned_share']:>8.3f}"
                f"{r['docs']:>8,}{r['max_repeats']:>8}{r['shortfall']:>12,}"
            )
        if report["unfilled"]:
            lines.append(f"  unfilled (every domain at repeat_cap): {report['unfilled']:,}")
        if report["excluded_domains"]:
            lines.append(f"  excluded domains (docs): {report['excluded_domains']}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from mixtures.materialize import run_mix

    summary = run_mix(
        curated=args.curated,
        recipe_path=args.recipe,
        output=args.output,
        tokenizer_path=args.tokenizer,
        seed=args.seed,
    )
    print(format_summary(summary))
    print(f"plan: {args.output}/plan.json")
    return 0
