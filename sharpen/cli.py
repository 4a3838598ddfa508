"""`sharpen` command line: one entry point, a subcommand per stage.

Each stage package owns its own subcommand in its `cli.py` (`register(subparsers)`),
so the stages stay independent: `sharpen train` never imports pyspark, and each stage
module imports its heavy dependencies only when its command runs.
"""

from __future__ import annotations

import argparse
import logging
import sys


def build_parser() -> argparse.ArgumentParser:
    from curation import cli as curation_cli
    from mixtures import cli as mixtures_cli
    from sharpen import demo
    from training import cli as training_cli
    from training import eval_cli
    from training.interop import export_cli
    from training.rewards import cli as sandbox_cli

    parser = argparse.ArgumentParser(
        prog="sharpen",
        description="Curate (Spark) -> mix (Arrow shards) -> train (FSDP2).",
    )
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="debug logging, and full Python/Java tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    curation_cli.register(sub)
    mixtures_cli.register(sub)
    training_cli.register(sub)
    export_cli.register(sub)
    eval_cli.register(sub)
    sandbox_cli.register(sub)
    demo.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if not args.verbose:  # Py4J logs every connection at INFO
        logging.getLogger("py4j").setLevel(logging.WARNING)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"sharpen {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if args.verbose or not is_user_facing(e):
            raise
        print(f"sharpen {args.command}: error: {one_line(e)}", file=sys.stderr)
        return 2


def is_user_facing(e: BaseException) -> bool:
    """Errors a user can act on: bad input or config (ValueError), the filesystem (OSError:
    not found, not writable, disk full), and any stage error marked `user_facing`. Anything
    else is a bug and keeps its traceback."""
    return isinstance(e, (ValueError, OSError)) or getattr(e, "user_facing", False)


def one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    if isinstance(e, OSError) and e.filename and str(e.filename) not in text:
        text = f"{e.filename}: {text}"
    return text if len(text) <= 400 else text[:397] + "..."


if __name__ == "__main__":
    raise SystemExit(main())
