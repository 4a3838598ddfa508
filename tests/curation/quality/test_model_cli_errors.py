"""Bad input to the model commands and to a job that names a model: one line naming the
file, exit code 2, and nothing written where the output was to go."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from sharpen.cli import main

SAMPLE = Path(__file__).resolve().parents[3] / "data" / "sample"


def _jsonl(path: Path, docs: list[dict]) -> Path:
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for d in docs:
            f.write(json.dumps(d) + "\n")
    return path


def _run(argv: list[str], capsys) -> tuple[int, str]:
    """Exit code and the error line (progress lines may come before it on stderr)."""
    rc = main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    errors = [ln for ln in err.splitlines() if "error:" in ln]
    assert len(errors) == 1, err
    return rc, errors[0]


@pytest.fixture()
def sets(tmp_path: Path) -> dict[str, Path]:
    good = [{"text": f"A clear sentence about topic {i}. " * 20, "source": f"s{i % 3}"}
            for i in range(30)]
    return {"good": _jsonl(tmp_path / "good.jsonl.gz", good),
            "empty": _jsonl(tmp_path / "empty.jsonl.gz", [])}


@pytest.mark.parametrize("command", ["train-quality", "train-kenlm"])
def test_an_empty_reference_set_is_one_line_naming_it(command, sets, tmp_path, capsys):
    out = tmp_path / "model"
    cfg = ({"positive": [str(sets["good"])], "negative": [str(sets["empty"])]}
           if command == "train-quality" else {"reference": [str(sets["empty"])]})
    (tmp_path / "c.yaml").write_text(json.dumps({**cfg, "output": str(out)}))
    rc, err = _run(["curate", command, "--config", str(tmp_path / "c.yaml")], capsys)
    assert rc == 2 and "empty.jsonl.gz" in err
    assert not out.exists() and not list(tmp_path.glob("model.tmp-*"))


def test_one_class_only_is_one_line(sets, tmp_path, capsys):
    (tmp_path / "c.yaml").write_text(json.dumps({"data": [str(sets["good"])],
                                                 "output": str(tmp_path / "m")}))
    rc, err = _run(["curate", "train-langid", "--config", str(tmp_path / "c.yaml")], capsys)
    assert rc == 2 and "one class" in err, err
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_a_job_naming_a_bad_model_fails_before_writing(damage, tmp_path, capsys,
                                                       bundled_models):
    import shutil

    model = tmp_path / "quality-fasttext"
    shutil.copytree(bundled_models["quality.fasttext_model"], model)
    if damage == "missing":
        (model / "model.bin").unlink()
    else:
        with open(model / "model.bin", "r+b") as f:
            f.seek(1000)
            f.write(b"\0" * 64)
    (tmp_path / "c.yaml").write_text(json.dumps({"quality": {"fasttext_model": str(model)}}))
    out = tmp_path / "out"
    rc, err = _run(["curate", "--input", str(SAMPLE / "books.jsonl.gz"), "--output", str(out),
                    "--config", str(tmp_path / "c.yaml")], capsys)
    assert rc == 2 and "model.bin" in err, err
    assert ("not found" if damage == "missing" else "sha256") in err
    assert not out.exists() or not any(out.iterdir())
