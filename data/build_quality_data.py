"""Build the real-text data of the learned quality signals (data/quality/).

    .venv/bin/python data/build_quality_data.py [--workdir data/build/quality] [--out data/quality]

Like build_sample.py: `apt-get download` and `pip download --no-deps` into the git-ignored
workdir, `dpkg -x`, extract real text, write gzipped JSONL (gzip mtime 0, sorted walks,
string-seeded RNGs), so the same package versions give byte-identical files.

Outputs (record format and rules in data/README.md, sources in data/SOURCES.md):

* reference/positive/<source>.jsonl.gz  good text a model should learn from;
* reference/negative/<kind>.jsonl.gz    real crawl-like junk (quality_negatives.py);
* eval/labelled.jsonl.gz                good and bad documents, `label` good/bad;
* langid/<lang>.jsonl.gz                translated documentation, `label` = ISO 639-1;
* domains/<domain>.jsonl.gz             `label` = domain.

Source rules: no package of the bundled sample (SAMPLE_SOURCES) is used anywhere, and the
reference sets and the evaluation set use disjoint packages (checked here and in
tests/data/test_quality_data.py).
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import subprocess
import sys
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import quality_negatives as neg  # noqa: E402
from quality_negatives import NEGATIVE_KINDS, rng_for  # noqa: E402
from quality_sources import (  # noqa: E402
    QDoc,
    chunks,
    dictd_docs,
    file_docs,
    html_content_text,
    license_of,
    pod_to_text,
    read_utf8,
    roff_to_text,
    walk,
    wheel_py_docs,
)

log = logging.getLogger("build_quality_data")
REPO_ROOT = Path(__file__).resolve().parent.parent

# Packages of the bundled sample corpus (data/SOURCES.md): never used here.
SAMPLE_SOURCES = frozenset({
    "python3.11-doc", "linux-doc-6.1", "openjdk-17-doc", "debian-handbook",
    "libpython3.11-stdlib", "libpython3.11-minimal", "maxima-share", "texlive-science-doc",
    "bible-kjv", "bible-kjv-text", "cfi-en", "dict-gcide", "gensim",
})

LANGS = ("en", "de", "fr", "es", "it", "pt", "nl", "pl", "ru", "uk", "cs", "fi", "sv", "tr",
         "ja", "zh")
# language -> translated documentation packages (held-out splits are by package)
LANGID_PACKAGES = {
    "en": ("debian-reference-en", "developers-reference", "debian-faq", "manpages",
           "maint-guide-en"),
    "de": ("debian-reference-de", "maint-guide-de", "developers-reference-de",
           "debian-faq-de", "manpages-de"),
    "fr": ("debian-reference-fr", "maint-guide-fr", "developers-reference-fr",
           "debian-faq-fr", "manpages-fr"),
    "es": ("debian-reference-es", "maint-guide-es", "manpages-es"),
    "it": ("debian-reference-it", "maint-guide-it", "developers-reference-it",
           "debian-faq-it", "manpages-it"),
    "pt": ("debian-reference-pt", "manpages-pt-br"),
    "nl": ("manpages-nl",), "pl": ("manpages-pl",),
    "ru": ("maint-guide-ru", "developers-reference-ru", "manpages-ru"),
    "uk": ("manpages-uk",), "cs": ("manpages-cs",), "fi": ("manpages-fi",),
    "sv": ("manpages-sv",), "tr": ("manpages-tr",),
    "ja": ("debian-reference-ja", "maint-guide-ja", "developers-reference-ja", "manpages-ja"),
    "zh": ("debian-reference-zh-cn", "maint-guide-zh-cn", "debian-faq-zh-cn", "manpages-zh"),
}
LANGID_PACKAGES["en"] = LANGID_PACKAGES["en"][:4]  # there is no maint-guide-en in bookworm

WHEELS = {  # PyPI source -> pinned version
    "requests": "2.32.3", "rich": "13.9.4", "attrs": "24.2.0", "sympy": "1.13.3",
    "click": "8.1.7", "jinja2": "3.1.4", "more-itertools": "10.5.0",
}
WHEEL_LICENSES = {"requests": "Apache-2.0", "rich": "MIT", "attrs": "MIT", "sympy": "BSD-3-Clause",
                  "click": "BSD-3-Clause", "jinja2": "BSD-3-Clause", "more-itertools": "MIT"}
# Short licence names where the copyright file is not machine-readable (DEP-5) or its
# `Files: *` licence is a long name; read by hand from usr/share/doc/<pkg>/copyright.
LICENSE_OVERRIDES = {
    "perl-doc": "GPL-1.0+ OR Artistic-1.0",
    "git-doc": "GPL-2.0",
    "gnu-standards": "GFDL-1.3+ (no invariant sections)",
    "bash-doc": "GPL-3.0+",
    "debian-history": "GPL-2.0+",
    "dict-foldoc": "GFDL-1.1+",
    "dict-jargon": "public-domain",
    "dict-devil": "public-domain",
    "dict-wn": "WordNet (BSD-like)",
    "dict-vera": "GFDL-1.1+",
    "abs-guide": "public-domain",
    "tzdata": "public-domain",
    "pci.ids": "GPL-2.0+ OR BSD-3-Clause",
    "usb.ids": "GPL-2.0+ OR BSD-3-Clause",
    "publicsuffix": "MPL-2.0",
    "media-types": "public-domain",
    "unicode-data": "Unicode-DFS-2016",
    "iso-codes": "LGPL-2.1+",
    "gcc-12-test-results": "GPL-3.0+",
    "sqlite3-doc": "public-domain",
    "postgresql-doc-15": "PostgreSQL",
    "zsh-doc": "MIT-like (zsh)",
    "pari-doc": "GPL-2.0+",
    "apache2-doc": "Apache-2.0",
    "manpages": "various free (per page, see copyright file)",
    "manpages-ja": "various free (per page, see copyright file)",
    "manpages-tr": "various free (per page, see copyright file)",
    "debian-faq": "SPI permissive (verbatim and modified copies)",
    "cmake-doc": "BSD-3-Clause",
    "python-jinja2-doc": "BSD-3-Clause",
    "rust-doc": "MIT OR Apache-2.0",
}
for _lang in ("de", "fr", "it", "zh-cn"):
    LICENSE_OVERRIDES[f"debian-faq-{_lang}"] = LICENSE_OVERRIDES["debian-faq"]

TEXLIVE_LICENSE = "LPPL-1.3c and others (per package)"

# --- which package feeds which output --------------------------------------------------------

TEX = ("**/*.tex", "**/*.tex.gz")


def _html(root: Path, base: str, pats: Iterable[str]) -> tuple[Path, Path, tuple[str, ...]]:
    return root, root / base, tuple(pats)


def good_reference(r: dict[str, Path], w: dict[str, Path], lic: Callable[[str], str]
                   ) -> dict[str, list[QDoc]]:
    """Source -> candidate good documents for data/quality/reference/positive/."""
    pods = ("perlfaq*.pod", "perl*tut.pod", "perlintro.pod", "perlsyn.pod", "perldata.pod",
            "perlop.pod", "perlsub.pod", "perlre.pod", "perlref.pod", "perlobj.pod",
            "perlstyle.pod", "perlpod.pod", "perltrap.pod", "perlsec.pod", "perlipc.pod",
            "perlport.pod", "perldsc.pod", "perllol.pod", "perlvar.pod", "perlmod.pod",
            "perlunicode.pod", "perlunifaq.pod", "perlhacktips.pod", "perlfunc.pod")
    perl_pod = next((r["perl-doc"] / "usr/share/perl").glob("*/pod"))
    out = {
        "perl-doc": file_docs("perl-doc", "web", "docs", lic("perl-doc"), r["perl-doc"],
                              perl_pod, pods, to_text=pod_to_text),
        "git-doc": file_docs("git-doc", "web", "docs", lic("git-doc"), r["git-doc"],
                             r["git-doc"] / "usr/share/doc/git-doc",
                             ("*.txt", "howto/*.txt", "technical/*.txt")),
        "developers-reference": file_docs(
            "developers-reference", "web", "docs", lic("developers-reference"),
            r["developers-reference"],
            r["developers-reference"] / "usr/share/developers-reference/_sources", ("*.rst.txt",)),
        "debian-reference-en": file_docs(
            "debian-reference-en", "web", "docs", lic("debian-reference-en"),
            r["debian-reference-en"], r["debian-reference-en"] / "usr/share/debian-reference",
            ("*.en.html",), to_text=html_content_text),
        "gnu-standards": file_docs("gnu-standards", "web", "docs", lic("gnu-standards"),
                                   r["gnu-standards"], r["gnu-standards"] / "usr/share/doc",
                                   ("gnu-standards/*.text.gz",)),
        "bash-doc": file_docs("bash-doc", "web", "docs", lic("bash-doc"), r["bash-doc"],
                              r["bash-doc"] / "usr/share/doc/bash", ("bash.html",),
                              to_text=html_content_text),
        "texlive-latex-recommended-doc": file_docs(
            "texlive-latex-recommended-doc", "math", "latex", "LPPL-1.3c and others (per package)",
            r["texlive-latex-recommended-doc"],
            r["texlive-latex-recommended-doc"] / "usr/share/doc/texlive-doc", TEX),
        "texlive-latex-base-doc": file_docs(
            "texlive-latex-base-doc", "math", "latex", "LPPL-1.3c",
            r["texlive-latex-base-doc"], r["texlive-latex-base-doc"] / "usr/share/doc/texlive-doc",
            TEX),
        "texlive-fonts-recommended-doc": file_docs(
            "texlive-fonts-recommended-doc", "math", "latex", "LPPL-1.3c and others (per package)",
            r["texlive-fonts-recommended-doc"],
            r["texlive-fonts-recommended-doc"] / "usr/share/doc/texlive-doc", TEX),
        "rust-doc": file_docs("rust-doc", "books", "book", lic("rust-doc"), r["rust-doc"],
                              r["rust-doc"] / "usr/share/doc/rust-doc/html",
                              ("book/ch*.html", "book/appendix-*.html", "nomicon/*.html"),
                              to_text=html_content_text),
        "debian-history": file_docs("debian-history", "books", "book", lic("debian-history"),
                                    r["debian-history"],
                                    r["debian-history"] / "usr/share/doc/debian-history/docs",
                                    ("project-history.en.txt.gz",)),
        "dict-foldoc": dictd_docs("dict-foldoc", lic("dict-foldoc"), r["dict-foldoc"], "foldoc"),
        "dict-jargon": dictd_docs("dict-jargon", lic("dict-jargon"), r["dict-jargon"], "jargon"),
    }
    for name in ("requests", "rich", "attrs", "sympy"):
        out[name] = wheel_py_docs(name, WHEEL_LICENSES[name], w[name], exclude=("/tests/",))
    return {k: list(v) for k, v in out.items()}


def good_eval(r: dict[str, Path], w: dict[str, Path], lic: Callable[[str], str]
              ) -> dict[str, list[QDoc]]:
    """Source -> candidate good documents of the evaluation set (disjoint packages)."""
    out = {
        "postgresql-doc-15": file_docs(
            "postgresql-doc-15", "web", "docs", lic("postgresql-doc-15"), r["postgresql-doc-15"],
            r["postgresql-doc-15"] / "usr/share/doc/postgresql-doc-15/html",
            ("tutorial*.html", "sql-*.html", "ddl*.html", "queries*.html", "mvcc*.html",
             "indexes*.html", "performance-tips.html", "runtime-config*.html"),
            to_text=html_content_text),
        "sqlite3-doc": file_docs("sqlite3-doc", "web", "docs", lic("sqlite3-doc"),
                                 r["sqlite3-doc"], r["sqlite3-doc"] / "usr/share/doc/sqlite3",
                                 ("*.html",), to_text=html_content_text),
        "zsh-doc": file_docs("zsh-doc", "web", "docs", lic("zsh-doc"), r["zsh-doc"],
                             r["zsh-doc"] / "usr/share/doc/zsh-common/html", ("*.html",),
                             to_text=html_content_text),
        "debian-faq": file_docs("debian-faq", "web", "docs", lic("debian-faq"), r["debian-faq"],
                                r["debian-faq"] / "usr/share/doc/debian/FAQ", ("*.html",),
                                to_text=html_content_text),
        "pari-doc": file_docs("pari-doc", "math", "latex", lic("pari-doc"), r["pari-doc"],
                              r["pari-doc"] / "usr/share/pari/doc", ("*.tex",)),
        "texlive-metapost-doc": file_docs(
            "texlive-metapost-doc", "math", "latex", "LPPL-1.3c and others (per package)",
            r["texlive-metapost-doc"], r["texlive-metapost-doc"] / "usr/share/doc/texlive-doc",
            TEX),
        "texlive-humanities-doc": file_docs(
            "texlive-humanities-doc", "math", "latex", "LPPL-1.3c and others (per package)",
            r["texlive-humanities-doc"], r["texlive-humanities-doc"] / "usr/share/doc/texlive-doc",
            TEX),
        "abs-guide": file_docs("abs-guide", "books", "book", lic("abs-guide"), r["abs-guide"],
                               r["abs-guide"] / "usr/share/doc/abs-guide/html", ("*.html",),
                               to_text=html_content_text),
        "dict-devil": dictd_docs("dict-devil", lic("dict-devil"), r["dict-devil"], "devil"),
    }
    for name in ("click", "jinja2", "more-itertools"):
        out[name] = wheel_py_docs(name, WHEEL_LICENSES[name], w[name], exclude=("/tests/",))
    return {k: list(v) for k, v in out.items()}


REF_NAV = {
    "libcommons-lang3-java-doc": ("usr/share/doc/libcommons-lang3-java/api/index-all.html",
                                  "usr/share/doc/libcommons-lang3-java/api/allclasses*.html",
                                  "usr/share/doc/libcommons-lang3-java/api/overview-*.html",
                                  "usr/share/doc/libcommons-lang3-java/api/**/package-*.html"),
    "python-requests-doc": ("usr/share/doc/python-requests-doc/html/genindex.html",
                            "usr/share/doc/python-requests-doc/html/py-modindex.html",
                            "usr/share/doc/python-requests-doc/html/_modules/**/*.html",
                            "usr/share/doc/python-requests-doc/html/index.html"),
    "python-attr-doc": ("usr/share/doc/python-attr-doc/html/genindex.html",
                        "usr/share/doc/python-attr-doc/html/py-modindex.html",
                        "usr/share/doc/python-attr-doc/html/index.html"),
    "apache2-doc": ("usr/share/doc/apache2-doc/manual/en/**/index.html",
                    "usr/share/doc/apache2-doc/manual/en/mod/directives.html",
                    "usr/share/doc/apache2-doc/manual/en/mod/quickreference.html",
                    "usr/share/doc/apache2-doc/manual/en/sitemap.html"),
    "rust-doc": ("usr/share/doc/rust-doc/html/std/all.html",
                 "usr/share/doc/rust-doc/html/std/*/index.html",
                 "usr/share/doc/rust-doc/html/book/index.html"),
}
EVAL_NAV = {
    "libjsoup-java-doc": ("usr/share/doc/libjsoup-java/api/index-all.html",
                          "usr/share/doc/libjsoup-java/api/allclasses*.html",
                          "usr/share/doc/libjsoup-java/api/overview-*.html",
                          "usr/share/doc/libjsoup-java/api/**/package-*.html"),
    "python-django-doc": ("usr/share/doc/python-django-doc/html/genindex.html",
                          "usr/share/doc/python-django-doc/html/contents.html",
                          "usr/share/doc/python-django-doc/html/py-modindex.html",
                          "usr/share/doc/python-django-doc/html/*/index.html"),
    "sphinx-doc": ("usr/share/doc/sphinx-doc/html/genindex.html",
                   "usr/share/doc/sphinx-doc/html/contents.html",
                   "usr/share/doc/sphinx-doc/html/py-modindex.html"),
    "libglib2.0-doc": ("usr/share/gtk-doc/html/*/api-index-*.html",
                       "usr/share/gtk-doc/html/*/index.html",
                       "usr/share/gtk-doc/html/*/annotation-glossary.html"),
    "cmake-doc": ("usr/share/doc/cmake-data/html/genindex.html",
                  "usr/share/doc/cmake-data/html/index.html",
                  "usr/share/doc/cmake-data/html/manual/cmake.1.html"),
    "python-jinja2-doc": ("usr/share/doc/python-jinja2-doc/html/genindex.html",
                          "usr/share/doc/python-jinja2-doc/html/index.html"),
    "python-click-doc": ("usr/share/doc/python-click-doc/html/genindex.html",
                         "usr/share/doc/python-click-doc/html/py-modindex.html",
                         "usr/share/doc/python-click-doc/html/index.html"),
}
REF_DUMPS = {
    "iso-codes": ("usr/share/iso-codes/json/iso_*.json",),
    "pci.ids": ("usr/share/misc/pci.ids",),
    "tzdata": ("usr/share/zoneinfo/*.tab", "usr/share/zoneinfo/tzdata.zi"),
    "gnuplot-doc": ("usr/share/doc/gnuplot-doc/examples/*.dat",),
}
EVAL_DUMPS = {
    "unicode-data": ("usr/share/unicode/*.txt", "usr/share/unicode/auxiliary/*.txt",
                     "usr/share/unicode/extracted/*.txt"),
    "usb.ids": ("usr/share/misc/usb.ids", "var/lib/usbutils/usb.ids"),
    "publicsuffix": ("usr/share/publicsuffix/public_suffix_list.dat",),
    "media-types": ("etc/mime.types",),
}
REF_LOGS = ("gcc-12-test-results",)
EVAL_LOGS: tuple[str, ...] = ()  # gcc-11-test-results ships no logs (test run disabled)
REF_MOJIBAKE = ("debian-reference-de", "debian-reference-fr", "debian-reference-ja",
                "debian-reference-zh-cn", "developers-reference-ru", "debian-reference-es")
EVAL_MOJIBAKE = ("maint-guide-de", "maint-guide-fr", "maint-guide-ja", "maint-guide-ru",
                 "maint-guide-zh-cn", "debian-faq-it")
DOMAIN_EXTRA = ("dict-wn", "dict-vera")

REF_EXTRA = tuple(REF_NAV) + tuple(REF_DUMPS) + REF_LOGS + REF_MOJIBAKE + ("tcl8.6-doc",)
EVAL_EXTRA = tuple(EVAL_NAV) + tuple(EVAL_DUMPS) + EVAL_LOGS + EVAL_MOJIBAKE
REF_GOOD_DEBS = ("perl-doc", "git-doc", "developers-reference", "debian-reference-en",
                 "gnu-standards", "bash-doc", "texlive-latex-recommended-doc",
                 "texlive-latex-base-doc", "texlive-fonts-recommended-doc", "rust-doc",
                 "debian-history", "dict-foldoc", "dict-jargon")
EVAL_GOOD_DEBS = ("postgresql-doc-15", "sqlite3-doc", "zsh-doc", "debian-faq", "pari-doc",
                  "texlive-metapost-doc", "texlive-humanities-doc", "abs-guide", "dict-devil")
LANGID_DEBS = tuple(sorted({p for ps in LANGID_PACKAGES.values() for p in ps}))
DEBIAN_PACKAGES = tuple(sorted(set(REF_GOOD_DEBS + REF_EXTRA + EVAL_GOOD_DEBS + EVAL_EXTRA
                                   + LANGID_DEBS + DOMAIN_EXTRA)))

# Caps: no source dominates; sizes keep data/quality/ near 10 MB gzipped.
POS_DOCS, POS_BYTES = 160, 360_000
EVAL_GOOD_DOCS, EVAL_GOOD_BYTES = 40, 100_000
REF_PER_KIND, EVAL_PER_KIND = 290, 60
LANGID_MAX_CHARS = 2000
DOMAIN_MAX_CHARS = 3000
LANGID_DOCS = 300
DOMAIN_DOCS = 400


# --- downloading ------------------------------------------------------------------------------

def run(cmd: list[str], cwd: Path) -> None:
    log.info("$ %s", " ".join(cmd[:6]) + (" ..." if len(cmd) > 6 else ""))
    subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL)


def fetch_debs(debdir: Path, packages: Iterable[str]) -> dict[str, Path]:
    debdir.mkdir(parents=True, exist_ok=True)
    packages = tuple(packages)
    missing = [p for p in packages if not list(debdir.glob(f"{p}_*.deb"))]
    if missing:
        try:
            run(["apt-get", "download", *missing], debdir)
        except subprocess.CalledProcessError:
            run(["apt-get", "update"], debdir)
            run(["apt-get", "download", *missing], debdir)
    debs = {}
    for pkg in packages:
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


def fetch_wheels(wheeldir: Path) -> dict[str, Path]:
    wheeldir.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, version in WHEELS.items():
        pattern = f"{name.replace('-', '_')}-{version}-*.whl"
        if not list(wheeldir.glob(pattern)):
            run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                 "--only-binary=:all:", "-d", str(wheeldir), f"{name}=={version}"], REPO_ROOT)
        found = sorted(wheeldir.glob(pattern))
        if not found:
            raise FileNotFoundError(f"pip download produced no {pattern} in {wheeldir}")
        out[name] = found[0]
    return out


def deb_version(deb: Path) -> str:
    return deb.stem.split("_")[1].replace("%3a", ":")


# --- selection --------------------------------------------------------------------------------

def pick(docs: list[QDoc], n: int, max_bytes: int | None, seed: str) -> list[QDoc]:
    """A seeded sample of at most n documents and max_bytes of text, in id order."""
    pool = sorted(docs, key=lambda d: d.id)
    rng_for("pick", seed).shuffle(pool)
    out: list[QDoc] = []
    size = 0
    for doc in pool:
        b = len(doc.text.encode("utf-8"))
        if len(out) >= n:
            break
        if max_bytes is not None and size + b > max_bytes:
            continue
        out.append(doc)
        size += b
    return sorted(out, key=lambda d: d.id)


def round_robin(per_source: dict[str, list[QDoc]], n: int, seed: str) -> list[QDoc]:
    """Up to n documents taken in turn from each source's seeded shuffle."""
    pools = {}
    for src in sorted(per_source):
        pool = sorted(per_source[src], key=lambda d: d.id)
        rng_for("rr", seed, src).shuffle(pool)
        pools[src] = pool
    out: list[QDoc] = []
    i = 0
    while len(out) < n and any(i < len(p) for p in pools.values()):
        for src in sorted(pools):
            if i < len(pools[src]) and len(out) < n:
                out.append(pools[src][i])
        i += 1
    return sorted(out, key=lambda d: d.id)


