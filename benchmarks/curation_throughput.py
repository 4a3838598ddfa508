"""Curation throughput: `sharpen curate dedup` on Spark against datasketch, side by side in
one run, on the same documents of the planted-duplicate corpus (`benchmarks.dedup_corpus`).

What it measures, per repeat (ours on each master, then the peer, each in a fresh
process; `benchmark` says why the peer runs last):
- before each run every input file is read once (page cache warm for each system);
- the peer: datasketch in ONE Python process (`minhash_speed.datasketch_dedup`): read the
  JSONL parts, `normalize_for_hashing`, 5-word shingles, `MinHash.bulk`, `MinHashLSH`
  (threshold 0.7, 256 permutations; datasketch's own bands/rows), query every document,
  union-find, write Parquet. Its wall s, CPU s (`process_time`) and peak RSS (`ru_maxrss`)
  are taken inside that process, so interpreter start-up is not counted;
- ours: `run_curation(mode="dedup")` (what `sharpen curate dedup` runs) on local[N] via
  `spark_dedup_run.run_dedup_subprocess`: job s (the call alone, JVM start excluded),
  process s (with it), CPU s of the whole process tree (driver + JVM + Python workers, psutil
  every 0.2 s), peak RSS by role, and the per-stage profile of stats.json;
- throughput: MB of text (UTF-8 bytes of the `text` fields) per second; ours per core =
  MB / (job s * N) for local[N] (local[*]: all cores); ratio per core = ours MB/s/core over
  datasketch MB/s (one core). MB per CPU second is printed too for both;
- local[1] -> local[2] (first master -> the others): speed-up in job wall s, and CPU s;
- recall on the planted truth: of the truth pairs with exact Jaccard >= 0.7 (both ids in
  the input), the share whose two ids end in the same cluster (ours: `dedup/` cluster_id;
  datasketch: union-find root);
- whether the `dedup/` Parquet files are byte-identical (sha256 by relative path) across
  masters, and whether the (id, cluster_id, keep) rows are.

Caveats: ours also runs the exact-dedup stage and verifies candidate pairs with exact
Jaccard; datasketch does neither (so it keeps LSH false positives; recall is comparable,
precision is not measured here). The project machine is shared (2 cores, other jobs): wall
times move with the load, so CPU seconds are reported next to them; the tree's CPU s miss
at most the last 0.2 s of each short-lived process. Peak RSS of ours is the peak of each
role's summed RSS; the peer's is one process's `ru_maxrss`.

Run: .venv/bin/python -m benchmarks.curation_throughput --size-gb 1.0 [--seed 0 --files 64]
  [--masters local[1] local[2]] [--repeats 1] [--docs N] [--corpus DIR]
  [--out benchmarks/out/curation_throughput]
(`--docs 10000`: only the first N records of the parts, in one JSONL under --out; `--corpus
DIR` with a manifest.json: that corpus as it is, whatever --size-gb says.)
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import logging
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from benchmarks.dedup_corpus import DEFAULT_OUT as CORPUS_ROOT
from benchmarks.dedup_corpus import Plan, build
from benchmarks.machine_info import machine_info
from benchmarks.spark_dedup_run import REPO, run_dedup_subprocess
from curation.config import DedupConfig

log = logging.getLogger("curation_throughput")
OUT = REPO / "benchmarks/out/curation_throughput"
THRESHOLD = DedupConfig().threshold  # 0.7: the engine's default, given to both sides
NUM_PERM = DedupConfig().num_perm  # 256
ROLES = ("jvm", "python_worker", "driver")


# ------------------------------------------------------------------------------ inputs


@dataclass
class Inputs:
    """The documents both sides read: `engine` (paths/globs for run_curation), `files`
    (the same records as a list of files for datasketch), their size and the truth."""

    engine: list[str]
    files: list[Path]
    documents: int
    text_bytes: int
    truth: list[dict]
    corpus: Path
    manifest: dict


def corpus_dir(args: argparse.Namespace) -> Path:
    if args.corpus is not None:
        return args.corpus
    tag = f"{args.size_gb:g}gb_seed{args.seed}_files{args.files}"
    return CORPUS_ROOT.parent / f"dedup_corpus_{tag}"


def prepare_corpus(args: argparse.Namespace) -> tuple[Path, dict]:
    """An existing corpus under --corpus is used as it is; otherwise build (or reuse) one."""
    out = corpus_dir(args)
    if args.corpus is not None and (out / "manifest.json").is_file():
        manifest = json.loads((out / "manifest.json").read_text())
        log.info("using the corpus in %s as it is (%s)", out, manifest.get("command"))
        return out, manifest
    plan = Plan(size_gb=args.size_gb, seed=args.seed, files=args.files,
                max_doc_bytes=int(args.max_doc_kb * 1024),
                sources=tuple(args.sources.split(",")) if args.sources else None)
    t0 = time.perf_counter()
    manifest, reused = build(plan, out)
    log.info("%s corpus %s in %.1f s", "reused" if reused else "built", out, time.perf_counter() - t0)
    return out, manifest


def _open(path: Path):
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else path.open(encoding="utf-8")


def read_jsonl(path: Path) -> list[dict]:
    with _open(path) as f:
        return [json.loads(line) for line in f]


def part_files(corpus: Path, manifest: dict) -> list[Path]:
    """The corpus's part files in order (never manifest.json / truth.jsonl)."""
    return [corpus / f["name"] for f in manifest["files"]]


