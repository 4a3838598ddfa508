"""MinHash signatures: shingling is exact, estimates are unbiased, batching is irrelevant."""

from __future__ import annotations

import numpy as np
import pytest

from curation.dedup.minhash import (
    MinHasher,
    ShingleSpec,
    normalize_for_hashing,
    plain_normalize,
    shingle_hashes,
)

GPL = open("/usr/share/common-licenses/GPL-3").read() if __import__("os").path.exists(
    "/usr/share/common-licenses/GPL-3") else ("free software " * 400)


def _sets(texts, spec):
    h, off = shingle_hashes(texts, spec)
    return [set(h[off[i]:off[i + 1]].tolist()) for i in range(len(texts))]


def test_normalisation_folds_case_punctuation_and_whitespace():
    assert normalize_for_hashing("Hello,   World!\n\tFoo") == "hello world foo"
    assert normalize_for_hashing("“Quoted”  text") == normalize_for_hashing('"quoted" TEXT')


def test_fast_normalisation_equals_the_plain_definition():
    """ASCII, mostly-ASCII (smart quotes, dashes, no-break spaces) and general Unicode
    text: the byte-folding paths give exactly the one-regex definition."""
    texts = [GPL[:3000],
             GPL[:3000].replace(". ", ". \u201cQuoted\u201d \u00a9 2024 \u2014\u00a0", 20),
             "Stra\u00dfe und Gr\u00fc\u00dfe. \u0130stanbul \u212a \ufb01ne caf\u00e9_1 " * 10,
             "\u00bd \u00b2 \u0663\u0664 \U0001d7d8 \u216b \uff21\uff22 \u3000\u2028x\u200dy "
             "\u65e5\u672c\u8a9e\u3002\u0645\u0631\u062d\u0628\u0627 \U0001f600! e\u0301 " * 10,
             "tab\tand\x0bvt\x1cfs\x85nel\u2029ps del\x7fx __init__ x_y", "\u201c\u201d", " \u00a0 ", ""]
    for t in texts:
        assert normalize_for_hashing(t) == plain_normalize(t), t[:60]


def test_word_shingles_match_a_naive_count():
    text = normalize_for_hashing(GPL[:5000])
    words = text.split()
    naive = {" ".join(words[i:i + 5]) for i in range(len(words) - 4)}
    (ours,) = _sets([text], ShingleSpec("word", 5))
    assert len(ours) == len(naive)  # no collisions, no lost or extra shingles


def test_char_shingles_count():
    text = "abcdefgh abcdefgh"
    (ours,) = _sets([text], ShingleSpec("char", 4))
    naive = {text[i:i + 4] for i in range(len(text) - 3)}
    assert len(ours) == len(naive)


def test_short_and_empty_documents():
    sets = _sets(["two words", "two words", "", "other pair"], ShingleSpec("word", 5))
    assert len(sets[0]) == 1 and sets[0] == sets[1]
    assert sets[2] == set()
    assert sets[3] != sets[0]


def test_shingles_do_not_depend_on_batch_neighbours():
    docs = [normalize_for_hashing(GPL[i:i + 3000]) for i in range(0, 30000, 3000)]
    alone = [_sets([d], ShingleSpec("word", 5))[0] for d in docs]
    assert _sets(docs, ShingleSpec("word", 5)) == alone


def test_signatures_estimate_jaccard():
    base = normalize_for_hashing(GPL[:20000]).split()
    a = " ".join(base)
    b = " ".join(base[:1500] + ["edited"] * 40 + base[1540:])
    spec = ShingleSpec("word", 5)
    h, off = shingle_hashes([a, b], spec)
    sa, sb = set(h[off[0]:off[1]].tolist()), set(h[off[1]:off[2]].tolist())
    true_j = len(sa & sb) / len(sa | sb)
    sig = MinHasher(512, seed=7).signatures(h, off)
    est = float((sig[0] == sig[1]).mean())
    assert abs(est - true_j) < 0.05, (est, true_j)


def test_signatures_are_batch_and_block_independent():
    docs = [normalize_for_hashing(GPL[i:i + 4000]) for i in range(0, 32000, 2000)]
    spec = ShingleSpec("word", 5)
    h, off = shingle_hashes(docs, spec)
    big_blocks = MinHasher(64, seed=1).signatures(h, off)
    tiny_blocks = MinHasher(64, seed=1, block_elems=64 * 50).signatures(h, off)  # slices docs
    np.testing.assert_array_equal(big_blocks, tiny_blocks)
    h1, off1 = shingle_hashes(docs[3:4], spec)
    np.testing.assert_array_equal(MinHasher(64, seed=1).signatures(h1, off1)[0], big_blocks[3])
    assert not np.array_equal(MinHasher(64, seed=2).signatures(h, off), big_blocks)
    # the first `keep` permutations are those of the full set
    np.testing.assert_array_equal(MinHasher(64, seed=1, keep=60).signatures(h, off),
                                  big_blocks[:, :60])


def test_empty_document_signature_is_sentinel():
    h, off = shingle_hashes(["", "some words here"], ShingleSpec("word", 2))
    sig = MinHasher(16).signatures(h, off)
    assert (sig[0] == 0xFFFFFFFF).all() and not (sig[1] == 0xFFFFFFFF).all()


def test_bad_specs_are_rejected():
    with pytest.raises(ValueError):
        ShingleSpec("line", 5)
    with pytest.raises(ValueError):
        ShingleSpec("word", 0)
    with pytest.raises(ValueError):
        MinHasher(0)