def relabel(doc: QDoc, label: str) -> QDoc:
    return QDoc(doc.id, doc.text, doc.source, doc.domain, doc.kind, doc.license, label)


def negatives(r: dict[str, Path], debs: dict[str, Path], lic: Callable[[str], str],
              good: dict[str, list[QDoc]], nav: dict[str, tuple[str, ...]],
              dumps: dict[str, tuple[str, ...]], logs: tuple[str, ...],
              moji: tuple[str, ...], changelog_pkgs: Iterable[str], per_kind: int,
              set_name: str) -> dict[str, list[QDoc]]:
    """kind -> bad documents of one set (reference or eval), from that set's packages."""
    out: dict[str, list[QDoc]] = {}
    by_src: dict[str, list[QDoc]] = {p: list(neg.nav_pages(p, lic(p), r[p], pats))
                                     for p, pats in nav.items()}
    out["nav"] = round_robin(by_src, per_kind, f"{set_name}:nav")
    by_src = {p: list(neg.changelogs(p, lic(p), r[p])) for p in sorted(changelog_pkgs)}
    out["changelog"] = round_robin(by_src, per_kind, f"{set_name}:changelog")
    by_src = {p: list(neg.file_windows(p, "log", lic(p), r[p],
                                       ("usr/share/doc/*/test/*.xz", "usr/share/doc/*/test*.gz"),
                                       per_file=4, max_file_bytes=700_000)) for p in logs}
    # logs printed by a real program (dpkg-deb's verbose tar listing) of this set's packages
    for p in sorted(set(changelog_pkgs)):
        by_src.setdefault(p, []).extend(neg.dpkg_listing_log(p, lic(p), debs[p]))
    out["log"] = round_robin(by_src, per_kind, f"{set_name}:log")
    by_src = {p: list(neg.file_windows(p, "dump", lic(p), r[p], pats, per_file=12))
              for p, pats in dumps.items()}
    out["dump"] = round_robin(by_src, per_kind, f"{set_name}:dump")
    for kind in ("stuffing", "salad", "repeated"):
        base = round_robin(good, per_kind, f"{set_name}:{kind}")
        out[kind] = [neg.DAMAGE[kind](d) for d in base]
    # mojibake shows on non-ASCII text: translated docs, plus good docs that have some
    moji_src = {p: list(file_docs(p, "web", "docs", lic(p), r[p], r[p] / "usr/share",
                                  ("**/*.html",), to_text=html_content_text, max_chars=4000))
                for p in moji}
    for src, docs in good.items():
        moji_src[src] = [d for d in docs if sum(ord(c) > 127 for c in d.text) >= 20]
    out["mojibake"] = [neg.mojibake(d) for d in
                       round_robin(moji_src, per_kind, f"{set_name}:mojibake")]
    return out


