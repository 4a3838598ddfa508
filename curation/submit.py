"""spark-submit application file for the curation job (cluster mode).

    spark-submit --master spark://HOST:PORT \\
        $(python -c 'import curation.submit as s; print(s.__file__)') \\
        [dedup] --input ... --output ... [--config ...]

takes the arguments of `sharpen curate` and runs exactly that command, so a cluster run
executes the same job code as a local one; the master is the one spark-submit was given.
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__":
    # Python puts this file's directory (curation/) first on sys.path, where e.g. `io/`,
    # `config.py` and `cli.py` would shadow top-level modules; import from the package.
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]


def sharpen_argv(command: str, args: list[str]) -> list[str]:
    """`sharpen` argv running `command` with these arguments (`-v` may come first); the
    master is spark-submit's, so a --master among them is refused."""
    lead = [a for a in args[:1] if a in ("-v", "--verbose")]
    rest = args[len(lead):]
    if any(a == "--master" or a.startswith("--master=") for a in rest):
        raise ValueError("under spark-submit the master is spark-submit's --master; "
                         f"drop --master from the {command} arguments")
    return [*lead, command, *rest]


def curate_argv(args: list[str]) -> list[str]:
    """`sharpen` argv for these `sharpen curate` arguments."""
    return sharpen_argv("curate", args)


def main(args: list[str] | None = None) -> int:
    from sharpen.cli import main as sharpen_main

    try:
        argv = curate_argv(list(sys.argv[1:] if args is None else args))
    except ValueError as e:
        print(f"curation.submit: error: {e}", file=sys.stderr)
        return 2
    return sharpen_main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
