"""The launcher names a rank that died without a word from the ranks' own marks, for when
torchrun dies before printing its failure report."""

from __future__ import annotations

import json
from pathlib import Path

from training.launch import silent_ranks


def test_a_rank_that_started_and_never_ended_nor_errored_is_named(tmp_path: Path) -> None:
    marks = tmp_path / "rank-marks"
    marks.mkdir()
    for r in (0, 1, 2):
        (marks / f"{r}.started").touch()
    (marks / "2.ended").touch()  # finished cleanly
    err = tmp_path / "run-id" / "attempt_0" / "0"
    err.mkdir(parents=True)
    (err / "error.json").write_text(json.dumps({"message": "connection reset by peer"}))
    assert silent_ranks(tmp_path) == [
        "rank 1 failed: killed by a signal without an error report (e.g. SIGKILL, the OOM "
        "killer)"]
    assert silent_ranks(tmp_path / "nothing-here") == []
