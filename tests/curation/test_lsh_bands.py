"""Band hashes per Arrow batch (no Spark): empty documents get no bands, identical
documents share all of theirs."""

from __future__ import annotations

import pyarrow as pa

from curation.dedup.lsh import signature_batches
from curation.dedup.lsh_params import choose_lsh_params
from curation.dedup.minhash import ShingleSpec


def test_signature_batches_bands_and_shingles():
    params = choose_lsh_params(0.7, 64)
    text = "the quick brown fox jumps over the lazy dog again and again today"
    batch = pa.RecordBatch.from_pydict({"key": pa.array([1, 2, 3, 4], pa.int64()),
                                        "text": ["!!!", text, text.upper(), "other words entirely"]})
    (out,) = signature_batches([batch], ShingleSpec("word", 5), 64, 1, params, keep_shingles=True)
    bands = out.column("bands").to_pylist()
    assert [len(b) for b in bands] == [0, params.bands, params.bands, params.bands]
    assert bands[1] == bands[2] and bands[1] != bands[3]
    shingles = out.column("shingles").to_pylist()
    assert shingles[0] == b"" and shingles[1] == shingles[2] and len(shingles[1]) > 0
