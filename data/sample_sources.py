"""The sources of the bundled sample corpus: which package, which files, which domain.

Each extractor takes the unpacked root of its package and yields Doc records in a
deterministic order (sorted paths). Natural duplicates are kept on purpose.
"""

from __future__ import annotations

import gzip
import logging
import subprocess
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sample_extract import (
    group_bible_books,
    html_to_text,
    iter_wiki_pages,
    normalize_whitespace,
    parse_dictd_index,
    split_text,
)

log = logging.getLogger(__name__)

DOMAINS = ("web", "code", "math", "books", "reference")


@dataclass(frozen=True)
class Doc:
    """One JSONL record of the sample corpus."""

    id: str
    text: str
    source: str
    domain: str
    meta: dict[str, str] = field(default_factory=dict)

    def record(self) -> dict[str, object]:
        return {"id": self.id, "text": self.text, "source": self.source,
                "domain": self.domain, "meta": self.meta}


def read_utf8(path: Path) -> str | None:
    """File text (gunzipped if *.gz), or None if it is not strict UTF-8 (binary, Latin-1...)."""
    raw = path.read_bytes()
    if path.suffix == ".gz":
        raw = gzip.decompress(raw)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def walk(root: Path, patterns: tuple[str, ...]) -> list[Path]:
    """Regular files (no symlinks) under root matching any glob pattern, sorted by path."""
    found = {p for pat in patterns for p in root.glob(pat) if p.is_file() and not p.is_symlink()}
    return sorted(found, key=lambda p: p.as_posix())


def file_docs(source: str, domain: str, license_: str, root: Path, patterns: tuple[str, ...],
              to_text=normalize_whitespace, id_root: Path | None = None) -> Iterator[Doc]:
    """One document per matching file (split into parts if large); non-UTF-8 files skipped."""
    skipped = 0
    base = id_root or root
    for path in walk(root, patterns):
        raw = read_utf8(path)
        if raw is None:
            skipped += 1
            continue
        text = to_text(raw)
        if not text.strip():
            continue
        rel = path.relative_to(base).as_posix()
        yield from _parts(source, domain, license_, rel, text)
    if skipped:
        log.info("%s: skipped %d non-UTF-8 files", source, skipped)


def _parts(source: str, domain: str, license_: str, rel: str, text: str) -> Iterator[Doc]:
    parts = split_text(text)
    for i, part in enumerate(parts):
        doc_id = f"{source}/{rel}" + (f"#part{i}" if len(parts) > 1 else "")
        yield Doc(doc_id, part, source, domain, {"path": rel, "license": license_})


# --- web: documentation pages -------------------------------------------------------------

PY_DOC_SRC = "usr/share/doc/python3.11/html/_sources"
PY_DOC_DIRS = ("tutorial", "howto", "reference", "faq", "using", "extending", "c-api",
               "installing", "distributing")
LINUX_DOC = "usr/share/doc/linux-doc-6.1"
LINUX_HTML_DIRS = ("process", "RCU", "locking", "core-api")
LINUX_RST_DIRS = ("process", "RCU", "locking")  # shipped twice: rst.gz and html/_sources
JDK_API = "usr/share/doc/openjdk-17-jre-headless/api"
JDK_MODULES = ("java.sql", "java.logging")


def python_doc(root: Path) -> Iterator[Doc]:
    pats = ("*.rst.txt",) + tuple(f"{d}/**/*.rst.txt" for d in PY_DOC_DIRS)
    yield from file_docs("python3.11-doc", "web", "PSF-2.0", root / PY_DOC_SRC, pats,
                         id_root=root)


def linux_doc(root: Path) -> Iterator[Doc]:
    html_src = root / LINUX_DOC / "html/_sources"
    yield from file_docs("linux-doc-6.1", "web", "GPL-2.0", html_src,
                         tuple(f"{d}/**/*.rst.txt" for d in LINUX_HTML_DIRS), id_root=root)
    yield from file_docs("linux-doc-6.1", "web", "GPL-2.0", root / LINUX_DOC / "Documentation",
                         tuple(f"{d}/**/*.rst.gz" for d in LINUX_RST_DIRS), id_root=root)


