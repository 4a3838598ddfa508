"""Mixture faults: what `sharpen mix` / `sharpen train` report, and what is left on disk.

Every test drives the real CLI (`sharpen.cli.main`) on a small real curated table (the
mixtures tests' corpus builder) and checks the exit code, the one-line error and the
files on disk. Nothing is mocked: the full disk is a real size-limited tmpfs.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pytest
import yaml

from sharpen.cli import main

_MIXTURES_TESTS = str(Path(__file__).resolve().parents[1] / "mixtures")
if _MIXTURES_TESTS not in sys.path:
    sys.path.insert(0, _MIXTURES_TESTS)

from mix_corpus_fixture import corpus_rows, write_curated  # noqa: E402

RECIPE = {
    "seed": 5,
    "shard_tokens": 2_000,
    "tokenizer": {"vocab_size": 512, "sample_bytes": 200_000},
    "stages": [
        {  # no filters: the report's unique_tokens are each domain's whole supply
            "name": "broad",
            "token_budget": 80_000,
            "domain_shares": {
                "web": 0.4,
                "code": 0.3,
                "reference": 0.15,
                "math": 0.1,
                "books": 0.05,
            },
        },
        {
            "name": "anneal",
            "token_budget": 40_000,
            "domain_shares": {"code": 0.5, "math": 0.2, "web": 0.3},
            "min_quality_bucket": 1,
            "repeat_cap": 2,
        },
    ],
}

TINY_PLAN = {
    "model": {
        "dim": 32,
        "n_layers": 1,
        "n_heads": 2,
        "n_kv_heads": 1,
        "ffn_hidden": 64,
        "max_seq_len": 64,
    },
    "seed": 0,
    "stages": [
        {
            "name": "pretrain",
            "data": "broad",
            "steps": 2,
            "seq_len": 32,
            "batch_size": 2,
            "lr": 1.0e-3,
        },
        {
            "name": "anneal",
            "data": "anneal",
            "steps": 2,
            "seq_len": 32,
            "batch_size": 2,
            "lr": 1.0e-3,
        },
    ],
}


@pytest.fixture(scope="module")
def curated(tmp_path_factory) -> Path:
    return write_curated(tmp_path_factory.mktemp("curate_out"), corpus_rows())


@pytest.fixture(scope="module")
def recipe_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("recipe") / "recipe.yaml"
    path.write_text(yaml.safe_dump(RECIPE))
    return path


@pytest.fixture(scope="module")
def clean_mix(curated, recipe_file, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("clean") / "mix"
    assert main(_mix_argv(curated, recipe_file, out)) == 0
    return out


def _sharpen(capsys, *argv: str) -> tuple[int, str]:
    """Run the CLI; return its exit code and its single error line (asserted single)."""
    rc = main(list(argv))
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if f"sharpen {argv[0]}: error:" in line]
    assert len(lines) <= 1, err
    return rc, lines[0] if lines else ""


def _mix_argv(curated: Path, recipe: Path, out: Path, *extra: str) -> list[str]:
    return ["mix", "--curated", str(curated), "--recipe", str(recipe), "--output", str(out), *extra]


def _mix(capsys, curated: Path, recipe: Path, out: Path, *extra: str) -> tuple[int, str]:
    return _sharpen(capsys, *_mix_argv(curated, recipe, out, *extra))


def _files(stage_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(stage_dir.iterdir())}


# --- 1. the planner's shortfall warning ------------------------------------------------


def test_shortfall_warning_names_only_domains_short_of_their_own_target(
    clean_mix, curated, tmp_path, capsys, caplog
):
    # books cannot fill its share; math could fill its own but is capped after taking
    # over part of books' shortfall; reference absorbs the rest. Only books is short.
    report = json.loads((clean_mix / "plan.json").read_text())["stages"]["broad"]["report"]
    supply = {d: report["domains"][d]["unique_tokens"] for d in ("books", "math", "reference")}
    budget = supply["books"] + supply["math"] + supply["reference"] // 2
    math_share = round(0.9 * supply["math"] / budget, 6)
    shares = {"books": 0.5, "math": math_share, "reference": round(0.5 - math_share, 6)}
    recipe = tmp_path / "lean.yaml"
    stage = {"name": "lean", "token_budget": budget, "domain_shares": shares, "repeat_cap": 1}
    recipe.write_text(yaml.safe_dump({**RECIPE, "stages": [stage]}))
    tokenizer = str(clean_mix / "tokenizer" / "tokenizer.json")
    with caplog.at_level(logging.WARNING, logger="mixtures"):
        rc, err = _mix(capsys, curated, recipe, tmp_path / "out", "--tokenizer", tokenizer)
    assert rc == 0 and err == ""
    plan = json.loads((tmp_path / "out" / "plan.json").read_text())
    domains = plan["stages"]["lean"]["report"]["domains"]
    assert domains["books"]["shortfall"] > 0
    assert domains["math"]["saturated"] and domains["math"]["received"] > 0
    assert domains["math"]["shortfall"] == 0 and domains["math"]["target"] < supply["math"]
    assert not domains["reference"]["saturated"]
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warned) == 1 and "domain books can supply" in warned[0], warned


# --- 2./3. validation before the output exists -----------------------------------------


def _bad_shares(tmp: Path, curated: Path, recipe: Path) -> tuple[list[str], str]:
    bad = tmp / "bad.yaml"
    bad.write_text(
        yaml.safe_dump(
            {
                **RECIPE,
                "stages": [{**RECIPE["stages"][0], "domain_shares": {"web": 0.5, "code": 0.4}}],
            }
        )
    )
    return ["--recipe", str(bad), "--curated", str(curated)], rf"{bad}: stages\.0\.domain_shares"


def _bad_yaml(tmp: Path, curated: Path, recipe: Path) -> tuple[list[str], str]:
    bad = tmp / "broken.yaml"
    bad.write_text("seed: 5\nstages:\n  - name: broad\n   token_budget: 10\n")
    return ["--recipe", str(bad), "--curated", str(curated)], rf"{bad}: not valid YAML at line 4"


def _no_table(tmp: Path, curated: Path, recipe: Path) -> tuple[list[str], str]:
    return ["--recipe", str(recipe), "--curated", str(tmp / "nope")], "curated table not found"


def _no_text(tmp: Path, curated: Path, recipe: Path) -> tuple[list[str], str]:
    ds.write_dataset(pa.table({"id": ["a"], "domain": ["web"]}), tmp / "notext", format="parquet")
    return ["--recipe", str(recipe), "--curated", str(tmp / "notext")], r"lacks column.*text"


def _no_tokenizer(tmp: Path, curated: Path, recipe: Path) -> tuple[list[str], str]:
    argv = ["--recipe", str(recipe), "--curated", str(curated), "--tokenizer", str(tmp / "t.json")]
    return argv, r"t\.json: tokenizer file not found"


def _bad_tokenizer(tmp: Path, curated: Path, recipe: Path) -> tuple[list[str], str]:
    (tmp / "t.json").write_text("{not json")
    argv = ["--recipe", str(recipe), "--curated", str(curated), "--tokenizer", str(tmp / "t.json")]
    return argv, r"t\.json: not a valid tokenizer\.json"


def _bad_stats(tmp: Path, curated: Path, recipe: Path) -> tuple[list[str], str]:
    shutil.copytree(curated, tmp / "cur")
    (tmp / "cur" / "stats.json").write_text("{")
    return ["--recipe", str(recipe), "--curated", str(tmp / "cur")], "stats.json: unreadable"


@pytest.mark.parametrize(
    "case",
    [_bad_shares, _bad_yaml, _no_table, _no_text, _no_tokenizer, _bad_tokenizer, _bad_stats],
)
def test_invalid_input_fails_in_one_line_and_creates_no_output(
    case: Callable, curated, recipe_file, tmp_path, capsys
):
    argv, match = case(tmp_path, curated, recipe_file)
    out = tmp_path / "new" / "mix"
    rc, err = _sharpen(capsys, "mix", *argv, "--output", str(out))
    assert rc == 2
    assert err.startswith("sharpen mix: error: ")
    assert re.search(match, err), err
    assert not (tmp_path / "new").exists()


def test_output_holding_foreign_files_is_refused_untouched(curated, recipe_file, tmp_path, capsys):
    out = tmp_path / "mix"
    (out / "anneal").mkdir(parents=True)
    (out / "anneal" / "notes.txt").write_text("mine")
    rc, err = _mix(capsys, curated, recipe_file, out)
    assert rc == 2 and "anneal: holds ['notes.txt']" in err
    assert sorted(p.name for p in out.iterdir()) == ["anneal"]  # not even a tokenizer
    assert (out / "anneal" / "notes.txt").read_text() == "mine"


# --- 4./5. a damaged stage fails `sharpen train` before torchrun -------------------------


@pytest.fixture
def train_args(clean_mix, tmp_path) -> tuple[Path, list[str]]:
    data = tmp_path / "data"
    shutil.copytree(clean_mix, data)
    plan = tmp_path / "tiny.yaml"
    plan.write_text(yaml.safe_dump(TINY_PLAN))
    out = tmp_path / "run"
    return data, ["train", "--plan", str(plan), "--data", str(data), "--output", str(out)]


def _assert_not_launched(argv: list[str]) -> None:
    out = Path(argv[argv.index("--output") + 1])
    assert not (out / "train.log").exists() and not (out / "checkpoints").exists()


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-64])


@pytest.mark.parametrize("damage", [Path.unlink, _truncate], ids=["missing", "truncated"])
def test_damaged_shard_fails_train_before_launch(train_args, capsys, damage):
    data, argv = train_args
    shard = data / "anneal" / "shard-00001.arrow"  # the second stage: all are opened up front
    damage(shard)
    rc, err = _sharpen(capsys, *argv)
    assert rc == 2
    assert err.startswith("sharpen train: error: ") and f"{shard}:" in err
    _assert_not_launched(argv)


def _swap(counts: dict[str, int]) -> None:
    """Move one token between two keys: the sum still matches total_tokens."""
    a, b = sorted(counts)[:2]
    counts[a], counts[b] = counts[a] - 1, counts[b] + 1


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda m: m.update(total_tokens=m["total_tokens"] - 10), "total_tokens"),
        (lambda m: _swap(m["tokens_by_domain"]), "tokens_by_domain"),
        (lambda m: _swap(m["tokens_by_quality_bucket"]), "tokens_by_quality_bucket"),
    ],
    ids=["total_tokens", "tokens_by_domain", "tokens_by_quality_bucket"],
)
def test_manifest_totals_that_do_not_add_up_fail_train(train_args, capsys, edit, field):
    data, argv = train_args
    manifest = data / "broad" / "manifest.json"
    content = json.loads(manifest.read_text())
    edit(content)
    manifest.write_text(json.dumps(content))
    rc, err = _sharpen(capsys, *argv)
    assert rc == 2
    assert f"{manifest}: manifest field '{field}'" in err
    _assert_not_launched(argv)


# --- 6. a full disk ----------------------------------------------------------------------


@pytest.fixture
def tmpfs(tmp_path) -> Iterator[tuple[Path, Callable[[int], None]]]:
    """A tmpfs at tmp_path/disk and a function that (re)mounts it with a size in KiB."""
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a size-limited tmpfs")
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = False

    def size(kib: int) -> None:
        nonlocal mounted
        opts = f"remount,size={kib}k" if mounted else f"size={kib}k"
        r = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(disk)],
            capture_output=True,
            text=True,
            check=False,
        )
        if r.returncode:
            if not mounted:
                pytest.skip(f"cannot mount tmpfs: {r.stderr.strip()}")
            raise RuntimeError(f"tmpfs remount failed: {r.stderr.strip()}")
        mounted = True

    try:
        yield disk, size
    finally:
        if mounted:
            subprocess.run(["umount", str(disk)], check=True)


def test_full_disk_fails_in_one_line_and_rerun_matches_clean_run(
    tmpfs, clean_mix, curated, recipe_file, capsys
):
    disk, size = tmpfs
    out = disk / "mix"
    tok_bytes = (clean_mix / "tokenizer" / "tokenizer.json").stat().st_size
    broad_bytes = sum(p.stat().st_size for p in (clean_mix / "broad").iterdir())
    size((tok_bytes + broad_bytes // 2) // 1024 + 8)  # the tokenizer fits, broad does not

    rc, err = _mix(capsys, curated, recipe_file, out)
    assert rc == 2
    assert err.startswith("sharpen mix: error: ") and "No space left on device" in err
    assert f"{out}/.broad.partial/shard-" in err  # names the file that could not be written
    assert sorted(p.name for p in out.iterdir()) == ["tokenizer"]  # no stage, no plan.json

    size(16 * 1024)
    assert _mix(capsys, curated, recipe_file, out) == (0, "")
    assert sorted(p.name for p in out.iterdir()) == ["anneal", "broad", "plan.json", "tokenizer"]
    for stage in ("broad", "anneal"):
        assert _files(out / stage) == _files(clean_mix / stage)
    assert (out / "plan.json").read_bytes() == (clean_mix / "plan.json").read_bytes()

    # Full again during a rerun: the stage being rewritten no longer looks complete.
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    (disk / "filler").write_bytes(b"\0" * (free - tok_bytes - broad_bytes // 2))
    rc, err = _mix(capsys, curated, recipe_file, out)
    assert rc == 2 and "No space left on device" in err
    assert not (out / "broad" / "manifest.json").exists() and not (out / "plan.json").exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
    (disk / "filler").unlink()
    assert _mix(capsys, curated, recipe_file, out) == (0, "")
    assert _files(out / "broad") == _files(clean_mix / "broad")


# --- a mix killed while writing ----------------------------------------------------------


def test_killed_mix_leaves_no_manifest_listing_missing_shards_and_reruns_clean(
    curated, tmp_path, capsys
):
    """SIGKILL while the second stage's shards are being written: every manifest left
    behind opens with every listed shard verified, there is no plan.json, and a rerun of
    the same command finishes with the bytes of an uninterrupted mix."""
    from mixtures.shards import StageShards

    recipe = tmp_path / "many_shards.yaml"
    recipe.write_text(yaml.safe_dump(dict(RECIPE, shard_tokens=300)))  # ~400 shards in all
    clean = tmp_path / "clean"
    assert main(_mix_argv(curated, recipe, clean, "--engine", "pyarrow")) == 0
    n_broad = len(json.loads((clean / "broad" / "manifest.json").read_text())["shards"])
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "sharpen.cli", *_mix_argv(curated, recipe, out),
           "--engine", "pyarrow"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    mark = out / ".anneal.partial" / "shard-00010.arrow"
    try:
        deadline = time.time() + 120
        while not mark.exists():
            assert proc.poll() is None, "the mix ended before it could be killed"
            assert time.time() < deadline, "the mix never reached its second stage"
            time.sleep(0.002)
        proc.kill()
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not (out / "plan.json").exists()
    manifests = sorted(out.glob("*/manifest.json"))
    assert [m.parent.name for m in manifests] == ["broad"]  # the finished stage only
    assert len(StageShards.open(out / "broad", verify=True).manifest["shards"]) == n_broad
    assert _mix(capsys, curated, recipe, out, "--engine", "pyarrow") == (0, "")
    for stage in ("broad", "anneal"):
        assert _files(out / stage) == _files(clean / stage)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
