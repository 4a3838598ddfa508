"""Ship the configured model directories to the executors.

On a cluster the executors do not share the driver's disk, so a model path in the config
means nothing there. The driver packs each configured model directory into a `.tar`
(named by the directory and the model's sha256, so a retrained model is a new archive) and
registers it with `SparkContext.addArchive`; Spark copies it once per executor and unpacks
it into the executor's SparkFiles root. `resolve_models` (run in the Python worker) points
the config at that copy when the original path is not visible there. Under `local[*]` the
original path is visible and used directly. (`addFile(dir, recursive=True)` would avoid
the archive, but Spark accepts local directories only in local mode.)
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

from curation.config import CurationConfig
from curation.quality.model_dir import ModelDir, read_model_dir

log = logging.getLogger(__name__)

# (config section, field) of every model directory a scorer loads
MODEL_FIELDS = (("quality", "fasttext_model"), ("quality", "kenlm_model"),
                ("language", "model"), ("domain_classifier", "model"))
_PACKED: dict[str, str] = {}  # archive name -> local .tar (per driver process)


def model_paths(cfg: CurationConfig) -> dict[tuple[str, str], str]:
    return {(sec, f): getattr(getattr(cfg, sec), f) for sec, f in MODEL_FIELDS
            if getattr(getattr(cfg, sec), f)}


def configured_models(cfg: CurationConfig) -> dict[str, tuple[str, ModelDir]]:
    """{"section.field": (configured path, its model directory)} of every model the
    config names, read once (provenance only; the sha256 is checked by the scorers)."""
    return {f"{sec}.{f}": (path, read_model_dir(path, None, verify=False, field=f"{sec}.{f}"))
            for (sec, f), path in sorted(model_paths(cfg).items())}


def _pack(model_dir: Path, name: str) -> str:
    if name not in _PACKED:
        root = Path(tempfile.mkdtemp(prefix="sharpen-models-"))
        atexit.register(shutil.rmtree, root, True)
        tar = root / name
        with tarfile.open(tar, "w") as t:
            for f in sorted(model_dir.iterdir()):
                if f.is_file():
                    t.add(f, arcname=f.name)
        _PACKED[name] = str(tar)
    return _PACKED[name]


def ship_models(sc, cfg: CurationConfig) -> dict[str, str]:
    """addArchive every configured model directory; returns {configured path: archive
    name} of those shipped. One that cannot be shipped is logged and left to the path."""
    shipped = {}
    for field, (path, md) in configured_models(cfg).items():
        name = f"{md.path.name}-{md.sha256[:12]}.tar"
        try:
            tar = _pack(md.path, name)
            registered = _registered(sc)
            if name not in registered:
                sc.addArchive(tar)
                registered.add(name)
            shipped[path] = name
        except Exception as e:  # noqa: BLE001 - py4j wraps the JVM's refusal
            log.warning("%s: not shipped to executors (%s); using the path as is",
                        field, str(e).splitlines()[0][:200])
    return shipped


def _registered(sc) -> set[str]:
    """Archive names this SparkContext already ships (adding one twice is an error)."""
    seen = getattr(sc, "_sharpen_archives", None)
    if seen is None or getattr(sc, "_sharpen_archives_jsc", None) is not sc._jsc:
        seen = set()
        sc._sharpen_archives, sc._sharpen_archives_jsc = seen, sc._jsc
    return seen


def resolve_models(cfg: CurationConfig, shipped: dict[str, str] | None) -> CurationConfig:
    """Executor side: a model path that is not visible here is replaced by the shipped copy."""
    updates: dict[str, dict] = {}
    for (sec, f), path in model_paths(cfg).items():
        if os.path.exists(path) or not shipped or path not in shipped:
            continue
        try:
            from pyspark import SparkFiles

            copy = SparkFiles.get(shipped[path])
        except Exception:  # noqa: BLE001 - not in a Spark worker
            continue
        if os.path.isdir(copy):
            updates.setdefault(sec, {})[f] = copy
    if not updates:
        return cfg
    return cfg.model_copy(update={sec: getattr(cfg, sec).model_copy(update=u)
                                  for sec, u in updates.items()})