def openjdk_doc(root: Path) -> Iterator[Doc]:
    yield from file_docs("openjdk-17-doc", "web", "GPL-2.0 WITH Classpath-exception-2.0",
                         root / JDK_API, tuple(f"{m}/**/*.html" for m in JDK_MODULES),
                         to_text=html_to_text, id_root=root)


def debian_handbook(root: Path) -> Iterator[Doc]:
    yield from file_docs("debian-handbook", "web", "GPL-2.0+ OR CC-BY-SA-3.0",
                         root / "usr/share/doc/debian-handbook/html/en-US", ("*.html",),
                         to_text=html_to_text, id_root=root)


# --- code -----------------------------------------------------------------------------------

STDLIB_PACKAGES = ("asyncio", "collections", "concurrent", "email", "html", "http", "importlib",
                   "json", "logging", "re", "urllib", "xml")


def _stdlib_patterns() -> tuple[str, ...]:
    return tuple(f"{p}/**/*.py" for p in STDLIB_PACKAGES)


def stdlib_files(source: str, lib_dir: Path, id_root: Path) -> Iterator[Doc]:
    """The same stdlib packages from two CPython builds give natural exact/near duplicates."""
    yield from file_docs(source, "code", "PSF-2.0", lib_dir, _stdlib_patterns(), id_root=id_root)


def maxima_share(root: Path) -> Iterator[Doc]:
    """Maxima CAS packages (*.mac), without the large user-contributed share/contrib tree."""
    shares = sorted((root / "usr/share/maxima").glob("*/share"))
    if len(shares) != 1:
        raise FileNotFoundError(f"expected one usr/share/maxima/<version>/share in {root}")
    dirs = sorted(d.name for d in shares[0].iterdir() if d.is_dir() and d.name != "contrib")
    yield from file_docs("maxima-share", "code", "GPL-2.0", shares[0],
                         tuple(f"{d}/**/*.mac" for d in dirs), id_root=root)


# --- math -----------------------------------------------------------------------------------

def texlive_science(root: Path) -> Iterator[Doc]:
    yield from file_docs("texlive-science-doc", "math", "LPPL-1.3c and others (per package)",
                         root / "usr/share/doc/texlive-doc", ("**/*.tex", "**/*.tex.gz"),
                         id_root=root)


# --- books ----------------------------------------------------------------------------------

BIBLE_BOOKS = (
    "Genesis Exodus Leviticus Numbers Deuteronomy Joshua Judges Ruth 1_Samuel 2_Samuel "
    "1_Kings 2_Kings 1_Chronicles 2_Chronicles Ezra Nehemiah Esther Job Psalms Proverbs "
    "Ecclesiastes Song_of_Solomon Isaiah Jeremiah Lamentations Ezekiel Daniel Hosea Joel Amos "
    "Obadiah Jonah Micah Nahum Habakkuk Zephaniah Haggai Zechariah Malachi Matthew Mark Luke "
    "John Acts Romans 1_Corinthians 2_Corinthians Galatians Ephesians Philippians Colossians "
    "1_Thessalonians 2_Thessalonians 1_Timothy 2_Timothy Titus Philemon Hebrews James 1_Peter "
    "2_Peter 1_John 2_John 3_John Jude Revelation"
).split()


