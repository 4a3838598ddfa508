"""spark-submit application file for `sharpen mix` on a cluster (the Spark engine).

    spark-submit --master spark://HOST:PORT \\
        $(python -c 'import mixtures.submit as s; print(s.__file__)') \\
        --curated ... --recipe ... --output ...

takes the arguments of `sharpen mix` and runs exactly that command with `--engine spark`
(unless another engine is given); the master is the one spark-submit was given. The output
directory must be on a filesystem the executors share with the driver.
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__":
    # Python puts this file's directory (mixtures/) first on sys.path, where e.g.
    # `tokenizer.py` would shadow the `tokenizers` package's neighbours; import from the
    # package instead.
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]


def mix_argv(args: list[str]) -> list[str]:
    """`sharpen` argv for these `sharpen mix` arguments, on the Spark engine unless they
    name another."""
    from curation.submit import sharpen_argv

    if not any(a == "--engine" or a.startswith("--engine=") for a in args):
        args = [*args, "--engine", "spark"]
    return sharpen_argv("mix", args)


def main(args: list[str] | None = None) -> int:
    from sharpen.cli import main as sharpen_main

    try:
        argv = mix_argv(list(sys.argv[1:] if args is None else args))
    except ValueError as e:
        print(f"mixtures.submit: error: {e}", file=sys.stderr)
        return 2
    return sharpen_main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
