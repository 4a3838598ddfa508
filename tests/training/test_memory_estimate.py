"""The per-GPU memory estimate behind docs/long_context.md scales the way its terms say."""

import pytest

from training.model.memory_estimate import estimate
from training.model.presets import PRESETS


def test_terms_scale_with_ranks_tokens_and_chunking():
    spec, vocab = PRESETS["xgen-small-4b"].spec, 128256
    one = estimate(spec, vocab, seq_len=131072, dp=8, cp=1)
    cp8 = estimate(spec, vocab, seq_len=131072, dp=1, cp=8)
    assert one.states_gib == pytest.approx(cp8.states_gib)  # sharded over all 8 either way
    assert one.states_gib == pytest.approx(16 * 4_009_430_016 / 8 / 1024**3, rel=1e-4)  # no norms
    assert one.checkpointed_inputs_gib == pytest.approx(8 * cp8.checkpointed_inputs_gib)
    assert one.logits_gib == pytest.approx(8 * cp8.logits_gib)
    chunked = estimate(spec, vocab, seq_len=131072, dp=1, cp=8, chunked_loss=True)
    assert chunked.logits_gib == pytest.approx(cp8.logits_gib * 4096 / 16384)
    assert chunked.total_gib < cp8.total_gib < one.total_gib
    assert cp8.total_gib < 80  # the plan in docs/long_context.md fits an 80 GB GPU
