"""The notebooks are valid, output-free nbformat-4 files, and every code cell runs on a real run.

Each notebook is executed cell by cell in a fresh namespace, with cwd = notebooks/ and
SHARPEN_RUN pointing at a small run directory built from real curation filters, a real
`run_mix` and the trainer's metrics writer (no Spark, no torchrun).
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import pytest

from mixtures.shards import ShardError

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
NAMES = ["explore_curated", "explore_mixtures", "training_curves"]


def load(name: str) -> dict:
    return json.loads((NOTEBOOKS / f"{name}.ipynb").read_text(encoding="utf-8"))


def run_notebook(name: str, run: Path, monkeypatch) -> dict:
    """Exec every code cell in order in one fresh namespace; return that namespace."""
    monkeypatch.chdir(NOTEBOOKS)
    monkeypatch.setenv("SHARPEN_RUN", str(run))
    namespace: dict = {"__name__": "__main__"}
    cells = [c for c in load(name)["cells"] if c["cell_type"] == "code"]
    for i, cell in enumerate(cells):
        exec(compile("".join(cell["source"]), f"{name}.ipynb[code cell {i}]", "exec"), namespace)
    return namespace


@pytest.fixture
def no_matplotlib(monkeypatch):
    """Make `import matplotlib.pyplot` fail, as on a machine without it."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)


@pytest.mark.parametrize("name", NAMES)
def test_notebook_is_clean_nbformat4(name):
    nb = load(name)
    assert nb["nbformat"] == 4 and nb["nbformat_minor"] >= 4
    assert nb["metadata"]["kernelspec"]["language"] == "python"
    kinds = {c["cell_type"] for c in nb["cells"]}
    assert kinds == {"markdown", "code"}
    ids = [c["id"] for c in nb["cells"]]
    assert len(set(ids)) == len(ids)
    for cell in nb["cells"]:
        assert isinstance(cell["source"], list)
        assert all(isinstance(line, str) for line in cell["source"])
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, cell["id"]
    first_code = next(c for c in nb["cells"] if c["cell_type"] == "code")
    assert 'RUN = os.environ.get("SHARPEN_RUN", "../runs/demo")' in "".join(first_code["source"])


def test_explore_curated_runs(run_dir, monkeypatch, capsys, no_matplotlib):
    ns = run_notebook("explore_curated", run_dir, monkeypatch)
    out = capsys.readouterr().out
    counts = json.loads((run_dir / "curate" / "stats.json").read_text())["counts"]
    assert ns["plt"] is None
    assert (
        f"reconciled: in {counts['input']} = kept {counts['kept']} + removed {counts['removed']} "
        f"+ quarantined {counts['quarantined']}" in out
    )
    assert "removed/ agrees with stats.json per rule: True" in out
    assert len(ns["curated"]) == counts["kept"]
    top = ns["top"]
    assert top["cluster_size"].max() > 1
    assert (top["removed_members"] == top["cluster_size"] - 1).all()  # the cluster_id join
    removed_rules = json.loads((run_dir / "curate" / "stats.json").read_text())["removed_by_filter"]
    assert any(f"filter:{rule}" in out for rule, n in removed_rules.items() if n)
    assert "malformed_json" in out


def test_explore_mixtures_runs(run_dir, monkeypatch, capsys, no_matplotlib):
    ns = run_notebook("explore_mixtures", run_dir, monkeypatch)
    out = capsys.readouterr().out
    plan = json.loads((run_dir / "mix" / "plan.json").read_text())
    for stage in plan["stages"]:
        assert f"stage {stage}: shards agree with manifest and plan" in out
        assert f"stage {stage}, shard 0:" in out
        assert ns["by_domain"][stage]["shard_tokens"].sum() == plan["stages"][stage]["tokens"]
    assert ns["overview"].loc["broad", "shards"] > 1
    # each sampled row is printed as its ids, then its decoded text: real words, not ids
    lines = out.splitlines()
    decoded = [lines[i + 1] for i, ln in enumerate(lines[:-1]) if ln.startswith("     ids [")]
    assert decoded and all(re.search(r"[A-Za-z]{3,}\W+[A-Za-z]{2,}", d) for d in decoded), decoded


def test_training_curves_runs(run_dir, monkeypatch, capsys, no_matplotlib):
    ns = run_notebook("training_curves", run_dir, monkeypatch)
    out = capsys.readouterr().out
    assert ns["stages"] == ["pretrain", "anneal"]
    assert "summary.json agrees with metrics.jsonl" in out
    assert "text sparklines" in out
    assert ns["per_stage"].loc["anneal", "final_lr"] < ns["per_stage"].loc["pretrain", "peak_lr"]


@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_with_matplotlib(name, run_dir, monkeypatch, capsys):
    monkeypatch.setenv("MPLBACKEND", "Agg")
    plt = pytest.importorskip("matplotlib.pyplot")
    try:
        ns = run_notebook(name, run_dir, monkeypatch)
        assert ns["plt"] is plt
    finally:
        plt.close("all")


def test_curated_counts_that_do_not_reconcile_fail(run_dir, tmp_path, monkeypatch, no_matplotlib):
    shutil.copytree(run_dir / "curate", tmp_path / "curate")
    stats_path = tmp_path / "curate" / "stats.json"
    stats = json.loads(stats_path.read_text())
    stats["counts"]["kept"] += 1
    stats["counts"]["input"] += 1
    stats_path.write_text(json.dumps(stats))
    with pytest.raises(ValueError, match=r"stats\.json: counts do not reconcile"):
        run_notebook("explore_curated", tmp_path, monkeypatch)


def test_corrupt_shard_fails_on_open(run_dir, tmp_path, monkeypatch, no_matplotlib):
    shutil.copytree(run_dir / "mix", tmp_path / "mix")
    shard = tmp_path / "mix" / "anneal" / "shard-00000.arrow"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(ShardError, match="checksum mismatch"):
        run_notebook("explore_mixtures", tmp_path, monkeypatch)


def test_metrics_missing_a_field_fail(run_dir, tmp_path, monkeypatch, no_matplotlib):
    (tmp_path / "train").mkdir()
    lines = (run_dir / "train" / "metrics.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    for row in rows:
        del row["lr"]
    (tmp_path / "train" / "metrics.jsonl").write_text("\n".join(map(json.dumps, rows)) + "\n")
    with pytest.raises(ValueError, match=r"metrics\.jsonl: lines lack field\(s\) \['lr'\]"):
        run_notebook("training_curves", tmp_path, monkeypatch)


def test_missing_run_names_the_file(tmp_path, monkeypatch, no_matplotlib):
    for name, missing in zip(NAMES, ["stats.json", "plan.json", "metrics.jsonl"], strict=True):
        with pytest.raises(FileNotFoundError, match=missing):
            run_notebook(name, tmp_path, monkeypatch)
