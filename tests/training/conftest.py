from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from shard_fixtures import write_mixture, write_tokenized_mixture  # noqa: E402


@pytest.fixture(scope="session")
def mixture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_mixture(tmp_path_factory.mktemp("mix"))


@pytest.fixture(scope="session")
def tokenized_mixture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three domains and a real tokenizer file: stage-end probes run on it."""
    return write_tokenized_mixture(tmp_path_factory.mktemp("tokmix"))


@pytest.fixture(scope="module")
def world_of_one():
    """A gloo process group of one in this process, for tests that run the loop in-process."""
    from training.parallel import init_distributed, shutdown
    from training.parallel.fsdp2 import _free_port

    with pytest.MonkeyPatch.context() as mp:  # torchrun's variables, only while joining
        env = {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1"}
        for key, value in {**env, "MASTER_PORT": str(_free_port())}.items():
            mp.setenv(key, value)
        dist_env = init_distributed("cpu")
    yield dist_env  # without LOCAL_RANK set, `run_training` still launches torchrun
    shutdown()
