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

    parser = argparse.ArgumentParser(
        prog="sharpen",
        description="Curate (Spark) -> mix (Arrow shards) -> train (FSDP2).",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    curation_cli.register(sub)
    mixtures_cli.register(sub)
    training_cli.register(sub)
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
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as e:  # user errors: one clear line, no traceback
        if args.verbose:
            raise
        print(f"sharpen {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
