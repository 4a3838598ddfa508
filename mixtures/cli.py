"""`sharpen mix`: materialise a recipe's stages from a curated table (the default), or
tokenise chat data into a post-training stage (`sharpen mix sft`, `sharpen mix preferences`,
alias `dpo`, `sharpen mix tasks` for RL and evaluation prompts)."""

from __future__ import annotations

import argparse

PRE_TRAINING_FLAGS = ("curated", "recipe", "output")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `mix` subcommand (heavy imports happen only when it runs)."""
    p = subparsers.add_parser(
        "mix",
        help="plan a mixture recipe and write tokenised Arrow stage shards",
        description="Curated Parquet table + recipe YAML -> tokenizer, per-stage plans, "
        "shuffled Arrow IPC shards with manifests, and plan.json. `sharpen mix sft ...`, "
        "`sharpen mix preferences ...` and `sharpen mix tasks ...` write a post-training "
        "stage from chat JSONL instead.",
    )
    p.add_argument("--curated", help="curate output dir or its curated/ table (required)")
    p.add_argument("--recipe", help="mixture recipe YAML (required)")
    p.add_argument("--output", help="output directory for stages and plan.json (required)")
    p.add_argument("--tokenizer", default=None, help="local tokenizer.json or HF tokenizer directory (skip training)")
    p.add_argument("--seed", type=int, default=None, help="override the recipe's seed")
    p.add_argument(
        "--engine",
        choices=("auto", "pyarrow", "spark"),
        default="auto",
        help="spark: tokenise and write shards on Spark executors (the driver holds no text); "
        "pyarrow: one process, the table in memory; auto (default): spark when the curated "
        "Parquet exceeds 256 MB. Both write byte-identical shards.",
    )
    p.add_argument("--master", default=None,
                   help="Spark master URL for --engine spark (default local[*])")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an output directory written by another recipe or seed")
    p.set_defaults(func=run, _mix_parser=p)
    inner = p.add_subparsers(dest="mix_command", metavar="{explain,sft,preferences,tasks}")
    e = inner.add_parser(
        "explain",
        help="print what a recipe would plan (no shards written)",
        description="Plan every stage of RECIPE on the curated table with token counts "
        "estimated from characters (tokens per character measured on a seeded sample) and "
        "print tokens by domain and quality bucket, epochs per domain, a histogram of "
        "repeats, the most amplified clusters and shortfalls. Writes nothing.",
    )
    e.add_argument("--recipe", required=True, help="mixture recipe YAML")
    e.add_argument("--curated", required=True, help="curate output dir or its curated/ table")
    e.add_argument("--tokenizer", default=None, help="tokenizer.json or HF tokenizer directory to estimate with")
    e.add_argument("--seed", type=int, default=None, help="override the recipe's seed")
    e.add_argument("--json", action="store_true", help="print the per-stage reports as JSON")
    e.set_defaults(func=run_explain)
    for name, aliases, what in (
        ("sft", [], 'conversations, {"messages": [{"role", "content"}, ...]} per line'),
        ("preferences", ["dpo"], '{"prompt", "chosen", "rejected"} per line'),
        ("tasks", [], '{"prompt", "answer"} or {"prompt", "tests"} per line (RL, evaluation)'),
    ):
        q = inner.add_parser(
            name,
            aliases=aliases,
            help=f"chat JSONL ({name}) -> a tokenised {name} stage",
            description=f"JSONL(.gz) of {what} -> OUTPUT/STAGE/ (Arrow shards + manifest) "
            "beside OUTPUT/tokenizer/. Malformed lines are skipped and counted by reason "
            "(--strict: the first is an error naming its file and line).",
        )
        q.add_argument("--input", "-i", nargs="+", required=True, help="JSONL or JSONL.gz files")
        q.add_argument(
            "--tokenizer",
            required=True,
            help="tokenizer.json (or its directory) with the chat tokens (the "
            "pre-training mix's OUTPUT/tokenizer/tokenizer.json)",
        )
        q.add_argument("--output", "-o", required=True, help="output (data root) directory")
        q.add_argument("--stage", default=name, help=f"stage directory name (default {name})")
        q.add_argument("--domain", default="chat", help="domain of records without one")
        q.add_argument(
            "--max-tokens",
            type=int,
            default=None,
            help="skip records longer than this once "
            "rendered (a conversation, prompt + the longer reply, or a task's prompt); e.g. "
            "seq_len + 1",
        )
        q.add_argument("--seed", type=int, default=0, help="seed of the row shuffle")
        q.add_argument("--strict", action="store_true", help="fail on the first malformed line")
        q.add_argument("--rows-per-shard", type=int, default=50_000)
        q.set_defaults(func=run_chat, kind=name)


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

    missing = [f"--{f}" for f in PRE_TRAINING_FLAGS if getattr(args, f) is None]
    if missing:
        args._mix_parser.error(f"the following arguments are required: {', '.join(missing)}")

    summary = run_mix(
        curated=args.curated,
        recipe_path=args.recipe,
        output=args.output,
        tokenizer_path=args.tokenizer,
        seed=args.seed,
        engine=args.engine,
        master=args.master,
        overwrite=args.overwrite,
    )
    print(format_summary(summary))
    print(f"plan: {args.output}/plan.json")
    return 0


def run_explain(args: argparse.Namespace) -> int:
    import json

    from mixtures.explain import explain_mix

    explanation = explain_mix(args.recipe, args.curated, args.tokenizer, args.seed)
    if args.json:
        print(json.dumps({"tokens_per_char": explanation.tokens_per_char,
                          "sample": explanation.sample, "stages": explanation.reports},
                         indent=2))
    else:
        print(explanation.format())
    return 0


def run_chat(args: argparse.Namespace) -> int:
    from mixtures.chat_stages import mix_preferences, mix_sft, mix_tasks

    mix = {"sft": mix_sft, "preferences": mix_preferences, "tasks": mix_tasks}[args.kind]
    summary = mix(
        args.input,
        args.tokenizer,
        args.output,
        stage=args.stage,
        domain=args.domain,
        max_tokens=args.max_tokens,
        seed=args.seed,
        strict=args.strict,
        rows_per_shard=args.rows_per_shard,
    )
    print(format_chat_summary(summary))
    print(f"manifest: {summary['dir']}/manifest.json")
    return 0


def format_chat_summary(summary: dict) -> str:
    """One line for the stage, one for what was skipped (by reason), if anything."""
    trainable = summary["trainable_tokens"]
    what = {"sft": "conversations", "preferences": "pairs"}.get(summary["kind"], "tasks")
    line = (
        f"stage {summary['stage']} ({summary['kind']}): {summary['rows']:,} {what}, "
        f"{summary['tokens']:,} tokens"
        + (f" ({trainable:,} trainable)" if trainable is not None else "")
        + f" in {summary['shards']} shard(s)"
    )
    skipped = summary["records"]["skipped"]
    if skipped:
        reasons = ", ".join(f"{k} {v}" for k, v in skipped.items())
        line += f"\nskipped {sum(skipped.values()):,} malformed record(s): {reasons}"
    return line