# --- langid and domains -----------------------------------------------------------------------

def lang_docs(pkg: str, root: Path, label: str, lic: str) -> list[QDoc]:
    """Paragraph chunks (200-5000 chars) of one translated documentation package."""
    if pkg.startswith("manpages"):
        pats: tuple[str, ...] = ("usr/share/man/**/*.gz",)
        to_text = roff_to_text
        if pkg == "manpages":
            pats = tuple(f"usr/share/man/man{i}/*.gz" for i in range(1, 9))
    elif pkg == "developers-reference":
        pats, to_text = ("usr/share/developers-reference/_sources/*.rst.txt",), str
    elif pkg.startswith("developers-reference-"):  # its _sources are the English originals
        pats, to_text = ("usr/share/developers-reference/*/*.html",), html_content_text
    else:
        pats, to_text = ("usr/share/**/*.html",), html_content_text
    docs = []
    for path in walk(root, pats):
        raw = read_utf8(path)
        if raw is None:
            continue
        rel = path.relative_to(root).as_posix()
        for i, part in enumerate(chunks(to_text(raw), min_chars=200, max_chars=LANGID_MAX_CHARS)):
            docs.append(QDoc(f"{pkg}/{rel}#{i}", part, pkg, "web", "docs", lic, label))
    return docs