def select_inputs(corpus: Path, manifest: dict, n_docs: int | None, out: Path) -> Inputs:
    """All part files, or the first `n_docs` records of them written to one JSONL in `out`;
    the truth keeps only the pairs whose both ids are in the selection."""
    parts = part_files(corpus, manifest)
    truth = read_jsonl(corpus / manifest["truth"]["name"])
    if n_docs is None:
        return Inputs([str(corpus / "part-*")], parts, manifest["documents"]["total"],
                      manifest["text_bytes"]["total"], truth, corpus, manifest)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"first_{n_docs}_docs.jsonl"
    ids: set[str] = set()
    text_bytes = 0
    with path.open("w", encoding="utf-8") as f:
        for part in parts:
            with _open(part) as src:
                for line in src:
                    if len(ids) >= n_docs:
                        break
                    rec = json.loads(line)
                    ids.add(rec["id"])
                    text_bytes += len(rec["text"].encode("utf-8"))
                    f.write(line if line.endswith("\n") else line + "\n")
            if len(ids) >= n_docs:
                break
    truth = [t for t in truth if t["dup_id"] in ids and t["source_id"] in ids]
    return Inputs([str(path)], [path], len(ids), text_bytes, truth, corpus, manifest)


# ----------------------------------------------------------------------------- scoring


def planted_recall(cluster: dict[str, object], truth: list[dict], threshold: float) -> dict:
    """Recall over the truth pairs with jaccard >= threshold: a pair is found when both ids
    have the same (non-null) cluster. Also by planted kind."""
    pairs = found = 0
    by_kind: dict[str, list[int]] = {}
    for t in truth:
        if t["jaccard"] < threshold:
            continue
        a, b = cluster.get(t["dup_id"]), cluster.get(t["source_id"])
        hit = a is not None and a == b
        pairs += 1
        found += hit
        k = by_kind.setdefault(t["kind"], [0, 0])
        k[0] += 1
        k[1] += hit
    return {"pairs": pairs, "found": found, "recall": found / pairs if pairs else 1.0,
            "by_kind": {k: round(v[1] / v[0], 4) for k, v in sorted(by_kind.items())}}


def read_clusters(dedup: Path) -> tuple[dict[str, object], int]:
    """id -> cluster_id of a dedup output (a Parquet file or directory), and kept count."""
    t = pq.read_table(dedup, columns=["id", "cluster_id", "keep"]).to_pydict()
    return dict(zip(t["id"], t["cluster_id"], strict=True)), sum(bool(k) for k in t["keep"])


