"""Training faults against real torchrun (2 gloo ranks on CPU) and real files.

What a kill, a forgotten `--resume`, a failing rank or a broken plan does to a run
directory and to what the user reads. Nothing is mocked: processes are killed with
SIGKILL, shards are corrupted on disk, and `sharpen` runs as a subprocess.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pyarrow as pa
import pyarrow.ipc as ipc
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "training"))

from shard_fixtures import write_mixture  # noqa: E402

from sharpen.cli import main as sharpen_main  # noqa: E402
from training.metrics import MetricsWriter, read_metrics  # noqa: E402
from training.plan import PlanError, load_plan  # noqa: E402

ROOT = Path(__file__).parents[2]
LOG_LINE = re.compile(r"^\d\d:\d\d:\d\d (rank\d+ )?(DEBUG|INFO|WARNING) ")  # echoed log lines

# Long enough (STEPS) that a run is still going when the test kills it; `--stop-after`
# ends the runs that must finish.
PLAN = """
model: {dim: 32, n_layers: 1, n_heads: 2, n_kv_heads: 1, ffn_hidden: 64, max_seq_len: 32}
seed: 5
stages:
  - {name: pretrain, data: broad, steps: 400, seq_len: 32, batch_size: 2, lr: 0.01,
     checkpoint_every: EVERY}
  - {name: anneal, data: anneal, steps: 4, seq_len: 32, batch_size: 2, lr: null,
     decay_fraction: 1.0}
