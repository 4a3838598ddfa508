"""Band hashes and shingle sets per Arrow batch (no Spark): a document without shingles
gets no bands, identical documents share all of theirs; shingle sets are sorted and
distinct, and equal for texts equal after normalisation."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from curation.config import CurationConfig
from curation.dedup.lsh_params import lsh_params_for
from curation.dedup.minhash import ShingleSpec
from curation.dedup.verify import shingle_set_batches
from curation.scorers.base import DocBatch
from curation.scorers.dedup_keys import DedupKeys

TEXT = "the quick brown fox jumps over the lazy dog again and again today"


def test_dedup_keys_bands_for_kept_documents_only():
    cfg = CurationConfig()
    cfg = cfg.model_copy(update={"dedup": cfg.dedup.model_copy(update={"num_perm": 64})})
    params = lsh_params_for(cfg.dedup)
    texts = ["!!!", TEXT, TEXT.upper(), "other words entirely", TEXT]
    batch = DocBatch(texts, ["web"] * 5, {"removed_by": [None, None, None, None, "rule"]})
    out = DedupKeys(cfg).score(batch)
    bands = out["bands"].to_pylist()
    assert [len(b) if b is not None else None for b in bands] == [
        None, params.bands, params.bands, params.bands, None]
    assert bands[1] == bands[2] and bands[1] != bands[3]
    assert out["norm_hash"][1] == out["norm_hash"][2] == out["norm_hash"][4]


def test_shingle_sets_sorted_distinct_and_normalised():
    batch = pa.RecordBatch.from_pydict({
        "key": pa.array([1, 2, 3, 4], pa.int64()),
        "text": ["!!!", TEXT, TEXT.upper(), "a b c d e a b c d e a b c d e"]})
    (out,) = shingle_set_batches([batch], ShingleSpec("word", 5))
    sets = [np.frombuffer(s, dtype="<u4") for s in out.column("shingles").to_pylist()]
    assert out.column("key").to_pylist() == [1, 2, 3, 4]
    assert sets[0].size == 0 and sets[1].size == 9 and np.array_equal(sets[1], sets[2])
    assert sets[3].size == 5  # 11 five-word shingles, 5 distinct
    for s in sets:
        assert np.array_equal(s, np.unique(s))
