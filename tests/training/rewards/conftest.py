"""The `isolation` fixture: each sandbox layer in turn, skipped (with the reason) where it
does not work; test_a_sandbox_is_available_here fails if none does."""

from __future__ import annotations

import pytest

from training.rewards.sandbox import ISOLATIONS, _probe


@pytest.fixture(params=ISOLATIONS)
def isolation(request: pytest.FixtureRequest) -> str:
    why = _probe(request.param)
    if why is not None:
        pytest.skip(f"{request.param} sandbox unavailable here: {why}")
    return request.param
