"""Build a labelled near-duplicate set from real text on this machine, with exact truth.

Sources (natural duplicates, nothing synthetic):
- two CPython 3.11 standard libraries: pyenv's 3.11.7 and Debian's 3.11.2 (/usr/lib/python3.11),
  so most modules appear twice, identical or edited between patch releases;
- /usr/share/doc/*/copyright: Debian copyright files, full of shared licence boilerplate;
- the Linux 6.1 kernel docs from the linux-doc deb (data/build/unpacked, read only), which
  ships every .rst twice: Documentation/**/*.rst.gz and the Sphinx copy html/_sources/**.rst.txt.

Truth is exact Jaccard on the very shingle sets the engine hashes (`normalize_for_hashing`
+ `shingle_hashes`, sets of uint64). All pairs at J >= t are found exactly and completely
with prefix filtering (Chaudhuri et al. 2006): order shingles rarest first; two sets with
J >= t must share a shingle among the first |x| - ceil(t|x|) + 1 of each. The prefix
incidence matrix times its transpose gives every candidate (frequent boilerplate shingles
sit at the end of the order, so the product stays small), and each candidate is then
scored with an exact set intersection.

Run: .venv/bin/python -m benchmarks.dedup_labelled_set [--out benchmarks/out/labelled]
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import scipy.sparse as sp

from curation.dedup.minhash import ShingleSpec, normalize_for_hashing, shingle_hashes

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
PYENV_STDLIB = Path("/root/.pyenv/versions/3.11.7/lib/python3.11")
DEBIAN_STDLIB = Path("/usr/lib/python3.11")
DOC_ROOT = Path("/usr/share/doc")
KERNEL_DOCS = REPO / "data/build/unpacked/linux-doc-6.1_6.1.176-1_all/usr/share/doc/linux-doc-6.1"
MAX_BYTES = 256 * 1024  # a few huge generated files (unicode tables) would dominate the run


@dataclass(frozen=True)
class Doc:
    id: str
    text: str
    source: str


def _read_text(path: Path) -> str | None:
    raw = path.read_bytes()
    if path.suffix == ".gz":
        raw = gzip.decompress(raw)
    if not raw.strip() or len(raw) > MAX_BYTES:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _python_files(root: Path) -> Iterator[Path]:
    for p in sorted(root.rglob("*.py")):
        rel = p.relative_to(root).parts
        if not any(part.endswith("-packages") for part in rel):
            yield p


def iter_documents(pyenv_stdlib: Path = PYENV_STDLIB, debian_stdlib: Path = DEBIAN_STDLIB,
                   doc_root: Path = DOC_ROOT, kernel_docs: Path = KERNEL_DOCS) -> Iterator[Doc]:
    """Every readable document of the four sources, in a fixed order (ids say where from)."""
    groups = [
        ("cpython-3.11.7", pyenv_stdlib, _python_files(pyenv_stdlib) if pyenv_stdlib.is_dir() else []),
        ("cpython-3.11.2-debian", debian_stdlib,
         _python_files(debian_stdlib) if debian_stdlib.is_dir() else []),
        ("debian-copyright", doc_root, sorted(doc_root.glob("*/copyright"))),
        ("linux-doc-rst", kernel_docs / "Documentation",
         sorted((kernel_docs / "Documentation").rglob("*.rst.gz"))),
        ("linux-doc-html-sources", kernel_docs / "html/_sources",
         sorted((kernel_docs / "html/_sources").rglob("*.rst.txt"))),
    ]
    for source, root, paths in groups:
        n = 0
        for p in paths:
            if not p.is_file():
                continue
            text = _read_text(p)
            if text is None:
                continue
            n += 1
            yield Doc(f"{source}:{p.relative_to(root)}", text, source)
        log.info("%s: %d documents from %s", source, n, root)


def shingle_sets(texts: list[str], spec: ShingleSpec, batch: int = 512) -> list[np.ndarray]:
    """Sorted unique uint64 shingle hashes per text, exactly as the engine computes them."""
    out: list[np.ndarray] = []
    for lo in range(0, len(texts), batch):
        norm = [normalize_for_hashing(t) for t in texts[lo : lo + batch]]
        hashes, offsets = shingle_hashes(norm, spec)
        out.extend(np.unique(hashes[offsets[i] : offsets[i + 1]]) for i in range(len(norm)))
    return out


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Exact Jaccard of two sorted unique arrays (0 when both are empty)."""
    if a.size == 0 and b.size == 0:
        return 0.0
    inter = np.intersect1d(a, b, assume_unique=True).size
    return inter / (a.size + b.size - inter)


