"""side_by_side: results in call order; every call runs to its end; the first failure wins."""

from __future__ import annotations

import threading

import pytest

from curation.side_by_side import side_by_side


def test_results_come_back_in_call_order_from_separate_threads() -> None:
    started = threading.Barrier(3, timeout=10)  # all three must be running at once

    def call(i: int):
        return lambda: (started.wait(), i, threading.current_thread().name)[1:]

    got = side_by_side(call(0), call(1), call(2))
    assert [i for i, _ in got] == [0, 1, 2]
    assert len({name for _, name in got}) == 3


def test_every_call_finishes_and_the_first_failure_is_raised() -> None:
    done = []

    def fail(msg: str):
        def run():
            raise ValueError(msg)
        return run

    with pytest.raises(ValueError, match="first"):
        side_by_side(fail("first"), lambda: done.append("slow"), fail("second"))
    assert done == ["slow"]
    assert side_by_side() == [] and side_by_side(lambda: 7) == [7]


def test_at_once_bounds_how_many_run_together() -> None:
    lock, running, most = threading.Lock(), [0], [0]

    def call(i: int):
        def run():
            with lock:
                running[0] += 1
                most[0] = max(most[0], running[0])
            threading.Event().wait(0.05)
            with lock:
                running[0] -= 1
            return i
        return run

    assert side_by_side(*(call(i) for i in range(5)), at_once=2) == [0, 1, 2, 3, 4]
    assert most[0] <= 2