"""


@pytest.fixture(scope="module")
def mixture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_mixture(tmp_path_factory.mktemp("mix"))


def write_plan(path: Path, every: int | None) -> Path:
    path.write_text(PLAN.replace("EVERY", "null" if every is None else str(every)))
    return path


def train_argv(plan: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--plan", str(plan), "--data", str(data), "--output", str(out), *extra]


def sharpen(*argv: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sharpen.cli", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def start_sharpen(*argv: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "sharpen.cli", *argv],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_rows(metrics: Path, n: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if metrics.is_file() and metrics.read_bytes().count(b"\n") >= n:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.01)
    raise AssertionError(f"{metrics}: fewer than {n} rows after {timeout}s")


def kill_everything(proc: subprocess.Popen) -> None:
    """SIGKILL sharpen, torchrun and every rank at once, as a lost machine would."""
    tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    for p in tree:
        p.send_signal(signal.SIGKILL)
    psutil.wait_procs(tree, timeout=30)
    proc.communicate()


def rank_process(proc: subprocess.Popen, rank: int) -> psutil.Process:
    for p in psutil.Process(proc.pid).children(recursive=True):
        try:
            if p.environ().get("RANK") == str(rank) and "training.pretrain" in p.cmdline():
                return p
        except psutil.NoSuchProcess:
            continue
    raise AssertionError(f"no rank {rank} process")


def snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def one_error_line(stderr: str) -> str:
    """The single `sharpen train: error:` line; every other line must be a log line."""
    errors = [line for line in stderr.splitlines() if line.startswith("sharpen train: error:")]
    others = [line for line in stderr.splitlines() if line not in errors]
    assert len(errors) == 1, stderr
    assert all(LOG_LINE.match(line) for line in others), stderr
    assert "Traceback" not in stderr
    return errors[0]


@pytest.mark.slow
def test_output_with_checkpoints_is_refused_without_resume(mixture: Path, tmp_path: Path):
    plan, out = write_plan(tmp_path / "plan.yaml", 2), tmp_path / "run"
    first = sharpen(*train_argv(plan, mixture, out, "--stop-after", "pretrain:3"))
    assert first.returncode == 0, first.stderr
    before = snapshot(out)
    assert "checkpoints/pretrain.step3/trainer_state.json" in before

    refused = sharpen(*train_argv(plan, mixture, out))

    assert refused.returncode == 2
    line = one_error_line(refused.stderr)
    assert str(out / "checkpoints" / "pretrain.step3") in line
    assert "stage pretrain, step 3" in line and "--resume" in line and "--output" in line
    assert snapshot(out) == before  # not a byte written: checkpoints, metrics, train.log


@pytest.mark.slow
def test_killed_run_resumes_with_every_step_logged_once(mixture: Path, tmp_path: Path):
    plan, out = write_plan(tmp_path / "plan.yaml", 5), tmp_path / "run"
    metrics = out / "metrics.jsonl"
    proc = start_sharpen(*train_argv(plan, mixture, out))
    wait_for_rows(metrics, 12, proc)  # the step-5 checkpoint is complete before row 6
    kill_everything(proc)
    killed = read_metrics(metrics)
    assert (out / "checkpoints" / "latest.json").is_file()
    with metrics.open("a") as f:  # a write torn by the kill
        f.write('{"step": 999, "stage": "pretr')

    stop = len(killed) + 3
    resumed = sharpen(
        *train_argv(plan, mixture, out, "--resume", "--stop-after", f"pretrain:{stop}")
    )

    assert resumed.returncode == 0, resumed.stderr
    assert "dropping an incomplete last line" in resumed.stderr
    rows = read_metrics(metrics)
    assert [r["step"] for r in rows] == list(range(1, stop + 1))
    # Steps that ran twice (after the checkpoint, before the kill) logged the same loss.
    assert [r["loss"] for r in rows[: len(killed)]] == [r["loss"] for r in killed]
    assert metrics.read_text().endswith("\n")
    attempts = [x for x in (out / "train.log").read_text().splitlines() if x.startswith("==== ")]
    assert len(attempts) == 2  # the killed attempt's log is kept


@pytest.mark.slow
def test_fresh_start_keeps_metrics_of_a_run_killed_before_any_checkpoint(
    mixture: Path, tmp_path: Path
):
    plan, out = write_plan(tmp_path / "plan.yaml", None), tmp_path / "run"
    metrics = out / "metrics.jsonl"
    proc = start_sharpen(*train_argv(plan, mixture, out))
    wait_for_rows(metrics, 3, proc)
    kill_everything(proc)
    old = metrics.read_bytes()
    assert not (out / "checkpoints" / "latest.json").exists()

    fresh = sharpen(*train_argv(plan, mixture, out, "--stop-after", "pretrain:2"))

    assert fresh.returncode == 0, fresh.stderr
    assert "kept the previous run's file as metrics.jsonl.prev-1" in fresh.stderr
    assert (out / "metrics.jsonl.prev-1").read_bytes() == old
    assert [r["step"] for r in read_metrics(metrics)] == [1, 2]


def corrupt_shard(path: Path) -> None:
    """Same rows and tokens in another order: only rank 0's sha256 check can tell."""
    table = ipc.open_file(pa.BufferReader(path.read_bytes())).read_all()
    table = table.take(list(reversed(range(table.num_rows))))
    with ipc.new_file(str(path), table.schema) as writer:
        writer.write_table(table)


@pytest.mark.slow
def test_failing_rank_is_reported_on_one_line(tmp_path: Path):
    data = write_mixture(tmp_path / "mix")
    corrupt_shard(data / "broad" / "shard-00000.arrow")
    plan, out = write_plan(tmp_path / "plan.yaml", None), tmp_path / "run"

    failed = sharpen(*train_argv(plan, data, out))

    assert failed.returncode == 2
    line = one_error_line(failed.stderr)
    # every rank verifies the shards it reads: whichever finds it first is the root cause
    assert re.match(r"sharpen train: error: rank [01] failed: ShardError: ", line), line
    assert "shard-00000.arrow: checksum mismatch" in line
    assert line.endswith(f"(full log: {out / 'train.log'})")
    log = (out / "train.log").read_text()
    assert "Traceback" in log and "checksum mismatch" in log

    verbose = sharpen("-v", *train_argv(plan, data, out))

    assert verbose.returncode != 0
    assert re.search(r"\[rank[01]\]: Traceback", verbose.stderr)
    assert "checksum mismatch" in verbose.stderr