def rows_digest(dedup: Path) -> str:
    """sha256 of the sorted (id, cluster_id, keep) rows: same clusters whatever the files."""
    t = pq.read_table(dedup, columns=["id", "cluster_id", "keep"]).to_pydict()
    h = hashlib.sha256()
    for row in sorted(zip(t["id"], t["cluster_id"], t["keep"], strict=True), key=lambda r: r[0]):
        h.update(json.dumps(row).encode() + b"\n")
    return h.hexdigest()


def parquet_digests(dedup: Path) -> dict[str, str]:
    """sha256 of each Parquet file under `dedup`, by relative path (names are deterministic)."""
    out = {}
    for p in sorted(dedup.rglob("*.parquet")):
        with p.open("rb") as f:
            out[str(p.relative_to(dedup))] = hashlib.file_digest(f, "sha256").hexdigest()
    return out


def scaling(ours: dict[str, dict]) -> dict[str, dict]:
    """Speed-up from the master with the fewest cores to each other one, in job wall
    seconds: between the medians, and per repeat (the masters run back to back within a
    repeat, so a repeat's pair shares the machine's mood), with the CPU seconds beside."""
    order = sorted(ours, key=lambda m: ours[m]["cores"])
    base = ours[order[0]]
    out = {}
    for m in order[1:]:
        o = ours[m]
        out[f"{order[0]}->{m}"] = {
            "speedup_wall": round(base["job_s"] / o["job_s"], 3),
            "speedup_per_repeat": [round(a / b, 3) for a, b in zip(base["job_all"], o["job_all"],
                                                                    strict=True)],
            "cpu_s": [base["cpu_s"], o["cpu_s"]],
            "cpu_all": [base["cpu_all"], o["cpu_all"]],
            "cpu_ratio": round(o["cpu_s"] / base["cpu_s"], 3)}
    return out


def cores_of(master: str) -> int:
    """N of local[N]; local[*] (and local[*, F]) -> os.cpu_count(); plain `local` -> 1."""
    m = re.fullmatch(r"local(?:\[(\*|\d+)(?:,\s*\d+)?\])?", master.strip())
    if m is None:
        raise ValueError(f"not a local master: {master!r}")
    n = m.group(1)
    if n is None:
        return 1
    return (os.cpu_count() or 1) if n == "*" else int(n)


def _tag(master: str) -> str:
    return master.replace("[", "").replace("]", "").replace("*", "all").replace(",", "_")


# ------------------------------------------------------------------------------ the peer


