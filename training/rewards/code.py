"""The code reward: the fraction of a task's tests that a completion's code passes, run in
the sandbox. Used by GRPO (one call per completion, several at once from threads) and by
pass@k evaluation.
"""

from __future__ import annotations

import re

from training.rewards.sandbox import SandboxLimits, run_program

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)```", re.DOTALL)


def extract_code(completion: str) -> str:
    """The code in a model's completion: the last ```python (or ```py) block, else the last
    fenced block, else the whole text (a completion that is only code)."""
    blocks = _FENCE.findall(completion)
    python = [body for lang, body in blocks if lang.lower() in ("python", "py", "python3")]
    if python or blocks:
        return (python or [body for _, body in blocks])[-1]
    return completion


def code_reward(
    completion_code: str,
    tests: str | None,
    *,
    limits: SandboxLimits | None = None,
    isolation: str | None = None,
    extract: bool = True,
) -> float:
    """Fraction of `tests` passed (`test_*` functions), or 1.0/0.0 for an assert-script or,
    without tests, for a program that exits 0 within its limits."""
    code = extract_code(completion_code) if extract else completion_code
    return run_program(code, tests, limits=limits, isolation=isolation).reward
