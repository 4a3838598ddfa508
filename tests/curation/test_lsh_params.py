"""Bands x rows come from minimising the weighted FP + FN areas under the S-curve."""

from __future__ import annotations

import pytest

from curation.dedup.lsh_params import choose_lsh_params


def test_matches_text_dedup_published_choice():
    p = choose_lsh_params(0.7, 250)
    assert (p.bands, p.rows) == (25, 10)


def test_fits_in_num_perm_and_is_steep_around_threshold():
    for t in (0.5, 0.7, 0.8, 0.9):
        p = choose_lsh_params(t, 256)
        assert p.bands * p.rows <= 256
        assert p.candidate_probability(t - 0.2) < 0.1
        assert p.candidate_probability(min(t + 0.15, 0.99)) > 0.9


def test_weights_move_the_choice():
    fn_heavy = choose_lsh_params(0.7, 256, false_positive_weight=0.1, false_negative_weight=0.9)
    fp_heavy = choose_lsh_params(0.7, 256, false_positive_weight=0.9, false_negative_weight=0.1)
    assert fn_heavy.candidate_probability(0.7) > fp_heavy.candidate_probability(0.7)


def test_override_is_checked():
    p = choose_lsh_params(0.7, 128, bands=16, rows=8)
    assert (p.bands, p.rows) == (16, 8)
    with pytest.raises(ValueError):
        choose_lsh_params(0.7, 128, bands=20, rows=8)
    with pytest.raises(ValueError):
        choose_lsh_params(0.7, 128, bands=20)
    with pytest.raises(ValueError):
        choose_lsh_params(1.2, 128)
