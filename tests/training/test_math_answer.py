"""The math reward: equivalence table, extraction, garbage in, and the time bound."""

from __future__ import annotations

import random
import threading
import time

import pytest

pytest.importorskip("math_verify")

from training.rewards.math_answer import (  # noqa: E402
    _GRACE_S,
    _call,
    extract_final_answer,
    math_reward,
)

EQUIVALENT = [
    # numeric
    ("\\boxed{0.5}", "1/2"),
    ("The answer is 1/2.", "0.5"),
    ("\\boxed{1000}", "1e3"),
    ("So we get $\\boxed{1e3}$.", "1000"),
    ("\\boxed{2.5E-3}", "\\frac{1}{400}"),
    ("\\boxed{50\\%}", "0.5"),
    ("\\boxed{1,000}", "1000"),
    ("\\boxed{0.3333333}", "1/3"),  # math-verify rounds floats to 6 places
    ("\\boxed{\\frac{\\sqrt{2}}{2}}", "1/\\sqrt{2}"),
    # answer phrases and GSM8K
    ("Final answer: 42", "42"),
    ("The final answer is $\\frac{3}{4}$", "0.75"),
    ("6 * 7 = 42\n#### 42", "42"),
    ("#### $1,000.", "1000"),
    ("\\boxed{7}", "#### 7"),
    # symbolic
    ("\\boxed{x+1}", "1+x"),
    ("\\boxed{2x+2}", "2(x+1)"),
    ("\\boxed{\\frac{1}{2}}", "0.5"),
    ("\\boxed{x^2-1}", "(x-1)(x+1)"),
    ("\\boxed{x=5}", "5"),
    # sets, intervals, tuples
    ("\\boxed{\\{2, 1\\}}", "\\{1,2\\}"),
    ("\\boxed{[0,1)}", "[0, 1)"),
    ("\\boxed{(0,\\infty)}", "(0, \\infty)"),
    ("The roots are \\boxed{2, 1}", "1, 2"),
    ("\\boxed{\\text{yes}}", "\\text{yes}"),
]

NOT_EQUIVALENT = [
    ("\\boxed{0.333}", "1/3"),
    ("\\boxed{1001}", "1e3"),
    ("\\boxed{\\pi}", "3.14159"),
    ("\\boxed{x-1}", "x+1"),
    ("\\boxed{y+1}", "x+1"),
    ("\\boxed{[0,1]}", "[0, 1)"),
    ("\\boxed{\\{1,2,3\\}}", "\\{1,2\\}"),
    ("\\boxed{5} or maybe \\boxed{3}", "5"),  # the last box is the answer
    ("I think it is 42", "42"),  # a bare number is not a final answer
    ("The answer is x+1", "x+1"),  # plain-text symbols need $...$ or \boxed{}
    ("\\boxed{5}", "6"),
    ("\\boxed{-2}", "2"),
]


@pytest.mark.parametrize(("completion", "reference"), EQUIVALENT)
def test_equivalent_answers_score_one(completion: str, reference: str) -> None:
    assert math_reward(completion, reference) == 1.0


@pytest.mark.parametrize(("completion", "reference"), NOT_EQUIVALENT)
def test_different_answers_score_zero(completion: str, reference: str) -> None:
    assert math_reward(completion, reference) == 0.0


@pytest.mark.parametrize(
    ("completion", "answer"),
    [
        ("First \\boxed{3}. On reflection, the result is \\boxed{4}.", "4"),
        ("The answer is 42.", "42"),
        ("Thus the final answer is $\\frac{1}{2}$.", "\\frac{1}{2}"),
        ("Step 1: 2 + 3 = 5\n#### 5", "5"),
        ("So \\boxed{1e3}", "1000"),
        ("Let me think: 17 and 23 are both primes.", None),
        ("\\boxed{1/3} is the first part; the sum is \\boxed{\\frac{5}{6}}", "\\frac{5}{6}"),
        ("", None),
    ],
)
def test_extract_final_answer(completion: str, answer: str | None) -> None:
    assert extract_final_answer(completion) == answer


def _garbage() -> list[str]:
    rng = random.Random(0)
    noise = [bytes(rng.randrange(256) for _ in range(200)).decode("latin-1") for _ in range(3)]
    return [
        "",
        "\\boxed{",
        "\\boxed{}",
        "}}}{{{\\frac{",
        "$$$$\\\\\\",
        "\x00\x01\x02",
        "\ud800 lone surrogate \\boxed{\udfff}",
        "\\boxed{" + "(" * 200 + "x" + ")" * 200 + "}",
        "\\boxed{\\frac{1}{0}}",
        "\\boxed{\\sqrt{-1}^{\\infty}}",
        "x" * 1_000_000,
        "\\boxed{1" + "0" * 10_000 + "}",
        *noise,
    ]


def test_garbage_never_raises_and_scores_zero() -> None:
    garbage = _garbage()
    for text in garbage:
        assert math_reward(text, "1", timeout_s=1) == 0.0
        assert math_reward("\\boxed{1}", text, timeout_s=1) == 0.0
        extract_final_answer(text, timeout_s=1)  # a str or None, never an exception
    assert math_reward(None, "1") == 0.0  # type: ignore[arg-type]
    assert math_reward("\\boxed{1}", 1) == 0.0  # type: ignore[arg-type]
    assert extract_final_answer(b"\\boxed{1}") is None  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("completion", "reference"),
    [
        ("\\boxed{9^{9^{9^{9}}}}", "1"),
        ("\\boxed{2}", "9^{9^{9^{9}}}"),
        ("\\boxed{10^{10^{10}}}", "10^{10^{10}}+1"),
        ("\\boxed{" + "(" * 40 + "x" + ")" * 40 + "}", "x"),
    ],
)
def test_pathological_input_is_bounded_in_time(completion: str, reference: str) -> None:
    math_reward("\\boxed{1}", "1")  # a warm worker: start-up is not what is timed
    start = time.monotonic()
    assert math_reward(completion, reference, timeout_s=1.0) == 0.0
    assert time.monotonic() - start < 1.0 + _GRACE_S + 1.0  # slack for a loaded machine


def test_a_worker_deaf_to_its_alarm_is_killed_and_replaced() -> None:
    """The caller's hard limit: here the worker's own alarm is set far past it."""
    req = {"op": "reward", "completion": "\\boxed{9^{9^{9^{9}}}}", "reference": "1"}
    start = time.monotonic()
    assert _call(req, 60.0, 1.0) is None
    assert time.monotonic() - start < 3.0
    assert math_reward("\\boxed{0.5}", "1/2") == 1.0  # a fresh worker took its place


def test_concurrent_callers_from_threads() -> None:
    """GRPO scores completions from threads; one slow check does not hold up the others."""
    results: dict[int, float] = {}

    def score(i: int) -> None:
        results[i] = math_reward(f"The answer is $\\frac{{{2 * i}}}{{4}}$", str(i / 2))

    def score_slow() -> None:
        results[-1] = math_reward("\\boxed{9^{9^{9^{9}}}}", "1", timeout_s=6)

    slow = threading.Thread(target=score_slow)
    slow.start()
    threads = [threading.Thread(target=score, args=(i,)) for i in range(1, 5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert slow.is_alive()  # the fast ones did not queue behind it
    slow.join()
    assert results == {-1: 0.0, 1: 1.0, 2: 1.0, 3: 1.0, 4: 1.0}
