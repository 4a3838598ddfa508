"""Band hashes and shingle sets per Arrow batch (no Spark): a document without shingles
gets no bands, identical documents share all of theirs; shingle sets are sorted and
distinct, and equal for texts equal after normalisation."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from curation.config import CurationConfig
from curation.dedup.lsh_params import lsh_params_for
from curation.dedup.minhash import ShingleSpec
from curation.dedup.verify import jaccard, jaccard_batches, shingle_set_batches
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


def _set(values) -> bytes:
    return np.array(sorted(set(values)), dtype="<u4").tobytes()


def test_jaccard_of_pairs_equals_the_set_formula_with_empty_null_and_sliced_rows():
    rng = np.random.default_rng(7)
    sets = [_set(rng.integers(0, 3000, size=int(rng.integers(1, 1500)))) for _ in range(40)]
    sets += [_set([]), _set([5]), _set([5]), _set([2**32 - 1, 0])]
    rows = [(i, j) for i in range(len(sets)) for j in range(i, len(sets), 3)]
    a = pa.array([sets[i] for i, _ in rows] + [None, sets[1]], pa.binary())
    b = pa.array([sets[j] for _, j in rows] + [sets[1], None], pa.binary())
    n = len(rows) + 2
    batch = pa.RecordBatch.from_arrays(
        [pa.array(range(n), pa.int64()), pa.array(range(n), pa.int64()), a, b],
        names=["src", "dst", "a", "b"])
    want = []
    for x, y in zip(a.to_pylist(), b.to_pylist(), strict=True):
        u = set(np.frombuffer(x or b"", "<u4").tolist())
        v = set(np.frombuffer(y or b"", "<u4").tolist())
        want.append(len(u & v) / len(u | v) if u | v else 0.0)
        assert jaccard(x, y) == want[-1]
    sliced = batch.slice(5, n - 9)  # offsets that do not start at 0
    for part, expected in ((batch, want), (sliced, want[5:n - 4])):
        (out,) = jaccard_batches([part])
        assert out.column("jaccard").to_pylist() == expected
        assert out.column("src").to_pylist() == part.column("src").to_pylist()
    wide = batch.set_column(2, "a", a.cast(pa.large_binary()))
    (out,) = jaccard_batches([wide])
    assert out.column("jaccard").to_pylist() == want
