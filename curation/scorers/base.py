"""The scorer interface: what every per-document signal declares, and how its model is
loaded once per process.

A scorer is one entry of the registry. It declares the columns it adds (Arrow fields,
from which the annotation schema and the Spark DDL are derived), the columns of earlier
entries it reads, the Python packages it needs, and its config. `score` takes a batch and
returns one list per declared column. Models are loaded through `load_once`, cached per
process: a Python worker that scores many batches (or many Spark tasks, since pyspark
reuses workers) loads each model once, in the spirit of datatrove's lazy `model` property.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pyarrow as pa

from curation.config import CurationConfig

_MODELS: dict[str, Any] = {}
_LOADS: dict[str, int] = {}
_LOCK = threading.Lock()


def load_once(key: str, loader: Callable[[], Any]) -> Any:
    """The model for `key` (e.g. a path and its sha256), loaded on first use in this process.

    With `SHARPEN_MODEL_LOAD_LOG` set to a directory, each load appends a line to
    `<dir>/<pid>.log`, so a test can check how often the Python workers of a real Spark job
    loaded each model."""
    with _LOCK:
        if key not in _MODELS:
            _MODELS[key] = loader()
            _LOADS[key] = _LOADS.get(key, 0) + 1
            log_dir = os.environ.get("SHARPEN_MODEL_LOAD_LOG")
            if log_dir:
                with open(os.path.join(log_dir, f"{os.getpid()}.log"), "a") as f:
                    f.write(key + "\n")
        return _MODELS[key]


def load_count(key: str) -> int:
    """How often `key` was loaded in this process (tests assert it is at most 1)."""
    return _LOADS.get(key, 0)


@dataclass
class DocBatch:
    """A batch as scorers see it: the (possibly rewritten) texts, their domains, and the
    columns earlier scorers produced."""

    texts: list[str]
    domains: list[str | None]
    columns: dict[str, list] = field(default_factory=dict)


class Scorer:
    """Base class of registry entries; subclasses set the class attributes and `score`."""

    name: ClassVar[str]
    columns: ClassVar[tuple[pa.Field, ...]]
    reads: ClassVar[tuple[str, ...]] = ()  # columns of earlier entries this one needs
    packages: ClassVar[tuple[str, ...]] = ()  # importable modules it needs
    rewrites_text: ClassVar[bool] = False  # may return a "text" list that replaces the text
    rewrites_domain: ClassVar[bool] = False  # may return a "domain" list (domain classifier)

    def __init__(self, cfg: CurationConfig):
        self.cfg = cfg

    def check(self) -> None:
        """Raise a clear error on the driver, before any task runs, if the entry cannot run."""
        missing = [p for p in self.packages if importlib.util.find_spec(p) is None]
        if missing:
            raise ValueError(f"scorer {self.name} needs the Python package(s) {missing}")

    def score(self, batch: DocBatch) -> dict[str, list]:
        raise NotImplementedError