def _datasketch_child(argv: list[str]) -> int:
    """In a fresh process: datasketch_dedup, timed from inside; prints one JSON line."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--threshold", type=float, required=True)
    ap.add_argument("--num-perm", type=int, required=True)
    ap.add_argument("files", type=Path, nargs="+")
    args = ap.parse_args(argv)
    import datasketch  # noqa: F401  (its import time stays outside the timing)

    from benchmarks.minhash_speed import datasketch_dedup

    w0, c0 = time.perf_counter(), time.process_time()
    info = datasketch_dedup(args.files, args.out, args.threshold, args.num_perm)
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({**info, "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
                      "peak_rss_mib": round(peak_kib / 1024, 1)}))
    return 0


def run_datasketch(files: list[Path], out: Path, threshold: float, num_perm: int,
                   timeout_s: float = 6 * 3600) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "benchmarks.curation_throughput", "--datasketch-child",
           "--out", str(out), "--threshold", str(threshold), "--num-perm", str(num_perm),
           *map(str, files)]
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           **dict.fromkeys(("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                            "NUMEXPR_NUM_THREADS"), "1")}  # before numpy is imported
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout_s)
    if proc.returncode != 0:
        raise RuntimeError(f"datasketch run failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res.update(process_s=round(time.perf_counter() - t0, 2), dedup_path=str(out / "dedup.parquet"))
    return res


# ----------------------------------------------------------------------------- the runs


def warm_page_cache(files: list[Path]) -> None:
    """Read every input file once, so that each run starts with its input in the page
    cache, whatever the run before it evicted."""
    for path in files:
        with path.open("rb") as f:
            while f.read(8 << 20):
                pass


def benchmark(inputs: Inputs, out: Path, masters: list[str], repeats: int,
              shuffle_partitions: int | None = None) -> dict:
    """Ours on each master, then datasketch, `repeats` times; medians and the report.
    The peer runs last: on this VM a run right after the peer's 11.5 GiB process was
    slower for a while (ours on local[2]: 76.4 s job and 136 CPU-s after it, 68.3 s and
    122 CPU-s on its own, same commit), which charged the peer's memory use to us."""
    peer: list[dict] = []
    ours: dict[str, list[dict]] = {m: [] for m in masters}
    for k in range(repeats):
        for m in masters:
            run_out = out / f"ours_{_tag(m)}"
            shutil.rmtree(run_out, ignore_errors=True)  # else the job resumes its stages
            warm_page_cache(inputs.files)
            r = run_dedup_subprocess(inputs.engine, run_out, m, shuffle_partitions=shuffle_partitions)
            if r.get("resumed"):
                raise RuntimeError(f"{m}: stages resumed from an earlier run: {r['resumed']}")
            if k == 0:
                dedup = Path(r["dedup_path"])
                cluster, _ = read_clusters(dedup)
                r.update(recall=planted_recall(cluster, inputs.truth, THRESHOLD),
                         parquet_sha256=parquet_digests(dedup), rows_sha256=rows_digest(dedup))
            ours[m].append(r)
            log.info("repeat %d %s: job %.1f s, process %.1f s, CPU %.1f s", k, m,
                     r["job_seconds"], r["process_seconds"], r["cpu_seconds"])
        warm_page_cache(inputs.files)
        res = run_datasketch(inputs.files, out / "datasketch", THRESHOLD, NUM_PERM)
        if k == 0:
            cluster, kept = read_clusters(Path(res["dedup_path"]))
            res.update(recall=planted_recall(cluster, inputs.truth, THRESHOLD), kept_read=kept)
        peer.append(res)
        log.info("repeat %d datasketch: %.1f s wall, %.1f s CPU", k, res["wall_s"], res["cpu_s"])
    return summarise(inputs, peer, ours, masters)