@pytest.mark.slow
def test_rank_killed_by_a_signal_is_the_root_cause(mixture: Path, tmp_path: Path):
    plan, out = write_plan(tmp_path / "plan.yaml", None), tmp_path / "run"
    proc = start_sharpen(*train_argv(plan, mixture, out))
    wait_for_rows(out / "metrics.jsonl", 3, proc)
    rank_process(proc, 1).send_signal(signal.SIGKILL)  # as the kernel's OOM killer does
    _, stderr = proc.communicate(timeout=120)

    assert proc.returncode == 2
    line = one_error_line(stderr)
    # Not rank 0's "connection reset by peer", which comes after and only because of it.
    # Torchrun's report says the signal; when torchrun dies before its report (it reads
    # rank 0's error file while rank 0 writes it), the ranks' own marks still name rank 1.
    assert ("rank 1 failed: Signal 9 (SIGKILL)" in line
            or "rank 1 failed: killed by a signal" in line), line


BAD_YAML = """\
model: {dim: 32, n_layers: 1, n_heads: 2, n_kv_heads: 1, ffn_hidden: 64, max_seq_len: 32}
stages:
  - name: pretrain
    data: broad
    steps: 4: 5
"""


def test_invalid_yaml_plan_is_one_line_with_file_and_line(tmp_path: Path, capsys):
    plan = tmp_path / "plan.yaml"
    plan.write_text(BAD_YAML)
    with pytest.raises(PlanError, match=rf"^{re.escape(str(plan))}:5: invalid YAML: "):
        load_plan(plan)

    rc = sharpen_main(train_argv(plan, tmp_path, tmp_path / "run"))

    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith(f"sharpen train: error: {plan}:5: invalid YAML: mapping values")
    assert err.count("\n") == 1
    assert not (tmp_path / "run").exists()


def rows(*steps: int) -> str:
    return "".join(f'{{"step": {s}, "stage": "a", "loss": 1.0, "tokens": 8}}\n' for s in steps)


def test_read_metrics_drops_only_a_torn_last_line(tmp_path: Path, caplog):
    path = tmp_path / "metrics.jsonl"
    path.write_text(rows(1, 2) + '{"step": 3, "sta')
    with caplog.at_level("WARNING"):
        assert [r["step"] for r in read_metrics(path)] == [1, 2]
    assert "metrics.jsonl:3: dropping an incomplete last line" in caplog.text
    path.write_text(rows(1) + '{"step": 2, "sta\n' + rows(3))
    with pytest.raises(ValueError, match=r"metrics\.jsonl:2: not a JSON line"):
        read_metrics(path)


def test_resume_appends_or_replaces_metrics_never_truncates(tmp_path: Path):
    path = tmp_path / "metrics.jsonl"
    path.write_text(rows(1, 2, 3, 4, 5))
    inode = path.stat().st_ino
    writer = MetricsWriter(path, enabled=True, keep_through_step=5)  # nothing to drop
    writer.log({"step": 6, "stage": "a", "loss": 1.0, "tokens": 8})
    writer.close()
    assert path.stat().st_ino == inode and path.read_text() == rows(1, 2, 3, 4, 5, 6)

    with path.open() as reader_of_the_old_file:
        MetricsWriter(path, enabled=True, keep_through_step=3).close()
        # The old file was replaced by a rename, not truncated: its content is intact.
        assert reader_of_the_old_file.read() == rows(1, 2, 3, 4, 5, 6)
    assert path.stat().st_ino != inode and path.read_text() == rows(1, 2, 3)
    assert sorted(os.listdir(tmp_path)) == ["metrics.jsonl"]  # no temporary left behind


def test_fresh_metrics_writer_moves_old_files_aside(tmp_path: Path):
    path = tmp_path / "metrics.jsonl"
    for steps in ((1, 2), (1,), (1, 2, 3)):
        path.write_text(rows(*steps))
        MetricsWriter(path, enabled=True).close()
        assert path.read_text() == ""
    assert (tmp_path / "metrics.jsonl.prev-1").read_text() == rows(1, 2)
    assert (tmp_path / "metrics.jsonl.prev-2").read_text() == rows(1)
    assert (tmp_path / "metrics.jsonl.prev-3").read_text() == rows(1, 2, 3)
