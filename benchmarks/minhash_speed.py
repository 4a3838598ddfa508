"""MinHash signature speed vs datasketch `MinHash.bulk`, and end-to-end dedup vs a
datasketch MinHashLSH + union-find baseline, on the same real documents in one run.

Documents: the labelled set (stdlib code, copyright files, kernel docs) cut at line
boundaries into ~2 KB pieces, the first `--docs` of them in a fixed interleaved order.

Signatures (single process, single thread; BLAS/OMP threads pinned to 1): both sides start
from the SAME already-normalised texts (normalisation is in neither timing). Ours times
`shingle_hashes` + `MinHasher.signatures`, i.e. shingling and hashing included. datasketch
gets the shingle byte-strings precomputed outside its timing (so its number flatters it);
we also print it with shingle building included. docs/s per core = docs / CPU seconds of
the process (robust to the shared machine) and docs / wall seconds; ratio = ours / theirs.

End to end: `run_curation(mode="dedup")` on local[1] (fresh process; job time excludes the
JVM start, printed apart) vs, in this process: read JSONL, normalise, shingle,
MinHash.bulk, MinHashLSH (same threshold and num_perm; its own bands/rows), query every
document, union-find, keeper = smallest id, write Parquet. The baseline does no exact
dedup stage and no verification; ours does both.

Run: .venv/bin/python -m benchmarks.minhash_speed [--docs 20000] [--repeats 3]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import gzip  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from benchmarks.dedup_labelled_set import REPO  # noqa: E402
from benchmarks.machine_info import machine_info  # noqa: E402
from curation.dedup.minhash import (  # noqa: E402
    MinHasher,
    ShingleSpec,
    normalize_for_hashing,
    shingle_hashes,
)

log = logging.getLogger(__name__)
BATCH = 2000  # = spark.sql.execution.arrow.maxRecordsPerBatch, the engine's batch size


def chunk_text(text: str, target: int = 2048) -> list[str]:
    """Cut at line boundaries into pieces of about `target` bytes (last piece may be short)."""
    pieces, cur, size = [], [], 0
    for line in text.splitlines(keepends=True):
        cur.append(line)
        size += len(line.encode())
        if size >= target:
            pieces.append("".join(cur))
            cur, size = [], 0
    if cur and "".join(cur).strip():
        pieces.append("".join(cur))
    return pieces


def speed_documents(docs_jsonl: Path, n_docs: int, min_bytes: int = 1024) -> list[dict]:
    """~2 KB pieces of the labelled set, round-robin over sources, first `n_docs`."""
    by_source: dict[str, list[dict]] = {}
    with docs_jsonl.open(encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            for k, piece in enumerate(chunk_text(rec["text"])):
                if len(piece.encode()) >= min_bytes:
                    by_source.setdefault(rec["source"], []).append(
                        {"id": f"{rec['id']}#{k}", "text": piece, "source": rec["source"]})
    out: list[dict] = []
    queues = [by_source[s] for s in sorted(by_source)]
    pos = 0
    while len(out) < n_docs and any(pos < len(q) for q in queues):
        out.extend(q[pos] for q in queues if pos < len(q))
        pos += 1
    return out[:n_docs]


def datasketch_shingles(texts: list[str], n: int = 5) -> list[list[bytes]]:
    """Word n-gram byte-strings of normalised texts (a short text is one shingle), as the engine."""
    out = []
    for t in texts:
        words = t.split(" ") if t else []
        if not words:
            out.append([])
        elif len(words) < n:
            out.append([t.encode()])
        else:
            out.append([" ".join(words[i : i + n]).encode() for i in range(len(words) - n + 1)])
    return out


def ours_signatures(texts: list[str], num_perm: int) -> np.ndarray:
    hasher = MinHasher(num_perm, seed=42)
    spec = ShingleSpec("word", 5)
    sigs = []
    for lo in range(0, len(texts), BATCH):
        hashes, offsets = shingle_hashes(texts[lo : lo + BATCH], spec)
        sigs.append(hasher.signatures(hashes, offsets))
    return np.concatenate(sigs)


def datasketch_signatures(shingles: list[list[bytes]], num_perm: int) -> list:
    from datasketch import MinHash

    return MinHash.bulk(shingles, num_perm=num_perm)


def timed(fn: Callable[[], object], repeats: int) -> dict:
    """Median wall and CPU seconds over `repeats` runs."""
    walls, cpus = [], []
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return {"wall_s": statistics.median(walls), "cpu_s": statistics.median(cpus),
            "best_cpu_s": min(cpus),
            "wall_all": [round(w, 3) for w in walls], "cpu_all": [round(c, 3) for c in cpus]}


def signature_benchmark(texts: list[str], perms: list[int], repeats: int) -> dict:
    """Docs/s per core of ours vs datasketch on the same normalised texts."""
    shingles = datasketch_shingles(texts)
    n = len(texts)
    out = {"documents": n, "shingles": sum(len(s) for s in shingles),
           "mean_bytes": round(sum(len(t.encode()) for t in texts) / max(n, 1), 1)}
    for p in perms:
        ours = timed(lambda p=p: ours_signatures(texts, p), repeats)
        theirs = timed(lambda p=p: datasketch_signatures(shingles, p), repeats)
        theirs_full = timed(lambda p=p: datasketch_signatures(datasketch_shingles(texts), p), repeats)
        row = {"ours": ours, "datasketch_bulk": theirs, "datasketch_bulk_incl_shingling": theirs_full}
        for k in list(row):
            row[k]["docs_per_cpu_s"] = round(n / row[k]["cpu_s"], 1)
            row[k]["docs_per_wall_s"] = round(n / row[k]["wall_s"], 1)
        row["ratio_best_cpu"] = round(row["datasketch_bulk"]["best_cpu_s"] / row["ours"]["best_cpu_s"], 2)
        row["ratio_cpu"] = round(row["ours"]["docs_per_cpu_s"] / row["datasketch_bulk"]["docs_per_cpu_s"], 2)
        row["ratio_wall"] = round(row["ours"]["docs_per_wall_s"] / row["datasketch_bulk"]["docs_per_wall_s"], 2)
        out[f"perm_{p}"] = row
        log.info("signatures %d perms: ours %.0f docs/cpu-s, datasketch %.0f, ratio %.2fx",
                 p, row["ours"]["docs_per_cpu_s"], row["datasketch_bulk"]["docs_per_cpu_s"], row["ratio_cpu"])
    return out


class UnionFind:
    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, x: int) -> int:
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def datasketch_dedup(docs_jsonl: Path | Sequence[Path], out: Path, threshold: float = 0.7,
                     num_perm: int = 256) -> dict:
    """The baseline: MinHash.bulk + MinHashLSH + union-find in one Python process.

    `docs_jsonl`: one JSONL file or a list of them (`.gz` read as gzip), read in order."""
    from datasketch import MinHash, MinHashLSH

    ids, texts = [], []
    for path in [docs_jsonl] if isinstance(docs_jsonl, (str, Path)) else docs_jsonl:
        path = Path(path)
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as f:
            for line in f:
                rec = json.loads(line)
                ids.append(rec["id"])
                texts.append(normalize_for_hashing(rec["text"]))
    order = sorted(range(len(ids)), key=ids.__getitem__)  # keeper = smallest id, as ours
    ids = [ids[i] for i in order]
    texts = [texts[i] for i in order]
    shingles = datasketch_shingles(texts)
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    mhs = MinHash.bulk(shingles, num_perm=num_perm)
    with lsh.insertion_session() as session:
        for i, (m, s) in enumerate(zip(mhs, shingles, strict=True)):
            if s:
                session.insert(i, m, check_duplication=False)
    uf = UnionFind(len(ids))
    for i, (m, s) in enumerate(zip(mhs, shingles, strict=True)):
        if s:
            for j in lsh.query(m):
                uf.union(i, j)
    roots = [uf.find(i) for i in range(len(ids))]
    out.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"id": ids, "cluster_id": roots,
                             "keep": [r == i for i, r in enumerate(roots)]}), out / "dedup.parquet")
    return {"documents": len(ids), "kept": sum(r == i for i, r in enumerate(roots)),
            "bands_rows": list(lsh.b_and_r) if hasattr(lsh, "b_and_r") else [lsh.b, lsh.r]}


def end_to_end_benchmark(docs_jsonl: Path, out: Path, repeats: int) -> dict:
    from benchmarks.spark_dedup_run import run_dedup_subprocess

    ours, base = [], []
    for k in range(repeats):
        ours.append(run_dedup_subprocess(docs_jsonl, out / f"ours_{k}", "local[1]"))
        log.info("e2e ours run %d: %s s job", k, ours[-1]["job_seconds"])
        w0 = time.perf_counter()
        info = datasketch_dedup(docs_jsonl, out / f"datasketch_{k}")
        base.append(time.perf_counter() - w0)
        log.info("e2e datasketch run %d: %.1f s", k, base[-1])
    n = ours[0]["documents"]
    job = statistics.median(r["job_seconds"] for r in ours)
    proc = statistics.median(r["process_seconds"] for r in ours)
    b = statistics.median(base)
    return {"documents": n, "ours_local1_job_s": job, "ours_local1_process_s": proc,
            "ours_job_all": [r["job_seconds"] for r in ours], "ours_kept": ours[0]["kept"],
            "datasketch_s": round(b, 2), "datasketch_all": [round(x, 2) for x in base],
            "datasketch_kept": info["kept"], "datasketch_bands_rows": info["bands_rows"],
            "ours_docs_per_s": round(n / job, 1), "ours_docs_per_s_incl_startup": round(n / proc, 1),
            "datasketch_docs_per_s": round(n / b, 1), "ratio": round(b / job, 3),
            "ratio_incl_startup": round(b / proc, 3)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--labelled", type=Path, default=REPO / "benchmarks/out/labelled")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks/out/speed")
    ap.add_argument("--docs", type=int, default=20_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--perms", type=int, nargs="*", default=[128, 256])
    ap.add_argument("--e2e-docs", type=int, default=10_000,
                    help="end-to-end runs use the first N documents (Spark on 2 shared cores is slow)")
    ap.add_argument("--parts", nargs="*", default=["signatures", "e2e"], choices=["signatures", "e2e"],
                    help="run only some parts; results merge into an existing speed.json")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    docs = speed_documents(args.labelled / "docs.jsonl", args.docs)
    args.out.mkdir(parents=True, exist_ok=True)
    docs_path = args.out / "speed_docs.jsonl"
    with docs_path.open("w", encoding="utf-8") as f:
        for d in docs:
            f.write(json.dumps(d, ensure_ascii=False) + "\n")
    e2e_path = args.out / "e2e_docs.jsonl"
    with e2e_path.open("w", encoding="utf-8") as f:
        for d in docs[: args.e2e_docs]:
            f.write(json.dumps(d, ensure_ascii=False) + "\n")
    texts = [normalize_for_hashing(d["text"]) for d in docs]
    json_path = args.out / "speed.json"
    result = json.loads(json_path.read_text()) if json_path.is_file() else {}
    if "signatures" in args.parts:
        result["machine_signatures"] = machine_info()
        result["signatures"] = signature_benchmark(texts, args.perms, args.repeats)
    if "e2e" in args.parts:
        result["machine_e2e"] = machine_info()
        result["end_to_end"] = end_to_end_benchmark(e2e_path, args.out / "e2e", args.repeats)
    json_path.write_text(json.dumps(result, indent=2) + "\n")
    sig = result.get("signatures", {"documents": 0, "mean_bytes": 0, "shingles": 0})
    print(f"{sig['documents']} docs, mean {sig['mean_bytes']} B, {sig['shingles']} shingles")
    for p in [int(k[5:]) for k in sig if k.startswith("perm_")]:
        r = sig[f"perm_{p}"]
        print(f"signatures {p:4d} perms: ours {r['ours']['docs_per_cpu_s']:9.0f} docs/s/core | "
              f"datasketch bulk {r['datasketch_bulk']['docs_per_cpu_s']:8.0f} "
              f"(incl. shingling {r['datasketch_bulk_incl_shingling']['docs_per_cpu_s']:.0f}) | "
              f"ratio {r['ratio_cpu']:.2f}x (wall {r['ratio_wall']:.2f}x, best-of CPU "
              f"{r['ratio_best_cpu']:.2f}x)")
    if "end_to_end" in result:
        e = result["end_to_end"]
        print(f"end to end: ours local[1] {e['ours_docs_per_s']} docs/s (job; "
              f"{e['ours_docs_per_s_incl_startup']} incl. JVM start) | datasketch+union-find "
              f"{e['datasketch_docs_per_s']} docs/s | ratio {e['ratio']}x ({e['ratio_incl_startup']}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