def summarise(inputs: Inputs, peer: list[dict], ours: dict[str, list[dict]],
              masters: list[str]) -> dict:
    mb = inputs.text_bytes / 1e6
    med = statistics.median
    p0 = peer[0]
    ds_wall, ds_cpu = med(r["wall_s"] for r in peer), med(r["cpu_s"] for r in peer)
    report: dict = {
        "machine": machine_info(), "corpus": str(inputs.corpus),
        "corpus_command": inputs.manifest.get("command"), "inputs": inputs.engine,
        "documents": inputs.documents, "text_mb": round(mb, 3), "threshold": THRESHOLD,
        "num_perm": NUM_PERM, "repeats": len(peer),
        "truth_pairs": len(inputs.truth), "truth_pairs_ge_threshold": p0["recall"]["pairs"],
        "datasketch": {
            "wall_s": round(ds_wall, 3), "wall_all": [r["wall_s"] for r in peer],
            "cpu_s": round(ds_cpu, 3), "cpu_all": [r["cpu_s"] for r in peer],
            "process_s": med(r["process_s"] for r in peer),
            "mb_per_s": round(mb / ds_wall, 4), "mb_per_cpu_s": round(mb / ds_cpu, 4),
            "peak_rss_mib": max(r["peak_rss_mib"] for r in peer), "documents": p0["documents"],
            "kept": p0["kept"], "bands_rows": p0["bands_rows"], "recall": p0["recall"]},
        "ours": {},
    }
    ds_rate = mb / ds_wall
    for m in masters:
        rs = ours[m]
        job, cpu = med(r["job_seconds"] for r in rs), med(r["cpu_seconds"] for r in rs)
        cores = cores_of(m)
        profile = rs[0].get("profile", {})
        mem = [r["memory"] for r in rs]
        per_core = mb / (job * cores)
        report["ours"][m] = {
            "cores": cores, "job_s": job, "job_all": [r["job_seconds"] for r in rs],
            "process_s": med(r["process_seconds"] for r in rs),
            "session_s": med(r["session_seconds"] for r in rs),
            "cpu_s": round(cpu, 2), "cpu_all": [r["cpu_seconds"] for r in rs],
            "stage_cpu_s": round(sum(p.get("cpu_s", 0.0) for p in profile.values()), 2),
            "mb_per_s": round(mb / job, 4), "mb_per_s_per_core": round(per_core, 4),
            "mb_per_cpu_s": round(mb / cpu, 4) if cpu else None,
            "ratio_per_core_vs_datasketch": round(per_core / ds_rate, 3),
            "ratio_cpu_vs_datasketch": round((mb / cpu) / (mb / ds_cpu), 3) if cpu else None,
            "peak_rss_mib": {role: max(x["peak_sum_mib"].get(role, 0) for x in mem) for role in ROLES},
            "peak_python_worker_single_mib": max(x["peak_single_mib"].get("python_worker", 0)
                                                 for x in mem),
            "max_python_workers": max(x["max_processes"].get("python_worker", 0) for x in mem),
            "documents": rs[0]["documents"], "kept": rs[0]["kept"], "removed": rs[0]["removed"],
            "lsh": rs[0].get("lsh"), "recall": rs[0]["recall"], "profile": profile,
            "parquet_sha256": rs[0]["parquet_sha256"], "rows_sha256": rs[0]["rows_sha256"],
        }
    report["scaling"] = scaling(report["ours"])
    runs = list(report["ours"].values())
    report["outputs_byte_identical"] = (all(r["parquet_sha256"] == runs[0]["parquet_sha256"]
                                            for r in runs) if len(runs) > 1 else None)
    report["outputs_rows_identical"] = (all(r["rows_sha256"] == runs[0]["rows_sha256"]
                                            for r in runs) if len(runs) > 1 else None)
    return report


# ------------------------------------------------------------------------------- report


def _mib(x: float | None) -> str:
    return "-" if not x else f"{x:.0f}"


