"""The code-reward sandbox: verdicts on honest programs, the test format, verdicts that the
program cannot forge, and the `sharpen sandbox run` command. The hostile programs are in
test_sandbox_hostile.py. Every isolation layer that works here is tested (bwrap, unshare).
"""

from __future__ import annotations

import json
import threading

import pytest
from sandbox_helpers import assert_no_strays

from sharpen.cli import main
from training.rewards import (
    SandboxLimits,
    available_isolation,
    code_reward,
    extract_code,
    parse_test_names,
    run_program,
)

LIMITS = SandboxLimits(wall_time_s=20)  # generous: the machine may be busy
SOLUTION = "def add(a, b):\n    return a + b\n"
TESTS = """
def test_small():
    assert add(1, 2) == 3

def test_negative():
    assert add(-1, -1) == -2

def test_import_works():
    import solution
    assert solution.add(2, 2) == 4
"""


def test_a_sandbox_is_available_here():
    from training.rewards.sandbox import ISOLATIONS, _probe

    assert available_isolation(), {iso: _probe(iso) for iso in ISOLATIONS}


def test_correct_solution_passes(isolation):
    v = run_program(SOLUTION, TESTS, limits=LIMITS, isolation=isolation)
    assert v.isolation == isolation
    assert v.reward == 1.0 and v.failed == [] and v.complete
    assert v.passed == ["test_small", "test_negative", "test_import_works"]
    assert v.exit_code == 0 and v.signal is None and v.limits_hit == []
    assert_no_strays()


def test_wrong_solution_fails_per_test(isolation):
    v = run_program(
        "def add(a, b):\n    return abs(a) + abs(b)\n", TESTS, limits=LIMITS, isolation=isolation
    )
    assert v.passed == ["test_small", "test_import_works"] and v.failed == ["test_negative"]
    assert v.reward == pytest.approx(2 / 3)
    assert "assert add(-1, -1) == -2" in v.failures["test_negative"]
    assert "AssertionError" in v.stderr and v.exit_code == 1


def test_syntax_error_fails_every_test(isolation):
    v = run_program("def add(a, b)\n    return a + b\n", TESTS, limits=LIMITS, isolation=isolation)
    assert v.reward == 0.0 and v.passed == [] and len(v.failed) == 3
    assert v.error.startswith("SyntaxError") and "SyntaxError" in v.stderr
    assert all(why.startswith("not run: SyntaxError") for why in v.failures.values())


def test_assert_script_and_plain_program(isolation):
    script = "assert add(2, 3) == 5\nassert add(0, 0) == 0\n"
    assert parse_test_names(script) == ["script"]
    good = run_program(SOLUTION, script, limits=LIMITS, isolation=isolation)
    assert (good.reward, good.passed) == (1.0, ["script"])
    bad = run_program("def add(a, b):\n    return 5\n", script, limits=LIMITS, isolation=isolation)
    assert (bad.reward, bad.failed) == (0.0, ["script"])
    assert "assert add(0, 0) == 0" in bad.failures["script"]
    ok = run_program("print('hello')\n", limits=LIMITS, isolation=isolation)
    assert (ok.reward, ok.passed, ok.stdout, ok.exit_code) == (1.0, ["program"], "hello\n", 0)
    exit3 = run_program("import sys\nsys.exit(3)\n", limits=LIMITS, isolation=isolation)
    assert (exit3.reward, exit3.exit_code, exit3.failures) == (0.0, 3, {"program": "exit status 3"})


def test_forged_records_do_not_count(isolation):
    """Printing records, writing them unsigned to the result pipe, patching the writer or
    exiting early: none passes a test."""
    forged = json.dumps({"t": "test", "name": "test_small", "ok": True})
    programs = [
        f"import os\nprint({forged!r})\nos.write(3, {forged!r}.encode() + b'\\n')\nos._exit(0)\n",
        "import json\n_d = json.dumps\n"
        "json.dumps = lambda o, *a, **k: _d({**o, 'ok': True} if isinstance(o, dict) else o)\n"
        "def add(a, b):\n    return 0\n",
        "import sys\nsys.exit(0)\n",
        "raise SystemExit\n",
    ]
    for source in programs:
        v = run_program(source, TESTS, limits=LIMITS, isolation=isolation)
        assert v.reward == 0.0 and v.passed == [], (source, v)


def test_tests_are_checked_before_anything_runs():
    with pytest.raises(ValueError, match="tests"):
        run_program(SOLUTION, "def test_x(:\n", limits=LIMITS)
    with pytest.raises(ValueError, match="empty"):
        run_program(SOLUTION, "# nothing\n", limits=LIMITS)
    with pytest.raises(ValueError, match="positive"):
        SandboxLimits(wall_time_s=0)
    with pytest.raises(ValueError, match="isolation"):
        run_program(SOLUTION, TESTS, limits=LIMITS, isolation="docker")


def test_code_reward_extracts_the_code():
    completion = f"Here you go:\n```text\nnot code\n```\n```python\n{SOLUTION}```\nDone."
    assert extract_code(completion) == SOLUTION
    assert extract_code(SOLUTION) == SOLUTION
    assert code_reward(completion, TESTS, limits=LIMITS) == 1.0
    assert code_reward(
        "```py\ndef add(a, b):\n    return a + b if a > 0 else 0\n```", TESTS, limits=LIMITS
    ) == pytest.approx(2 / 3)


def test_concurrent_runs_with_a_fork_bomb_among_them(isolation):
    """GRPO scores a group at once: each sandbox has its own process count, so a fork bomb
    in one does not stop the others from forking."""
    bomb = (
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    )
    forking = SOLUTION + "import subprocess, sys\nsubprocess.run([sys.executable, '-c', 'pass'])\n"
    limits = SandboxLimits(wall_time_s=20, cpu_time_s=2, processes=16)
    sources = [bomb, forking, forking, forking]
    verdicts: dict[int, object] = {}

    def score(i: int) -> None:
        verdicts[i] = run_program(sources[i], TESTS, limits=limits, isolation=isolation)

    threads = [threading.Thread(target=score, args=(i,)) for i in range(len(sources))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert verdicts[0].reward == 0.0 and "processes" in verdicts[0].limits_hit
    assert [verdicts[i].reward for i in (1, 2, 3)] == [1.0, 1.0, 1.0]
    assert_no_strays()


def test_cli_prints_the_verdict(tmp_path, capsys, isolation):
    program, tests = tmp_path / "p.py", tmp_path / "t.py"
    program.write_text(SOLUTION)
    tests.write_text(TESTS)
    rc = main(
        [
            "sandbox",
            "run",
            str(program),
            "--tests",
            str(tests),
            "--timeout",
            "20",
            "--memory",
            "256",
            "--isolation",
            isolation,
        ]
    )
    assert rc == 0
    verdict = json.loads(capsys.readouterr().out)
    assert verdict["reward"] == 1.0 and verdict["isolation"] == isolation
    assert set(verdict) >= {"passed", "failed", "exit_code", "limits_hit", "stdout", "stderr"}
    program.write_text("while True:\n    pass\n")  # a failing verdict is still exit status 0
    assert main(["sandbox", "run", str(program), "--timeout", "3", "--isolation", isolation]) == 0
    assert json.loads(capsys.readouterr().out)["reward"] == 0.0


def test_cli_missing_file_is_one_line(tmp_path, capsys):
    rc = main(["sandbox", "run", str(tmp_path / "nope.py")])
    err = capsys.readouterr().err
    assert rc == 2 and "nope.py" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
