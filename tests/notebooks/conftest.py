"""Fixtures for the notebook tests: one small real run directory shared by all of them."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# The run fixture reuses the mixtures tests' corpus builder (mix_corpus_fixture.py).
_MIXTURES_TESTS = str(Path(__file__).resolve().parents[1] / "mixtures")
if _MIXTURES_TESTS not in sys.path:
    sys.path.insert(0, _MIXTURES_TESTS)


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory) -> Path:
    """curate/, mix/ and train/ in the layout `sharpen demo` writes (see notebook_run_fixture)."""
    from notebook_run_fixture import build_run

    return build_run(tmp_path_factory.mktemp("notebook_run") / "run")