def markdown(r: dict) -> str:
    ds = r["datasketch"]
    lines = [
        f"{r['documents']:,} documents, {r['text_mb']:.1f} MB of text; threshold {r['threshold']}, "
        f"{r['num_perm']} perms, 5-word shingles; {r['truth_pairs_ge_threshold']:,} planted pairs "
        f"at J >= {r['threshold']}; median of {r['repeats']} repeat(s)",
        "",
        "| system | job s | process s | CPU s | MB/s | MB/s per core | ratio per core | "
        "MB per CPU s | peak RSS MiB JVM / Py workers / driver | kept | recall |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|",
        f"| datasketch (1 process) | {ds['wall_s']:.1f} | {ds['process_s']:.1f} | {ds['cpu_s']:.1f} | "
        f"{ds['mb_per_s']:.3f} | {ds['mb_per_s']:.3f} | 1.00x | {ds['mb_per_cpu_s']:.3f} | "
        f"- / - / {_mib(ds['peak_rss_mib'])} | {ds['kept']:,} | {ds['recall']['recall']:.4f} |",
    ]
    for m, o in r["ours"].items():
        p = o["peak_rss_mib"]
        cpu_rate = "-" if o["mb_per_cpu_s"] is None else f"{o['mb_per_cpu_s']:.3f}"
        lines.append(
            f"| ours {m} | {o['job_s']:.1f} | {o['process_s']:.1f} | {o['cpu_s']:.1f} | "
            f"{o['mb_per_s']:.3f} | {o['mb_per_s_per_core']:.3f} | "
            f"{o['ratio_per_core_vs_datasketch']:.2f}x | {cpu_rate} | "
            f"{_mib(p['jvm'])} / {_mib(p['python_worker'])} / {_mib(p['driver'])} | "
            f"{o['kept']:,} | {o['recall']['recall']:.4f} |")
    lines.append("")
    for key, s in r["scaling"].items():
        each = ", ".join(f"{x:.2f}x" for x in s["speedup_per_repeat"])
        cpu = ", ".join(f"{a:.1f} -> {b:.1f}" for a, b in zip(*s["cpu_all"], strict=True))
        lines.append(f"scaling {key}: {s['speedup_wall']:.2f}x in job wall s between the "
                     f"medians (per repeat: {each}); CPU s {s['cpu_s'][0]:.1f} -> "
                     f"{s['cpu_s'][1]:.1f} ({s['cpu_ratio']:.2f}x; per repeat: {cpu})")
    lines.append(f"dedup/ Parquet byte-identical across masters: {r['outputs_byte_identical']}; "
                 f"same (id, cluster_id, keep) rows: {r['outputs_rows_identical']}")
    lines.append(f"datasketch bands/rows {ds['bands_rows']}; ours "
                 f"{next(iter(r['ours'].values())).get('lsh', {}).get('description')}")
    for m, o in r["ours"].items():
        lines += ["", f"ours {m}, per-stage profile (first repeat):", "",
                  "| stage | wall s | tasks | CPU s | Python CPU s | bytes written | "
                  "shuffle bytes written |", "|---|---:|---:|---:|---:|---:|---:|"]
        for name, s in o["profile"].items():
            lines.append(f"| {name} | {s.get('wall_s', 0):.2f} | {s.get('tasks', 0)} | "
                         f"{s.get('cpu_s', 0):.2f} | {s.get('python_cpu_s', 0):.2f} | "
                         f"{s.get('bytes_written', 0):,} | {s.get('shuffle_bytes_written', 0):,} |")
    return "\n".join(lines)


# --------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--datasketch-child"]:
        return _datasketch_child(argv[1:])
    d = Plan()
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size-gb", type=float, default=d.size_gb)
    ap.add_argument("--seed", type=int, default=d.seed)
    ap.add_argument("--files", type=int, default=d.files)
    ap.add_argument("--sources", help="corpus source groups, comma-separated (default: all)")
    ap.add_argument("--max-doc-kb", type=float, default=d.max_doc_bytes / 1024)
    ap.add_argument("--corpus", type=Path, default=None,
                    help="corpus folder (used as it is when it holds a manifest.json; default: "
                         "benchmarks/out/dedup_corpus_<size>gb_seed<s>_files<f>)")
    ap.add_argument("--docs", type=int, default=None, help="only the first N documents")
    ap.add_argument("--masters", nargs="+", default=["local[1]", "local[2]"])
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--shuffle-partitions", type=int, default=None,
                    help="override the config's shuffle width (default: the config's)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("benchmarks.dedup_labelled_set").setLevel(logging.WARNING)
    for m in args.masters:
        cores_of(m)  # fail early on a non-local master
    corpus, manifest = prepare_corpus(args)
    inputs = select_inputs(corpus, manifest, args.docs, args.out)
    log.info("%d documents, %.1f MB of text, %d truth pairs", inputs.documents,
             inputs.text_bytes / 1e6, len(inputs.truth))
    report = benchmark(inputs, args.out / "runs", args.masters, args.repeats,
                       args.shuffle_partitions)
    label = f"{inputs.documents}docs" if args.docs else f"{manifest['params']['size_gb']:g}gb"
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"report_{label}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(markdown(report))
    print(f"\nwritten: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
