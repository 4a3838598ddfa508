"""Ship the configured model directories to the executors.

On a cluster the executors do not share the driver's disk, so a model path in the config
means nothing there. The driver registers each configured model directory with
`SparkContext.addFile(recursive=True)`; Spark copies it once per executor into the
executor's SparkFiles root, and `resolve_models` (run in the Python worker) points the
config at that copy when the original path is not visible. Under `local[*]` the original
path is visible and used directly.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from curation.config import CurationConfig

log = logging.getLogger(__name__)

# (config section, field) of every model directory a scorer loads
MODEL_FIELDS = (("quality", "fasttext_model"), ("quality", "kenlm_model"),
                ("language", "model"), ("domain_classifier", "model"))


def model_paths(cfg: CurationConfig) -> dict[tuple[str, str], str]:
    return {(sec, f): getattr(getattr(cfg, sec), f) for sec, f in MODEL_FIELDS
            if getattr(getattr(cfg, sec), f)}


def ship_models(sc, cfg: CurationConfig) -> list[str]:
    """addFile every configured model directory; returns what was shipped. A directory whose
    name is already registered from another path is not shipped (Spark refuses it); then
    the executors must see the original path, as they do under local[*]."""
    shipped = []
    for (sec, f), path in sorted(model_paths(cfg).items()):
        p = Path(path).resolve()
        try:
            sc.addFile(str(p), recursive=True)
            shipped.append(str(p))
        except Exception as e:  # noqa: BLE001 - py4j wraps the JVM's refusal
            log.warning("%s.%s: not shipped to executors (%s); using the path as is",
                        sec, f, str(e).splitlines()[0][:200])
    return shipped


def resolve_models(cfg: CurationConfig) -> CurationConfig:
    """Executor side: a model path that is not visible here is replaced by the shipped copy."""
    updates: dict[str, dict] = {}
    for (sec, f), path in model_paths(cfg).items():
        if os.path.exists(path):
            continue
        try:
            from pyspark import SparkFiles

            copy = SparkFiles.get(Path(path).name)
        except Exception:  # noqa: BLE001 - not in a Spark worker
            continue
        if os.path.isdir(copy):
            updates.setdefault(sec, {})[f] = copy
    if not updates:
        return cfg
    return cfg.model_copy(update={sec: getattr(cfg, sec).model_copy(update=u)
                                  for sec, u in updates.items()})
