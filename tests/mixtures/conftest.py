"""Fixtures for the mixtures tests (the corpus builder lives in mix_corpus_fixture.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from mix_corpus_fixture import corpus_rows, write_curated


@pytest.fixture(scope="session")
def curated_dir(tmp_path_factory) -> Path:
    """A curate output dir: <dir>/curated (hive-partitioned Parquet) and <dir>/stats.json."""
    return write_curated(tmp_path_factory.mktemp("curate_out"), corpus_rows())
