"""`sharpen eval`: a checkpoint's perplexity per domain, passkey, math and code scores.

One process, CPU or CUDA, no torchrun: the checkpoint is loaded unsharded. Rows are
appended to <run>/eval.jsonl (or --output) and printed as a table. Perplexity is meant for
held-out shards: point --shards at a mixture stage the model did not train on.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def int_list(text: str) -> list[int]:
    """Parse "256,512" as [256, 512]; "none" (or "") as []."""
    if text.strip().lower() in ("", "none"):
        return []
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers: {text!r}") from e
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"values must be positive: {text!r}")
    return values


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval",
        help="evaluate a checkpoint: held-out perplexity per domain, passkey, math, code pass@k",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "checkpoint",
        type=Path,
        help="checkpoint dir (RUN/checkpoints/STAGE), or a run dir for its latest checkpoint",
    )
    p.add_argument(
        "--shards",
        type=Path,
        nargs="+",
        action="extend",
        default=[],
        metavar="STAGE_DIR",
        help="mixture stage dir(s) (DATA/STAGE) for perplexity per domain; held-out: a stage "
        "the model did not train on (its own training stage measures fit, not generalisation)",
    )
    p.add_argument("--seq-len", type=int, help="perplexity window; default: the checkpoint stage's")
    p.add_argument(
        "--max-tokens",
        type=int,
        default=1_000_000,
        help="labels scored per stage, at most (whole windows; default 1,000,000)",
    )
    p.add_argument(
        "--passkey-lengths",
        type=int_list,
        metavar="L1,L2",
        help="passkey retrieval at these lengths ('none': skip); default: the checkpoint "
        "stage's seq_len",
    )
    p.add_argument("--passkey-samples", type=int, default=8, help="prompts per length (default 8)")
    p.add_argument(
        "--math",
        type=Path,
        metavar="FILE.jsonl",
        help='math problems {"prompt", "answer"}: greedy exact match with the math verifier '
        "(e.g. data/post_training/arithmetic_eval.jsonl)",
    )
    p.add_argument(
        "--code",
        type=Path,
        metavar="FILE.jsonl",
        help='code problems {"prompt", "tests"}: pass@k in the sandbox '
        "(e.g. data/post_training/code_eval.jsonl)",
    )
    p.add_argument(
        "--k",
        type=int_list,
        default=[1, 5],
        metavar="K1,K2",
        help="pass@k for these k (default 1,5)",
    )
    p.add_argument("--samples", type=int, default=10, help="completions per code problem (n >= k)")
    p.add_argument("--temperature", type=float, default=0.8, help="code sampling (default 0.8)")
    p.add_argument("--top-p", type=float, default=0.95, help="code sampling (default 0.95)")
    p.add_argument("--max-new-tokens", type=int, default=256, help="per math/code completion")
    p.add_argument(
        "--prompt-format",
        choices=("auto", "chat", "raw"),
        default="auto",
        help="auto: the chat template when the tokenizer has chat tokens, else the raw text",
    )
    p.add_argument("--batch-size", type=int, default=8, help="rows per forward / generate call")
    p.add_argument("--plan", type=Path, help="the run's plan; default: RUN/plan.yaml")
    p.add_argument("--tokenizer", type=Path, help="default: RUN/tokenizer.json")
    p.add_argument("--output", type=Path, help="JSONL to append rows to; default: RUN/eval.jsonl")
    p.add_argument(
        "--completions", type=Path, help="also write every math/code completion with its score"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda[:N]")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from training.eval.run_eval import format_table, run_dir_of, run_eval

    for name in ("max_tokens", "passkey_samples", "samples", "max_new_tokens", "batch_size"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1")
    rows = run_eval(
        args.checkpoint,
        shards=args.shards,
        seq_len=args.seq_len,
        max_tokens=args.max_tokens,
        passkey_lengths=args.passkey_lengths,
        passkey_samples=args.passkey_samples,
        math=args.math,
        code=args.code,
        ks=args.k,
        samples=args.samples,
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_p=args.top_p,
        batch_size=args.batch_size,
        prompt_format=args.prompt_format,
        plan=args.plan,
        tokenizer=args.tokenizer,
        output=args.output,
        completions=args.completions,
        seed=args.seed,
        device=args.device,
    )
    if not rows:
        print("nothing evaluated: pass --shards, --passkey-lengths, --math or --code")
        return 0
    print(format_table(rows))
    if args.prompt_format == "auto" and any(r.get("prompt_format") == "raw" for r in rows):
        print("note: the tokenizer has no chat tokens; math/code prompts were given as raw text")
    out = args.output or run_dir_of(Path(rows[0]["checkpoint"])) / "eval.jsonl"
    print(f"appended {len(rows)} rows to {out}")
    return 0