def domain_sets(ref_good: dict[str, list[QDoc]], extra: dict[str, list[QDoc]]
                ) -> dict[str, list[QDoc]]:
    by_domain: dict[str, dict[str, list[QDoc]]] = defaultdict(dict)
    for src, docs in {**ref_good, **extra}.items():
        for d in docs:
            by_domain[d.domain].setdefault(src, []).append(d)
    return {dom: [_head(relabel(d, dom)) for d in round_robin(srcs, DOMAIN_DOCS, f"domain:{dom}")]
            for dom, srcs in sorted(by_domain.items())}


def _head(doc: QDoc) -> QDoc:
    """The first paragraphs of a document, up to DOMAIN_MAX_CHARS (a classifier needs less)."""
    if len(doc.text) <= DOMAIN_MAX_CHARS:
        return doc
    head = chunks(doc.text, min_chars=0, max_chars=DOMAIN_MAX_CHARS)[0]
    return QDoc(f"{doc.id}#head", head, doc.source, doc.domain, doc.kind, doc.license, doc.label)


# --- writing and reporting --------------------------------------------------------------------

def write_jsonl(path: Path, docs: list[QDoc]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0,
                                                compresslevel=9) as gz:
        for doc in docs:
            gz.write((json.dumps(doc.record(), ensure_ascii=False) + "\n").encode("utf-8"))


