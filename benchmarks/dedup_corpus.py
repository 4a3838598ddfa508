"""Build a dedup benchmark corpus of >= 1 GB of real text with planted near duplicates.

Why: the labelled set (`dedup_labelled_set.py`, ~100 MB) is too small to measure the
engine at scale, and its duplicates are only those the packages happen to contain. Here a
seeded build streams real documents from this machine (`corpus_sources`), plants near
duplicates at known rates and records, for every planted pair, the exact Jaccard on the
engine's own shingle sets (`near_duplicates`). A benchmark can then compute recall at the
default threshold over the pairs with J >= threshold. This module is the build (spool,
shuffle into files, truth, manifest, reuse) and its CLI.

On the project machine the sources hold about 1.2 GB of distinct text, so a 1 GB build is
~0.8 GB of base text plus ~0.2 GB of planted copies (drawn per base document from
`Random(f"{seed}:{index}")`). If the sources run out first, the rest is made of further
planted copies of base documents ("top-up", counted in the manifest).

Outputs in `--out` (default `benchmarks/out/dedup_corpus`, git-ignored, never committed):
`part-00000.jsonl[.gz]` ... (records `{"id", "text", "source"}`, shuffled with the seed so
copies land in other files, balanced by bytes); `truth.jsonl[.gz]` (one line per planted
pair: `dup_id`, `source_id`, `kind`, `params`, `jaccard`, shingle counts, both files);
`manifest.json` (parameters, counts, bytes, sha256 per file); `timing.json`. Same seed,
size and machine give byte-identical files; a second run with the same parameters reuses
the corpus. The build streams: texts go to a spool file in `--out` (so it needs about
twice the size on disk while it runs) and only offsets stay in memory. Planted ids are
`<source id>#<kind><k>`, readable on purpose (the engine never looks at ids).

Limits: the truth lists planted pairs only. Base documents also contain natural near
duplicates (two CPython builds, vendored packages, translations), which are not labelled:
measure recall here and precision on the labelled set. Copies of one base document are
near duplicates of each other too (same `source_id`).

Run: .venv/bin/python -m benchmarks.dedup_corpus --size-gb 1.0 --seed 0 --files 64
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import logging
import mmap
import random
import shlex
import time
from array import array
from collections import Counter, deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

from benchmarks.corpus_sources import REPO, Base, BaseStream, Group, resolve_groups, survey
from benchmarks.near_duplicates import KINDS, NEAR_KINDS, Pair, PairScorer, plant, plant_near
from curation.config import DedupConfig
from curation.dedup.minhash import ShingleSpec, normalize_for_hashing

log = logging.getLogger(__name__)

DEFAULT_OUT = REPO / "benchmarks/out/dedup_corpus"
VERSION = 1  # bump when the output for the same parameters changes


# --------------------------------------------------------------------------- parameters


@dataclass(frozen=True)
class Plan:
    """Everything that determines the corpus (with the machine's files): the reuse key."""

    size_gb: float = 1.0
    seed: int = 0
    files: int = 64
    fmt: str = "jsonl"
    near_rate: float = 0.10
    max_copies: int = 3
    exact_rate: float = 0.03
    edit_fraction: tuple[float, float] = (0.02, 0.08)
    insert_fraction: tuple[float, float] = (0.05, 0.30)
    truncate_keep: tuple[float, float] = (0.80, 0.95)
    boilerplate_fraction: tuple[float, float] = (0.05, 0.25)
    max_doc_bytes: int = 256 * 1024
    sources: tuple[str, ...] | None = None  # group names; None = all default groups
    version: int = VERSION

    def __post_init__(self) -> None:
        if self.size_gb <= 0 or self.files < 1 or self.max_copies < 1:
            raise ValueError("size_gb must be > 0, files and max_copies >= 1")
        if self.fmt not in ("jsonl", "jsonl.gz"):
            raise ValueError(f"fmt must be 'jsonl' or 'jsonl.gz', got {self.fmt!r}")
        if not (0 <= self.near_rate <= 1 and 0 <= self.exact_rate <= 1):
            raise ValueError("rates must be in [0, 1]")

    @property
    def target_bytes(self) -> int:
        return int(self.size_gb * 1e9)

    def params(self) -> dict:
        """JSON form (tuples as lists), as stored in and compared with the manifest."""
        return json.loads(json.dumps(asdict(self)))

    def command(self) -> str:
        """The CLI line that rebuilds this corpus (output folder left out)."""
        d = Plan()
        args = ["python", "-m", "benchmarks.dedup_corpus", "--size-gb", f"{self.size_gb:g}",
                "--seed", str(self.seed), "--files", str(self.files), "--format", self.fmt]
        if self.near_rate != d.near_rate:
            args += ["--near-rate", f"{self.near_rate:g}"]
        if self.max_copies != d.max_copies:
            args += ["--max-copies", str(self.max_copies)]
        if self.exact_rate != d.exact_rate:
            args += ["--exact-rate", f"{self.exact_rate:g}"]
        if self.max_doc_bytes != d.max_doc_bytes:
            args += ["--max-doc-kb", f"{self.max_doc_bytes / 1024:g}"]
        if self.sources is not None:
            args += ["--sources", ",".join(self.sources)]
        return shlex.join(args)


# ------------------------------------------------------------------------------- writing


def _line(doc_id: str, text: str, source: str) -> bytes:
    return (json.dumps({"id": doc_id, "text": text, "source": source}, ensure_ascii=False)
            + "\n").encode("utf-8")


class Spool:
    """All corpus lines, appended in creation order to one file; only offsets in memory."""

    def __init__(self, path: Path):
        self.path = path
        self.f: BinaryIO = path.open("wb")
        self.offsets, self.lengths = array("q"), array("q")
        self.pos = 0

    def add(self, line: bytes) -> int:
        self.offsets.append(self.pos)
        self.lengths.append(len(line))
        self.f.write(line)
        self.pos += len(line)
        return len(self.offsets) - 1

    def __len__(self) -> int:
        return len(self.offsets)


def _open_out(path: Path, fmt: str) -> BinaryIO:
    if fmt == "jsonl.gz":  # mtime 0 and no name: byte-identical reruns
        return gzip.GzipFile(filename="", mode="wb", fileobj=path.open("wb"), mtime=0)
    return path.open("wb")


def _close_out(f: BinaryIO) -> None:
    inner = getattr(f, "fileobj", None)
    f.close()
    if inner is not None:
        inner.close()


def _size_and_sha256(path: Path) -> dict:
    """The manifest's `bytes` and `sha256` of a written file."""
    with path.open("rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    return {"bytes": path.stat().st_size, "sha256": digest}


def _clean(out: Path) -> None:
    """Remove what an earlier build wrote (and nothing else)."""
    (out / "manifest.json").unlink(missing_ok=True)
    for pattern in ("part-*.jsonl", "part-*.jsonl.gz", "truth.jsonl", "truth.jsonl.gz",
                    ".spool.jsonl", "timing.json"):
        for p in out.glob(pattern):
            p.unlink()


def reusable(out: Path, plan: Plan) -> dict | None:
    """The manifest of a finished build with the same parameters whose files are all there."""
    path = out / "manifest.json"
    if not path.is_file():
        return None
    manifest = json.loads(path.read_text())
    if manifest.get("params") != plan.params():
        return None
    for f in [*manifest["files"], manifest["truth"]]:
        p = out / f["name"]
        if not p.is_file() or p.stat().st_size != f["bytes"]:
            return None
    return manifest


def _jaccard_summary(pairs: list[Pair], threshold: float) -> dict:
    out = {}
    for kind in KINDS:
        js = np.array([p.jaccard for p in pairs if p.kind == kind])
        if js.size:
            q = np.quantile(js, [0.0, 0.1, 0.5, 0.9, 1.0])
            out[kind] = {"pairs": int(js.size), "ge_threshold": int((js >= threshold).sum()),
                         "min": round(float(q[0]), 4), "p10": round(float(q[1]), 4),
                         "median": round(float(q[2]), 4), "p90": round(float(q[3]), 4),
                         "max": round(float(q[4]), 4)}
    return out


@dataclass
class Collected:
    """What the scan leaves in memory: offsets in the spool, the pairs, byte counts."""

    spool: Spool
    stream: BaseStream
    pairs: list[Pair] = field(default_factory=list)
    base_lines: array = field(default_factory=lambda: array("q"))
    text_bytes: Counter[str] = field(default_factory=Counter)
    exhausted: bool = True
    topup_rounds: int = 0

    def total(self) -> int:
        return sum(self.text_bytes.values())

    def add(self, doc_id: str, text: str, source: str, kind: str) -> int:
        """Spool one record, counting its text under `kind`; returns its line."""
        self.text_bytes[kind] += len(text.encode("utf-8"))
        return self.spool.add(_line(doc_id, text, source))


def _add_copies(c: Collected, scorer: PairScorer, doc: Base, line: int,
                copies: list[tuple[str, str, dict]], tag: str) -> None:
    for k, (kind, text, params) in enumerate(copies):
        dup_id = f"{doc.id}#{tag}{kind}{k}"
        pair = Pair(dup_id, doc.id, kind, params, c.add(dup_id, text, doc.source, kind), line)
        c.pairs.append(pair)
        scorer.add(pair, doc.norm, normalize_for_hashing(text))
    scorer.maybe_flush()


def collect(plan: Plan, groups: list[Group], spool: Spool, scorer: PairScorer) -> Collected:
    """Stream base documents into the spool, each followed by its planted copies, until
    the text reaches the target; top up with more copies if the sources run out."""
    c = Collected(spool, BaseStream(plan.max_doc_bytes))
    donors: deque[tuple[str, str]] = deque(maxlen=64)
    next_log = 100e6
    for i, doc in enumerate(c.stream.round_robin(groups)):
        line = c.add(doc.id, doc.text, doc.source, "base")
        c.base_lines.append(line)
        _add_copies(c, scorer, doc, line, plant(doc, random.Random(f"{plan.seed}:{i}"), plan, donors), "")
        donors.append((doc.id, doc.text))
        if c.total() >= next_log:
            log.info("%.0f MB of text, %d base documents", c.total() / 1e6, i + 1)
            next_log += 100e6
        if c.total() >= plan.target_bytes:
            c.exhausted = False
            return c
    if not c.base_lines:
        return c
    spool.f.flush()
    order = np.random.default_rng([plan.seed, 1]).permutation(len(c.base_lines))
    donors.clear()
    with spool.path.open("rb") as reader:
        while c.total() < plan.target_bytes:
            c.topup_rounds += 1
            log.info("sources exhausted at %.1f MB: top-up round %d", c.total() / 1e6, c.topup_rounds)
            for j in order:
                line = c.base_lines[j]
                reader.seek(spool.offsets[line])
                rec = json.loads(reader.read(spool.lengths[line]))
                doc = Base(rec["id"], rec["text"], rec["source"], normalize_for_hashing(rec["text"]))
                rng = random.Random(f"{plan.seed}:topup{c.topup_rounds}:{j}")
                copy = plant_near(doc.text, rng, plan, rng.choice(NEAR_KINDS), donors)
                _add_copies(c, scorer, doc, line, [copy], f"r{c.topup_rounds}-")
                donors.append((doc.id, doc.text))
                if c.total() >= plan.target_bytes:
                    break
    return c


def write_parts(plan: Plan, spool: Spool, out: Path) -> tuple[list[dict], list[str], np.ndarray]:
    """Shuffle all lines with the seed and cut that order into files of about equal bytes.

    Returns the files' entries for the manifest, their names and each spool line's file."""
    n = len(spool)
    perm = np.random.default_rng(plan.seed).permutation(n)
    lens = np.frombuffer(spool.lengths, dtype=np.int64)[perm] if n else np.zeros(0, np.int64)
    total = int(lens.sum())
    mid = np.cumsum(lens) - lens / 2  # a line goes to the file holding its middle byte
    file_of_pos = np.minimum((mid * plan.files / max(total, 1)).astype(np.int64), plan.files - 1)
    bounds = np.searchsorted(file_of_pos, np.arange(plan.files + 1), side="left")
    file_of_line = np.empty(n, dtype=np.int64)
    file_of_line[perm] = file_of_pos
    offsets = np.frombuffer(spool.offsets, dtype=np.int64) if n else np.zeros(0, np.int64)
    names = [f"part-{k:05d}.{plan.fmt}" for k in range(plan.files)]
    files = []
    with spool.path.open("rb") as raw:
        mm = mmap.mmap(raw.fileno(), 0, access=mmap.ACCESS_READ) if total else None
        for k, name in enumerate(names):
            f = _open_out(out / name, plan.fmt)
            lines = perm[bounds[k]: bounds[k + 1]]
            for line in lines:
                f.write(mm[offsets[line]: offsets[line] + spool.lengths[line]])
            _close_out(f)
            files.append({"name": name, "docs": int(lines.size),
                          "jsonl_bytes": int(lens[bounds[k]: bounds[k + 1]].sum()),
                          **_size_and_sha256(out / name)})
        if mm is not None:
            mm.close()
    return files, names, file_of_line


def write_truth(path: Path, fmt: str, pairs: list[Pair], names: list[str],
                file_of_line: np.ndarray) -> None:
    f = _open_out(path, fmt)
    for p in pairs:
        f.write((json.dumps({
            "dup_id": p.dup_id, "source_id": p.source_id, "kind": p.kind, "params": p.params,
            "jaccard": p.jaccard, "shingles": p.shingles,
            "dup_file": names[file_of_line[p.dup_line]],
            "source_file": names[file_of_line[p.source_line]]}, ensure_ascii=False) + "\n").encode())
    _close_out(f)


def _manifest(plan: Plan, c: Collected, spec: ShingleSpec, threshold: float, files: list[dict],
              truth: Path) -> dict:
    pairs, n_base = c.pairs, len(c.base_lines)
    by_kind = Counter(p.kind for p in pairs)
    near_sources = len({p.source_line for p in pairs if p.kind != "exact"})
    exact_sources = len({p.source_line for p in pairs if p.kind == "exact"})
    return {
        "generator": "benchmarks.dedup_corpus", "params": plan.params(), "command": plan.command(),
        "shingle": {"kind": spec.kind, "n": spec.n}, "threshold": threshold,
        "documents": {"total": len(c.spool), "base": n_base, "planted": len(pairs),
                      "by_kind": {k: by_kind.get(k, 0) for k in KINDS},
                      "base_with_near_copies": near_sources, "base_with_exact_copy": exact_sources},
        "rates": {"near": round(near_sources / max(n_base, 1), 6),
                  "exact": round(exact_sources / max(n_base, 1), 6),
                  "copies_per_near_source": round(
                      (len(pairs) - by_kind.get("exact", 0)) / max(near_sources, 1), 4)},
        "text_bytes": {"total": c.total(), **{k: c.text_bytes.get(k, 0) for k in ("base", *KINDS)}},
        "jsonl_bytes": sum(f["jsonl_bytes"] for f in files),
        "bytes": sum(f["bytes"] for f in files),
        "sources_exhausted": c.exhausted, "topup_rounds": c.topup_rounds,
        "by_source": {name: {"docs": st.docs, "bytes": st.bytes, "seen": st.seen,
                             "exact_dup": st.exact_dup, "too_small": st.too_small,
                             "too_large": st.too_large}
                      for name, st in c.stream.stats.items()},
        "jaccard": _jaccard_summary(pairs, threshold),
        "files": files,
        "truth": {"name": truth.name, "pairs": len(pairs),
                  "pairs_ge_threshold": sum(p.jaccard >= threshold for p in pairs),
                  **_size_and_sha256(truth)},
    }


def build(plan: Plan, out: Path = DEFAULT_OUT, groups: list[Group] | None = None,
          force: bool = False) -> tuple[dict, bool]:
    """Build (or reuse) the corpus in `out`; returns (manifest, reused)."""
    out.mkdir(parents=True, exist_ok=True)
    if not force and (manifest := reusable(out, plan)) is not None:
        return manifest, True
    _clean(out)
    groups = resolve_groups(plan.sources, groups)
    cfg = DedupConfig()
    spec = ShingleSpec(cfg.shingle, cfg.ngram)
    t0 = time.perf_counter()
    spool = Spool(out / ".spool.jsonl")
    scorer = PairScorer(spec)
    c = collect(plan, groups, spool, scorer)
    scorer.flush()
    spool.f.close()
    t_scan = time.perf_counter() - t0
    files, names, file_of_line = write_parts(plan, spool, out)
    spool.path.unlink()
    truth = out / f"truth.{plan.fmt}"
    write_truth(truth, plan.fmt, c.pairs, names, file_of_line)
    manifest = _manifest(plan, c, spec, cfg.threshold, files, truth)
    t_read = sum(v.seconds for v in c.stream.stats.values())
    seconds = {"scan_plant_score": round(t_scan, 2), "read_extract_dedup": round(t_read, 2),
               "plant_score_spool": round(t_scan - t_read, 2),
               "write_hash": round(time.perf_counter() - t0 - t_scan, 2),
               "total": round(time.perf_counter() - t0, 2),
               "by_source_read": {k: round(v.seconds, 2) for k, v in c.stream.stats.items()}}
    (out / "timing.json").write_text(json.dumps(seconds, indent=2) + "\n")
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")  # written last
    return manifest, False

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    d = Plan()
    ap.add_argument("--size-gb", type=float, default=d.size_gb, help="text to reach (1 GB = 1e9 bytes)")
    ap.add_argument("--seed", type=int, default=d.seed)
    ap.add_argument("--files", type=int, default=d.files, help="number of output JSONL files")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--format", dest="fmt", choices=["jsonl", "jsonl.gz"], default=d.fmt)
    ap.add_argument("--near-rate", type=float, default=d.near_rate,
                    help="fraction of base documents that get near copies")
    ap.add_argument("--max-copies", type=int, default=d.max_copies, help="near copies per chosen doc: 1..N")
    ap.add_argument("--exact-rate", type=float, default=d.exact_rate,
                    help="fraction of base documents that get an exact (case/whitespace) copy")
    ap.add_argument("--max-doc-kb", type=float, default=d.max_doc_bytes / 1024)
    ap.add_argument("--sources", help="comma-separated group names (default: all)")
    ap.add_argument("--force", action="store_true", help="rebuild even if a matching corpus exists")
    ap.add_argument("--survey", action="store_true", help="only measure the base text per group")
    ap.add_argument("--stride", type=int, default=10, help="survey 1 in N paths")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("benchmarks.dedup_labelled_set").setLevel(logging.WARNING)
    plan = Plan(size_gb=args.size_gb, seed=args.seed, files=args.files, fmt=args.fmt,
                near_rate=args.near_rate, max_copies=args.max_copies, exact_rate=args.exact_rate,
                max_doc_bytes=int(args.max_doc_kb * 1024),
                sources=tuple(args.sources.split(",")) if args.sources else None)
    if args.survey:
        print(json.dumps(survey(resolve_groups(plan.sources), args.stride, plan.max_doc_bytes),
                         indent=2))
        return 0
    t0 = time.perf_counter()
    manifest, reused = build(plan, args.out, force=args.force)
    docs = manifest["documents"]
    print(f"{'reused' if reused else 'built'} {args.out} in {time.perf_counter() - t0:.1f} s: "
          f"{manifest['text_bytes']['total'] / 1e6:,.1f} MB of text "
          f"({manifest['text_bytes']['base'] / 1e6:,.1f} MB base), {docs['total']:,} documents "
          f"({docs['base']:,} base, {docs['planted']:,} planted), {len(manifest['files'])} files, "
          f"{manifest['bytes'] / 1e6:,.1f} MB on disk")
    print(f"planted by kind: {docs['by_kind']}; rates {manifest['rates']}; "
          f"sources exhausted: {manifest['sources_exhausted']} (top-up rounds {manifest['topup_rounds']})")
    print(f"truth: {manifest['truth']['pairs']:,} pairs, {manifest['truth']['pairs_ge_threshold']:,} "
          f"at J >= {manifest['threshold']}")
    for kind, s in manifest["jaccard"].items():
        print(f"  {kind:12s} {s['pairs']:7,d} pairs  J median {s['median']:.3f}  "
              f"[{s['min']:.3f}, {s['max']:.3f}]  >= t: {s['ge_threshold']:,}")
    for name, s in manifest["by_source"].items():
        print(f"  {name:26s} {s['docs']:7,d} docs {s['bytes'] / 1e6:9.1f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
