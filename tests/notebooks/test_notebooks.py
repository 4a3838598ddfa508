"""The notebooks run in a real Jupyter kernel on a real run and draw every figure they name.

Each notebook is executed by nbclient in a fresh ipykernel (matplotlib's inline backend),
with cwd = notebooks/ and SHARPEN_RUN pointing at a run directory made by real curation
(Spark), a real `run_mix` and a real training run (see notebook_run_fixture.py). A first,
injected cell makes `plt.show()` print `figure: <title>` before it shows, so a test can tell
which figure each image/png output is, and that none is missing or drawn twice.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
NAMES = ["explore_curated", "explore_mixtures", "training_curves"]
CELL_TIMEOUT_S = 120

# Every figure each notebook must draw, in order: the title of its figure (or suptitle).
FIGURES = {
    "explore_curated": [
        "Heuristic filter removals per rule",
        "Curated table: documents and characters per domain",
        "Cluster-size histogram of kept documents",
        "Quality buckets per domain (0 = worst)",
    ],
    "explore_mixtures": [
        "Tokens per stage by domain",
        "Domain shares per stage: recipe target vs shards",
        "Quality buckets per domain, per stage (tokens; 0 = worst)",
        "Repeat distribution: copies per document, per stage",
        "Re-planned shares of stage broad: recipe vs edited (estimated tokens)",
    ],
    "training_curves": [
        "Loss and learning rate per step, by stage",
        "Loss per domain, by step and by stage",
        "Throughput per step, by stage",
    ],
}

# Runs first in the kernel: which Python it is, and a plt.show() that names its figures.
INSTRUMENT = """\
import sys
import matplotlib.pyplot as plt
print("kernel python:", sys.executable)
_show = plt.show


def _show_and_name(*args, **kwargs):
    for num in plt.get_fignums():
        fig = plt.figure(num)
        titles = [fig.get_suptitle()] + [ax.get_title() for ax in fig.axes]
        print("figure:", next((t for t in titles if t), "<untitled>"))
    return _show(*args, **kwargs)


plt.show = _show_and_name
"""


def load(name: str) -> nbformat.NotebookNode:
    return nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)


def execute(name: str, run: Path) -> nbformat.NotebookNode:
    """Run the notebook (after INSTRUMENT) in a fresh python3 kernel; return it with outputs."""
    nb = load(name)
    nb.cells.insert(0, nbformat.v4.new_code_cell(INSTRUMENT))
    env = {**os.environ, "SHARPEN_RUN": str(run)}
    # the kernel imports the tree under test; ipykernel picks the inline backend
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.pop("MPLBACKEND", None)
    client = NotebookClient(
        nb,
        kernel_name="python3",
        timeout=CELL_TIMEOUT_S,
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    client.execute(env=env)
    return nb


def text_of(cell: nbformat.NotebookNode) -> str:
    """A code cell's printed text and the plain-text form of what it displayed."""
    parts = []
    for out in cell.get("outputs", []):
        if out.output_type == "stream":
            parts.append(out.text)
        elif out.output_type in ("display_data", "execute_result"):
            parts.append(out.data.get("text/plain", ""))
    return "\n".join(parts)


def all_text(nb: nbformat.NotebookNode) -> str:
    return "\n".join(text_of(c) for c in nb.cells if c.cell_type == "code")


@pytest.fixture(scope="module")
def executed(run_dir):
    """Each notebook executed once on the run, on first use."""
    cache: dict[str, nbformat.NotebookNode] = {}

    def get(name: str) -> nbformat.NotebookNode:
        if name not in cache:
            cache[name] = execute(name, run_dir)
        return cache[name]

    return get


@pytest.mark.parametrize("name", NAMES)
def test_notebook_is_clean_nbformat4(name):
    nb = json.loads((NOTEBOOKS / f"{name}.ipynb").read_text(encoding="utf-8"))
    nbformat.validate(nbformat.from_dict(nb))
    assert nb["nbformat"] == 4 and nb["nbformat_minor"] >= 4
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    ids = [c["id"] for c in nb["cells"]]
    assert len(set(ids)) == len(ids)
    for cell in nb["cells"]:
        assert isinstance(cell["source"], list)
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, cell["id"]
    code = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    assert 'RUN = os.environ.get("SHARPEN_RUN", "../runs/demo")' in code[0]
    assert "import matplotlib.pyplot as plt\n" in code[0]  # a dependency, not optional


def test_mixtures_notebook_ends_by_editing_the_recipe_and_replanning():
    section, code = load("explore_mixtures").cells[-2:]
    assert section.cell_type == "markdown"
    assert section.source.startswith("## Edit the recipe and re-plan")
    assert code.cell_type == "code" and "explain_mix(parse_recipe(edited)" in code.source


