"""A trained model as one directory: the model file and its provenance, written atomically.

Every model the platform trains (fastText quality, language ID and domain classifiers,
KenLM) is saved as `DIR/<model file>` plus `DIR/provenance.json`: what it was trained
from (sources, counts), with which hyperparameters, its held-out metrics, and the sha256
of the model file. Config fields name the directory. Loading checks that the directory,
the provenance and the model file exist, and (on the driver, `verify=True`) that the
model's sha256 matches, so a truncated or swapped model is a one-line error naming the
file instead of a crash inside a Spark task.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROVENANCE = "provenance.json"


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class ModelDir:
    """A loaded model directory: where the model file is and what its provenance says."""

    path: Path
    model_file: Path
    provenance: dict[str, Any]

    @property
    def kind(self) -> str:
        return self.provenance["kind"]

    @property
    def sha256(self) -> str:
        return self.provenance["sha256"]


def write_model_dir(output: str | Path, model_name: str, kind: str,
                    write_model: Callable[[Path], None], provenance: dict[str, Any]) -> ModelDir:
    """Write `output/` with `model_name` (made by `write_model(path)`) and provenance.json.

    Everything is written to `output.tmp-<pid>/` first and renamed into place last, so an
    interrupted training leaves no half-written model where a config could pick it up. An
    existing `output` is replaced only after the new one is complete.
    """
    out = Path(output)
    tmp = out.with_name(f"{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        write_model(tmp / model_name)
        if not (tmp / model_name).is_file():
            raise RuntimeError(f"training wrote no model file {model_name}")
        prov = {"kind": kind, "model_file": model_name,
                "sha256": sha256_file(tmp / model_name), **provenance}
        (tmp / PROVENANCE).write_text(json.dumps(prov, indent=2, sort_keys=True) + "\n")
        if out.exists():
            old = out.with_name(f"{out.name}.old-{os.getpid()}")
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return read_model_dir(out, kind, verify=False)


def read_model_dir(path: str | Path, kind: str | None, verify: bool = True,
                   field: str = "model") -> ModelDir:
    """The model directory at `path`, checked. `kind` None accepts any kind of model;
    `field` names the config field in errors."""
    p = Path(path)
    if p.is_file() and p.name != PROVENANCE:  # a model file given directly: use its directory
        p = p.parent
    prov_path = p / PROVENANCE
    if not p.is_dir():
        raise ValueError(f"{field}: model directory {p} not found")
    if not prov_path.is_file():
        raise ValueError(f"{field}: {prov_path} not found (train the model with `sharpen curate "
                         f"train-...`, which writes it)")
    try:
        prov = json.loads(prov_path.read_text(encoding="utf-8"))
        model_file = p / prov["model_file"]
        if kind is not None and prov.get("kind") != kind:
            raise ValueError(f"{field}: {p} holds a {prov.get('kind')!r} model, not {kind!r}")
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"{field}: {prov_path} is not a provenance file ({e})") from None
    if not model_file.is_file():
        raise ValueError(f"{field}: model file {model_file} not found")
    if verify and sha256_file(model_file) != prov.get("sha256"):
        raise ValueError(f"{field}: model file {model_file} does not match the sha256 in "
                         f"{prov_path} (corrupt, truncated or replaced)")
    return ModelDir(p, model_file, prov)