def bible_kjv(program_root: Path, text_root: Path) -> Iterator[Doc]:
    """Decompress the KJV with the package's own `bible` program, one document per book."""
    program = program_root / "usr/bin/bible"
    proc = subprocess.run(
        [str(program), "-f", "-p", str(text_root / "usr/lib"), "gen1:1-rev22:21"],
        stdin=subprocess.DEVNULL, capture_output=True, check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{program} failed ({proc.returncode}): {proc.stderr[:300]!r}")
    books = group_bible_books(proc.stdout.decode("utf-8"))
    if len(books) != len(BIBLE_BOOKS):
        raise ValueError(f"bible output has {len(books)} books, expected {len(BIBLE_BOOKS)}")
    for i, ((_abbr, text), name) in enumerate(zip(books, BIBLE_BOOKS, strict=True), 1):
        title = name.replace("_", " ")
        yield from _parts("bible-kjv-text", "books", "public-domain",
                          f"kjv/{i:02d}_{name}", f"The Book of {title}\n\n{text}")


def cfi_en(root: Path) -> Iterator[Doc]:
    yield from file_docs("cfi-en", "books", "public-domain", root / "usr/share/doc/cfi-en/html",
                         ("*.htm", "*.html"), to_text=html_to_text, id_root=root)


# --- reference ------------------------------------------------------------------------------

GCIDE_LETTERS = "JKNQUXYZ"


def dict_gcide(root: Path) -> Iterator[Doc]:
    """Webster 1913 entries, one document per two-letter headword prefix ('Ja', 'Je', ...)."""
    dictd = root / "usr/share/dictd"
    data = gzip.decompress((dictd / "gcide.dict.dz").read_bytes())
    rows = parse_dictd_index((dictd / "gcide.index").read_text(encoding="utf-8"))
    groups: dict[str, list[str]] = {}
    bad = 0
    for head, off, length in rows:
        if head[:1].upper() not in GCIDE_LETTERS or not head[:1].isalpha():
            continue
        try:
            entry = data[off:off + length].decode("utf-8")
        except UnicodeDecodeError:
            bad += 1
            continue
        prefix = head[:2].capitalize() if len(head) > 1 and head[1].isalpha() else head[:1].upper()
        groups.setdefault(prefix, []).append(entry.strip("\n") + "\n")
    if bad:
        log.info("dict-gcide: skipped %d non-UTF-8 entries", bad)
    for prefix in sorted(groups):
        text = "\n".join(groups[prefix])
        yield from _parts("dict-gcide", "reference", "GPL-2.0+", f"gcide/{prefix}", text)


GENSIM_WIKI_DUMPS = {  # short name -> member of the wheel
    "enwiki-articles1": "gensim/test/test_data/"
    "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2",
    "enwiki-table-markup": "gensim/test/test_data/enwiki-table-markup.xml.bz2",
    "bgwiki": "gensim/test/test_data/bgwiki-latest-pages-articles-shortened.xml.bz2",
}


def gensim_wikipedia(wheel: Path) -> Iterator[Doc]:
    """Wikipedia pages shipped as gensim test data, plain-texted; one document per page."""
    import bz2

    with zipfile.ZipFile(wheel) as zf:
        for dump, member in GENSIM_WIKI_DUMPS.items():
            raw = bz2.decompress(zf.read(member))
            # the Bulgarian dump is stored as UTF-16 with a byte-order mark
            xml = raw.decode("utf-16" if raw[:2] in (b"\xff\xfe", b"\xfe\xff") else "utf-8")
            for title, text in iter_wiki_pages(xml):
                rel = f"{member}#{title}"
                for i, part in enumerate(parts := split_text(text)):
                    doc_id = f"gensim/{dump}/{title}" + (f"#part{i}" if len(parts) > 1 else "")
                    yield Doc(doc_id, part, "gensim", "reference",
                              {"path": rel, "license": "CC-BY-SA-3.0 (Wikipedia text)"})


def copyright_files(roots: dict[str, Path]) -> Iterator[Doc]:
    """Debian copyright files of every package used: licence texts, full of near-duplicates."""
    for pkg in sorted(roots):
        for path in walk(roots[pkg], ("usr/share/doc/*/copyright",)):
            text = read_utf8(path)
            if text is None or not text.strip():
                continue
            rel = path.relative_to(roots[pkg]).as_posix()
            yield from _parts(pkg, "reference", "see text", rel, normalize_whitespace(text))
