"""Verifiable rewards for post-training. Code: a completion runs against its tests in a
sandbox (`sandbox.py` says which layer guarantees what); `sharpen sandbox run` runs one
program exactly as the reward does, to debug a reward. Math: the completion's final answer
is checked for equivalence with math-verify, in a worker process (`math_answer.py`).
"""

from __future__ import annotations

from training.rewards.code import code_reward, extract_code
from training.rewards.math_answer import extract_final_answer, math_reward
from training.rewards.sandbox import (
    SandboxError,
    SandboxLimits,
    Verdict,
    available_isolation,
    choose_isolation,
    parse_test_names,
    run_program,
)

__all__ = [
    "SandboxError",
    "SandboxLimits",
    "Verdict",
    "available_isolation",
    "choose_isolation",
    "code_reward",
    "extract_code",
    "extract_final_answer",
    "math_reward",
    "parse_test_names",
    "run_program",
]
