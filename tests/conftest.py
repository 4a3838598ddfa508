"""Shared fixtures: one real local Spark session for the whole test run (JVM start-up
is the expensive part), stopped at the end."""

from __future__ import annotations

import os
import sys

import pytest

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)


@pytest.fixture(scope="session")
def spark():
    from curation.spark_session import get_spark

    session = get_spark("local[2]", app_name="sharpen-tests", conf={
        "spark.sql.shuffle.partitions": "4",
        "spark.driver.memory": "2g",
    })
    yield session
    session.stop()


@pytest.fixture(scope="session")
def bundled_models(tmp_path_factory) -> dict[str, str]:
    """The platform's own four models (quality fastText, KenLM, language ID, domains),
    trained once per test run from data/quality, side by side (language ID alone takes
    ~23 s in a suite run): {config field: model dir}."""
    from curation.quality.bundled_models import MODELS, ensure_models

    return ensure_models(tmp_path_factory.mktemp("models"), names=tuple(MODELS))