def check_sources(ref: Iterable[str], ev: Iterable[str]) -> None:
    ref, ev = set(ref), set(ev)
    if ref & SAMPLE_SOURCES or ev & SAMPLE_SOURCES:
        raise ValueError(f"sample sources used: {sorted((ref | ev) & SAMPLE_SOURCES)}")
    if ref & ev:
        raise ValueError(f"sources in both reference and eval sets: {sorted(ref & ev)}")


def table(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> str:
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---:" if h in ("docs", "text MB") else "---" for h in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def summarize(name: str, docs: list[QDoc], by: Callable[[QDoc], str], versions: dict[str, str],
              licenses: dict[str, str]) -> list[tuple[str, ...]]:
    groups: dict[tuple[str, str], list[QDoc]] = defaultdict(list)
    for d in docs:
        groups[(by(d), d.source)].append(d)
    return [(name, key, src, versions.get(src, ""), licenses.get(src, ""), str(len(g)),
             f"{sum(len(d.text.encode()) for d in g) / 1e6:.2f}")
            for (key, src), g in sorted(groups.items())]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=REPO_ROOT / "data/build/quality",
                        help="download and unpack directory (git-ignored)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "data/quality",
                        help="output directory")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    work = args.workdir.resolve()
    debs = fetch_debs(work / "debs", DEBIAN_PACKAGES)
    r = unpack_debs(debs, work / "unpacked")
    w = fetch_wheels(work / "wheels")
    versions = {p: deb_version(d) for p, d in debs.items()} | dict(WHEELS)
    licenses: dict[str, str] = dict(WHEEL_LICENSES)
    for p in DEBIAN_PACKAGES:
        licenses[p] = (LICENSE_OVERRIDES.get(p) or TEXLIVE_LICENSE * p.startswith("texlive-")
                       or license_of(r[p], p) or "see copyright file")

    def lic(p: str) -> str:
        return licenses[p]

    out = args.out
    # reference positives
    ref_good = good_reference(r, w, lic)
    positives = {src: pick(docs, POS_DOCS, POS_BYTES, f"pos:{src}")
                 for src, docs in ref_good.items()}
    ref_neg = negatives(r, debs, lic, ref_good, REF_NAV, REF_DUMPS, REF_LOGS, REF_MOJIBAKE,
                        REF_GOOD_DEBS + REF_EXTRA, per_kind=REF_PER_KIND, set_name="ref")
    # evaluation set
    ev_good = good_eval(r, w, lic)
    eval_good = [relabel(d, "good") for src, docs in sorted(ev_good.items())
                 for d in pick(docs, EVAL_GOOD_DOCS, EVAL_GOOD_BYTES, f"eval:{src}")]
    ev_neg = negatives(r, debs, lic, ev_good, EVAL_NAV, EVAL_DUMPS, EVAL_LOGS, EVAL_MOJIBAKE,
                       EVAL_GOOD_DEBS + EVAL_EXTRA, per_kind=EVAL_PER_KIND, set_name="eval")
    eval_bad = [relabel(d, "bad") for kind in NEGATIVE_KINDS for d in ev_neg[kind]]
    ref_sources = {d.source for docs in [*positives.values(), *ref_neg.values()] for d in docs}
    eval_sources = {d.source for d in eval_good + eval_bad}
    check_sources(ref_sources, eval_sources)

    for src, docs in positives.items():
        write_jsonl(out / "reference/positive" / f"{src}.jsonl.gz", docs)
    for kind, docs in ref_neg.items():
        write_jsonl(out / "reference/negative" / f"{kind}.jsonl.gz", docs)
    eval_all = sorted(eval_good + eval_bad, key=lambda d: d.id)
    write_jsonl(out / "eval/labelled.jsonl.gz", eval_all)
    # language ID
    langid: dict[str, list[QDoc]] = {}
    for lang in LANGS:
        per_src = {p: lang_docs(p, r[p], lang, lic(p)) for p in LANGID_PACKAGES[lang]}
        langid[lang] = round_robin(per_src, LANGID_DOCS, f"langid:{lang}")
        write_jsonl(out / "langid" / f"{lang}.jsonl.gz", langid[lang])
    # domains
    extra = {"dict-wn": list(dictd_docs("dict-wn", lic("dict-wn"), r["dict-wn"], "wn")),
             "dict-vera": list(dictd_docs("dict-vera", lic("dict-vera"), r["dict-vera"], "vera"))}
    domains = domain_sets(ref_good, extra)
    for dom, docs in domains.items():
        write_jsonl(out / "domains" / f"{dom}.jsonl.gz", docs)

    report(out, positives, ref_neg, eval_all, langid, domains, versions, licenses)
    return 0