def similar_pairs(sets: list[np.ndarray], threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs (i < j) with exact Jaccard >= threshold, via prefix filtering; complete."""
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    sizes = np.fromiter((s.size for s in sets), dtype=np.int64, count=len(sets))
    if sizes.sum() == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0)
    flat = np.concatenate(sets)
    vocab, col = np.unique(flat, return_inverse=True)
    df = np.bincount(col, minlength=vocab.size)
    # global order: rarest first, ties by hash value (rank = position in that order)
    order = np.lexsort((vocab, df))
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    row = np.repeat(np.arange(len(sets)), sizes)
    r = rank[col]
    # sort each document's shingles by rank and keep its prefix
    idx = np.lexsort((r, row))
    doc_start = np.concatenate([[0], np.cumsum(sizes)])
    pos = np.arange(flat.size) - doc_start[row[idx]]
    eps = 1e-9  # a prefix one too long is harmless; one too short would lose pairs
    prefix_len = sizes - np.ceil((threshold - eps) * sizes).astype(np.int64) + 1
    in_prefix = pos < prefix_len[row[idx]]
    prow, pcol = row[idx][in_prefix], r[idx][in_prefix]
    prefix = sp.csr_matrix((np.ones(prow.size, dtype=np.int32), (prow, pcol)),
                           shape=(len(sets), vocab.size))
    cand = sp.triu(prefix @ prefix.T, k=1).tocoo()
    ii, jj = cand.row.astype(np.int64), cand.col.astype(np.int64)
    # size filter: J >= t needs min/max >= t
    lo, hi = np.minimum(sizes[ii], sizes[jj]), np.maximum(sizes[ii], sizes[jj])
    ok = lo >= (threshold - eps) * hi
    ii, jj = ii[ok], jj[ok]
    js = np.fromiter((jaccard(sets[a], sets[b]) for a, b in zip(ii, jj, strict=True)),
                     dtype=np.float64, count=ii.size)
    keep = js >= threshold
    log.info("prefix filter at J>=%.2f: %d candidates, %d pairs", threshold, ii.size, int(keep.sum()))
    order2 = np.lexsort((jj[keep], ii[keep]))
    return ii[keep][order2], jj[keep][order2], js[keep][order2]


def write_labelled_set(docs: list[Doc], out: Path, spec: ShingleSpec, truth_threshold: float) -> dict:
    """docs.jsonl (id, text, source) + truth_pairs.parquet (id_a, id_b, jaccard) + summary."""
    out.mkdir(parents=True, exist_ok=True)
    with (out / "docs.jsonl").open("w", encoding="utf-8") as f:
        for d in docs:
            f.write(json.dumps({"id": d.id, "text": d.text, "source": d.source},
                               ensure_ascii=False) + "\n")
    started = time.perf_counter()
    sets = shingle_sets([d.text for d in docs], spec)
    ii, jj, js = similar_pairs(sets, truth_threshold)
    ids = np.array([d.id for d in docs], dtype=object)
    pq.write_table(pa.table({"id_a": ids[ii].tolist(), "id_b": ids[jj].tolist(), "jaccard": js}),
                   out / "truth_pairs.parquet")
    by_source: dict[str, int] = {}
    for d in docs:
        by_source[d.source] = by_source.get(d.source, 0) + 1
    summary = {
        "documents": len(docs), "by_source": by_source,
        "bytes": sum(len(d.text.encode()) for d in docs),
        "shingle": {"kind": spec.kind, "n": spec.n},
        "truth_threshold": truth_threshold,
        "pairs_ge_0.5": int(ii.size), "pairs_ge_0.8": int((js >= 0.8).sum()),
        "pairs_exact_1.0": int((js >= 1.0).sum()),
        "truth_seconds": round(time.perf_counter() - started, 1),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks/out/labelled")
    ap.add_argument("--truth-threshold", type=float, default=0.5,
                    help="store every pair at or above this exact Jaccard")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    docs = list(iter_documents())
    if not docs:
        raise FileNotFoundError("no source documents found (stdlib, /usr/share/doc, data/build)")
    summary = write_labelled_set(docs, args.out, ShingleSpec("word", 5), args.truth_threshold)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