@pytest.mark.parametrize("name", NAMES)
def test_notebook_draws_every_figure(name, executed):
    nb = executed(name)
    assert f"kernel python: {sys.executable}" in text_of(nb.cells[0]), (
        "the python3 kernelspec runs another interpreter (see `jupyter kernelspec list`): "
        + text_of(nb.cells[0])
    )
    titles, images = [], 0
    for i, cell in enumerate(nb.cells[1:], start=1):
        if cell.cell_type != "code":
            continue
        named = re.findall(r"^figure: (.*)$", text_of(cell), flags=re.M)
        pngs = [o.data["image/png"] for o in cell.outputs if "image/png" in o.get("data", {})]
        assert len(pngs) == len(named), f"cell {i}: {len(pngs)} images for figures {named}"
        for png in pngs:
            data = base64.b64decode(png)
            assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, f"cell {i}"
        titles += named
        images += len(pngs)
    assert titles == FIGURES[name]
    assert images == len(FIGURES[name])


def test_explore_curated_reads_the_real_curation(executed, run_dir):
    out = all_text(executed("explore_curated"))
    stats = json.loads((run_dir / "curate" / "stats.json").read_text())
    counts = stats["counts"]
    assert counts["quarantined"] == 8 and counts["removed"] > 0 and counts["kept"] > 0
    assert (
        f"reconciled: in {counts['input']} = kept {counts['kept']} + removed {counts['removed']} "
        f"+ quarantined {counts['quarantined']}" in out
    )
    assert "removed/ agrees with stats.json per rule: True" in out
    assert any(f"filter:{rule}" in out for rule, n in stats["removed_by_filter"].items() if n)
    assert "malformed_json" in out
    # the cluster_id join: a keeper of cluster size n is listed with its n - 1 removed copies
    assert stats["clusters"]["largest"] > 1
    blocks = re.findall(
        r"^cluster \d+: keeper .*, size (\d+)\)\n((?:   removed .*\n)*)", out, flags=re.M
    )
    assert blocks and all(b.count("removed") == int(size) - 1 for size, b in blocks), blocks


def test_explore_mixtures_checks_the_shards(executed, run_dir):
    out = all_text(executed("explore_mixtures"))
    plan = json.loads((run_dir / "mix" / "plan.json").read_text())
    for stage in plan["stages"]:
        assert f"stage {stage}: shards agree with manifest and plan" in out
        assert f"stage {stage}, shard 0:" in out
    # each sampled row is printed as its ids, then its decoded text: real words, not ids
    lines = out.splitlines()
    decoded = [lines[i + 1] for i, ln in enumerate(lines[:-1]) if ln.startswith("     ids [")]
    assert decoded and all(re.search(r"[A-Za-z]{3,}\W+[A-Za-z]{2,}", d) for d in decoded), decoded


def test_training_curves_reads_the_real_run(executed, run_dir):
    out = all_text(executed("training_curves"))
    assert "stages ['pretrain', 'anneal']" in out
    assert "summary.json agrees with metrics.jsonl" in out
    rows = [json.loads(line) for line in (run_dir / "train" / "metrics.jsonl").open()]
    assert any(r.get("loss_by_domain") for r in rows)  # what the per-domain figure draws


def copy_run(run_dir: Path, dest: Path, *parts: str) -> Path:
    for part in parts:
        shutil.copytree(run_dir / part, dest / part)
    return dest


def corrupt_stats(run: Path) -> None:
    path = run / "curate" / "stats.json"
    stats = json.loads(path.read_text())
    stats["counts"]["kept"] += 1
    stats["counts"]["input"] += 1
    path.write_text(json.dumps(stats))


def corrupt_shard(run: Path) -> None:
    shard = run / "mix" / "anneal" / "shard-00000.arrow"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))


def drop_lr(run: Path) -> None:
    path = run / "train" / "metrics.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for row in rows:
        del row["lr"]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.mark.parametrize(
    ("name", "part", "corrupt", "error", "message"),
    [
        (
            "explore_curated",
            "curate",
            corrupt_stats,
            "ValueError",
            r"stats\.json: counts do not reconcile",
        ),
        ("explore_mixtures", "mix", corrupt_shard, "ShardError", "checksum mismatch"),
        (
            "training_curves",
            "train",
            drop_lr,
            "ValueError",
            r"metrics\.jsonl: lines lack field\(s\) \['lr'\]",
        ),
    ],
    ids=["counts-do-not-reconcile", "corrupt-shard", "metrics-lack-lr"],
)
def test_bad_run_fails_with_its_reason(name, part, corrupt, error, message, run_dir, tmp_path):
    run = copy_run(run_dir, tmp_path, part)
    corrupt(run)
    with pytest.raises(CellExecutionError) as info:
        execute(name, run)
    assert info.value.ename == error
    assert re.search(message, info.value.evalue), info.value.evalue


@pytest.mark.parametrize(
    ("name", "missing"),
    list(zip(NAMES, ["stats.json", "plan.json", "metrics.jsonl"], strict=True)),
)
def test_missing_run_names_the_file(name, missing, tmp_path):
    with pytest.raises(CellExecutionError) as info:
        execute(name, tmp_path)
    assert info.value.ename == "FileNotFoundError"
    assert missing in info.value.evalue and "SHARPEN_RUN" in info.value.evalue