def report(out: Path, positives: dict[str, list[QDoc]], ref_neg: dict[str, list[QDoc]],
           eval_all: list[QDoc], langid: dict[str, list[QDoc]], domains: dict[str, list[QDoc]],
           versions: dict[str, str], licenses: dict[str, str]) -> None:
    header = ("output", "group", "source", "version", "licence", "docs", "text MB")
    rows: list[tuple[str, ...]] = []
    for docs in positives.values():
        rows += summarize("reference/positive", docs, lambda d: f"{d.domain}/{d.kind}",
                          versions, licenses)
    rows += summarize("reference/negative", [d for v in ref_neg.values() for d in v],
                      lambda d: d.kind, versions, licenses)
    rows += summarize("eval", eval_all, lambda d: f"{d.label}/{d.domain}/{d.kind}", versions,
                      licenses)
    rows += summarize("langid", [d for v in langid.values() for d in v], lambda d: d.label or "",
                      versions, licenses)
    rows += summarize("domains", [d for v in domains.values() for d in v],
                      lambda d: d.label or "", versions, licenses)
    print(table(rows, header))
    print()
    totals = []
    parts = {"reference/positive": [d for v in positives.values() for d in v],
             "reference/negative": [d for v in ref_neg.values() for d in v],
             "eval (good)": [d for d in eval_all if d.label == "good"],
             "eval (bad)": [d for d in eval_all if d.label == "bad"],
             "langid": [d for v in langid.values() for d in v],
             "domains": [d for v in domains.values() for d in v]}
    for name, docs in parts.items():
        totals.append((name, str(len(docs)), f"{sum(len(d.text.encode()) for d in docs) / 1e6:.2f}",
                       str(len({d.source for d in docs}))))
    gz = sum(p.stat().st_size for p in out.rglob("*.jsonl.gz"))
    print(table(totals, ("output", "docs", "text MB", "sources")))
    print(f"\nTotal on disk: {gz / 1e6:.2f} MB gzipped in {len(list(out.rglob('*.jsonl.gz')))} "
          "files.")
    kinds = Counter(d.kind for d in eval_all if d.label == "bad")
    print("Eval bad kinds: " + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())))


if __name__ == "__main__":
    sys.exit(main())
