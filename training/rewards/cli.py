"""`sharpen sandbox run PROGRAM.py [--tests TESTS.py]`: run one program exactly as the code
reward does and print the verdict as JSON (passed and failed tests, reward, exit status,
limits hit, stdout/stderr truncated, which isolation ran). Exit status 0 whenever the
sandbox ran, whatever the verdict: it is for debugging rewards.

TESTS.py holds `def test_*()` functions (reward: the fraction that pass), or is a plain
assert-script (reward 1.0 or 0.0); the program's names are in scope, and `import solution`
works too. Without --tests the program passes when it exits 0.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "sandbox",
        help="run a program in the code-reward sandbox",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="sandbox_command", required=True, metavar="SUBCOMMAND")
    run = sub.add_parser(
        "run",
        help="run PROGRAM.py (against TESTS.py) and print the verdict",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("program", type=Path, help="the Python program (a completion's code)")
    run.add_argument("--tests", type=Path, help="test_* functions, or an assert-script")
    run.add_argument("--timeout", type=float, help="wall-time limit in seconds (default 10)")
    run.add_argument("--memory", type=int, help="memory limit per process, MB (default 512)")
    run.add_argument("--cpu", type=int, help="CPU-time limit in seconds (default 5)")
    run.add_argument(
        "--isolation",
        choices=("auto", "bwrap", "unshare"),
        default=None,
        help="default: $SHARPEN_SANDBOX, else bwrap when it works, else unshare",
    )
    run.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from training.rewards.sandbox import SandboxLimits, run_program

    program = args.program.read_text()
    tests = args.tests.read_text() if args.tests is not None else None
    flags = {"timeout": "wall_time_s", "memory": "memory_mb", "cpu": "cpu_time_s"}
    given = {flag: getattr(args, flag) for flag in flags if getattr(args, flag) is not None}
    for flag, value in given.items():
        if value <= 0:
            raise ValueError(f"--{flag} must be positive, not {value}")
    limits = replace(SandboxLimits(), **{flags[f]: v for f, v in given.items()})
    verdict = run_program(program, tests, limits=limits, isolation=args.isolation)
    print(json.dumps(verdict.to_dict(), indent=2))
    return 0
