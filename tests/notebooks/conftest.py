"""Fixtures for the notebook tests: one small real run directory shared by all of them."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def run_dir(spark, tmp_path_factory) -> Path:
    """curate/, mix/ and train/ in the layout `sharpen demo` writes (notebook_run_fixture)."""
    from notebook_run_fixture import build_run

    return build_run(tmp_path_factory.mktemp("notebook_run") / "run")
