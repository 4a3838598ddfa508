"""Base text of the dedup corpus: real documents of this machine, filtered and exact-deduped.

Why a module: which files count as base text, how they become text and which are kept is
one question, apart from planting copies (`near_duplicates`) and writing the corpus
(`dedup_corpus`); `survey` (`--survey`) measures the same stream without building.

Groups, read round-robin (so a small build mixes them all), each in sorted order; a group
whose directory is absent is skipped:
- `sample-*`: the bundled sample (`data/sample/*.jsonl.gz`, ~31 MB);
- `quality-data`: the labelled quality sets (`data/quality/**/*.jsonl.gz`);
- `labelled-*`: the dedup labelled set's sources (`dedup_labelled_set.iter_documents`:
  CPython stdlibs, `/usr/share/doc/*/copyright`, kernel docs if unpacked);
- `pkg-html`, `pkg-man`, `pkg-text`: the packages unpacked for `data/quality`
  (`data/build/quality/unpacked`, git-ignored): HTML pages (tags stripped), man pages
  (roff stripped), plain text, changelogs;
- `usr-share-doc`, `usr-share-man`, `common-licenses`, `perl`, `vim-runtime`: Debian
  package text; `usr-include`: C and C++ headers (Boost, Node, LLVM, libc);
- `jdk-src`: the `.java` files of the JDK's `src.zip`;
- `venv-site-packages`, `python-site-packages`, `debian-dist-packages`: Python, C headers,
  stubs and docs of the installed packages.
A document is kept if it is UTF-8, has >= 200 characters, >= 20 words and <= 256 KB (the
plan's `max_doc_bytes`), and its normalised text was not seen before (so the base set holds
no exact copies). On the project machine the groups hold about 1.2 GB of distinct text
(`--survey` estimates it from 1 in 10 paths).
"""

from __future__ import annotations

import gzip
import hashlib
import html
import json
import os
import re
import sys
import sysconfig
import time
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from benchmarks.dedup_labelled_set import (
    DEBIAN_STDLIB,
    DOC_ROOT,
    KERNEL_DOCS,
    PYENV_STDLIB,
    iter_documents,
)
from curation.dedup.minhash import normalize_for_hashing

REPO = Path(__file__).resolve().parents[1]
MIN_CHARS = 200
MIN_WORDS = 20
MAX_RAW_BYTES = 4 << 20  # files larger than this (before extraction) are not read
PKG_ROOT = REPO / "data/build/quality/unpacked"
NOWHERE = Path("/nonexistent/dedup_corpus")
SKIP_DIRS = frozenset({"__pycache__", ".git", "node_modules"})


@dataclass(frozen=True)
class Group:
    """A stream of (id, text) in a fixed order; `docs(stride)` keeps the items whose key
    hashes to 0 mod stride, so a survey samples the same paths in every group."""

    name: str
    docs: Callable[[int], Iterator[tuple[str, str]]]
    strided: bool = True  # False: reading is cheap, a survey reads it all


def _sampled(key: str, stride: int) -> bool:
    return stride <= 1 or zlib.crc32(key.encode()) % stride == 0


def _walk(root: Path, accept: Callable[[Path], bool]) -> Iterator[Path]:
    """Regular files under root, sorted, without following links (Debian links many docs)."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        for name in sorted(filenames):
            p = Path(dirpath, name)
            if accept(p) and not p.is_symlink():
                yield p


def _read(path: Path) -> str | None:
    """UTF-8 text of a file (gunzipped), or None if too large, binary or not UTF-8."""
    try:
        if path.stat().st_size > MAX_RAW_BYTES:
            return None
        data = path.read_bytes()
        if path.suffix == ".gz":
            d = zlib.decompressobj(wbits=31)
            data = d.decompress(data, MAX_RAW_BYTES + 1)
            if len(data) > MAX_RAW_BYTES:
                return None
    except (OSError, zlib.error):
        return None
    if b"\x00" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


_HTML_DROP = re.compile(r"<(script|style|noscript|template|svg)\b.*?</\1\s*>|<!--.*?-->",
                        re.S | re.I)
_HTML_BLOCK = re.compile(r"</?(?:address|article|aside|blockquote|body|br|dd|div|dl|dt|h[1-6]"
                         r"|header|footer|hr|li|nav|ol|p|pre|section|table|td|th|tr|ul|title)"
                         r"\b[^>]*>", re.I)
_HTML_TAG = re.compile(r"<[^>]*>")
_ROFF_COMMENT = re.compile(r"^[.']\s*\\\".*$|^\\\".*$", re.M)
_ROFF_CONTROL = re.compile(r"^[.'][ \t]*(?:ds|de|nr|if|ie|el|so|ft|ad|na|nh|hy|ll|in|ti|sp|br"
                           r"|fi|nf|ne|rm|ig|tr|cs|ss|ta|mso|\\\}|\.)(?![A-Za-z]).*$", re.M)
_ROFF_REQUEST = re.compile(r"^[.'][ \t]*[A-Za-z]{1,3}\b[ \t]*", re.M)
_ROFF_ESCAPE = re.compile(r"\\f(?:\[[^\]]*\]|\(..|.)|\\\(..|\\\[[^\]]*\]|\\[*n](?:\(..|.)"
                          r"|\\s[+-]?\d|\\w'[^']*'u?|\\[&|^%c,/]")
_BLANKS = re.compile(r"[ \t\r\f\v\xa0]+")
_EDGE_SPACE = re.compile(r" *\n *")
_MANY_NL = re.compile(r"\n{3,}")
_MAN_NAME = re.compile(r"\.\d\w*(\.gz)?$")


def _tidy(text: str) -> str:
    text = _EDGE_SPACE.sub("\n", _BLANKS.sub(" ", text))
    return _MANY_NL.sub("\n\n", text).strip() + "\n"


def html_text(src: str) -> str:
    """Visible text of a page by regexes: ~10x faster than HTMLParser, good enough here."""
    text = _HTML_BLOCK.sub("\n", _HTML_DROP.sub(" ", src))
    return _tidy(html.unescape(_HTML_TAG.sub("", text)))


def roff_text(src: str) -> str:
    """Text of a man page: comments and control requests dropped; other requests keep
    their arguments (`.SH NAME` -> `NAME`); font and glyph escapes dropped."""
    text = _ROFF_REQUEST.sub("", _ROFF_CONTROL.sub("", _ROFF_COMMENT.sub("", src)))
    text = text.replace("\\-", "-").replace("\\e", "\\").replace("\\ ", " ")
    return _tidy(_ROFF_ESCAPE.sub("", text))


def _inner_name(path: Path) -> str:
    return path.name[:-3] if path.name.endswith(".gz") else path.name


def _is_man(path: Path) -> bool:
    return "man" in path.parts and bool(_MAN_NAME.search(path.name))


def _is_html(path: Path) -> bool:
    return _inner_name(path).endswith((".html", ".htm", ".xhtml"))


DOC_EXT = (".txt", ".md", ".rst", ".pod", ".tex", ".texi", ".org", ".text", ".markdown")
CODE_EXT = (".py", ".pyi", ".pyx", ".pxd", ".h", ".hpp", ".hh", ".c", ".cc", ".cpp", ".cu",
            ".cuh", ".md", ".rst", ".txt")


PROSE_NAMES = ("changelog", "news", "readme", "copying", "authors", "todo", "thanks", "faq")


def _is_plain_doc(path: Path) -> bool:
    """Prose files: known text extensions, or names like README, NEWS, changelog.Debian."""
    name = _inner_name(path)
    if _is_man(path) or _is_html(path):
        return False
    return name.endswith(DOC_EXT) or "." not in name or name.lower().startswith(PROSE_NAMES)


def _is_code(path: Path) -> bool:
    return path.name.endswith(CODE_EXT)


def _is_header(path: Path) -> bool:
    """C and C++ headers, including the extension-less standard ones (c++/12/vector)."""
    return path.name.endswith((".h", ".hpp", ".hh", ".hxx", ".ipp", ".inc", ".tcc")) or (
        "." not in path.name)


def _is_doc(path: Path) -> bool:
    return _is_html(path) or _is_man(path) or _is_plain_doc(path)


def extract(path: Path) -> str | None:
    """Text of a documentation file by type: HTML and roff stripped, the rest as is."""
    text = _read(path)
    if text is None:
        return None
    if _is_html(path):
        return html_text(text)
    if _is_man(path):
        return roff_text(text)
    return text


def file_group(name: str, root: Path, accept: Callable[[Path], bool],
               reader: Callable[[Path], str | None] = extract) -> Group:
    """Files under `root` accepted by `accept`; ids are `name:relative/path`."""

    def docs(stride: int) -> Iterator[tuple[str, str]]:
        if not root.is_dir():
            return
        for p in _walk(root, accept):
            rel = p.relative_to(root).as_posix()
            if _sampled(rel, stride) and (text := reader(p)) is not None:
                yield f"{name}:{rel}", text

    return Group(name, docs)


def records_group(name: str, paths: list[Path]) -> Group:
    """Records of JSONL(.gz) files with `id` and `text` (the sample, the quality sets)."""

    def docs(stride: int) -> Iterator[tuple[str, str]]:
        for p in paths:
            opener = gzip.open if p.suffix == ".gz" else open
            with opener(p, "rt", encoding="utf-8") as f:
                for line in f:
                    rec = json.loads(line)
                    if _sampled(str(rec["id"]), stride):
                        yield f"{name}:{rec['id']}", rec["text"]

    return Group(name, docs, strided=False)


def zip_group(name: str, archive: Path, suffixes: tuple[str, ...]) -> Group:
    """Members of a zip archive (the JDK's src.zip) with the given suffixes, sorted."""

    def docs(stride: int) -> Iterator[tuple[str, str]]:
        if not archive.is_file():
            return
        with zipfile.ZipFile(archive) as z:
            for info in sorted(z.infolist(), key=lambda i: i.filename):
                if (info.filename.endswith(suffixes) and info.file_size <= MAX_RAW_BYTES
                        and _sampled(info.filename, stride)):
                    try:
                        text = z.read(info).decode("utf-8")
                    except UnicodeDecodeError:
                        continue
                    yield f"{name}:{info.filename}", text

    return Group(name, docs)


def labelled_group(name: str, **roots: Path) -> Group:
    """One source of the dedup labelled set, read by its own `iter_documents`."""

    def docs(stride: int) -> Iterator[tuple[str, str]]:
        kw = {"pyenv_stdlib": NOWHERE, "debian_stdlib": NOWHERE, "doc_root": NOWHERE,
              "kernel_docs": NOWHERE, **roots}
        for d in iter_documents(**kw):
            if _sampled(d.id, stride):
                yield f"{name}:{d.id.split(':', 1)[1]}", d.text

    return Group(name, docs, strided=False)


def _jdk_src() -> Path:
    """The first JDK source archive present (Debian's openjdk-17 link may dangle)."""
    found = [p for p in sorted(Path("/usr/lib/jvm").glob("*/lib/src.zip")) if p.is_file()]
    return found[0].resolve() if found else NOWHERE


def default_groups() -> list[Group]:
    """All base-text groups of this machine, in round-robin order."""
    base_site = Path(sys.base_prefix) / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
    venv_site = Path(sysconfig.get_paths()["purelib"])
    groups = [records_group(f"sample-{p.name.split('.')[0]}", [p])
              for p in sorted((REPO / "data/sample").glob("*.jsonl.gz"))]
    groups += [
        records_group("quality-data", sorted((REPO / "data/quality").rglob("*.jsonl.gz"))),
        labelled_group("labelled-cpython-3.11.7", pyenv_stdlib=PYENV_STDLIB),
        labelled_group("labelled-cpython-debian", debian_stdlib=DEBIAN_STDLIB),
        labelled_group("labelled-copyright", doc_root=DOC_ROOT),
        labelled_group("labelled-linux-doc", kernel_docs=KERNEL_DOCS),
        file_group("pkg-html", PKG_ROOT, _is_html),
        file_group("pkg-man", PKG_ROOT, _is_man),
        file_group("pkg-text", PKG_ROOT, _is_plain_doc),
        file_group("usr-share-doc", Path("/usr/share/doc"),
                   lambda p: _is_doc(p) and p.name != "copyright"),
        file_group("usr-share-man", Path("/usr/share/man"), _is_man),
        file_group("common-licenses", Path("/usr/share/common-licenses"), lambda p: True),
        file_group("perl", Path("/usr/share/perl"), lambda p: p.suffix in (".pm", ".pod", ".pl")),
        file_group("venv-site-packages", venv_site, _is_code),
        file_group("usr-include", Path("/usr/include"), _is_header),
        zip_group("jdk-src", _jdk_src(), (".java",)),
        file_group("vim-runtime", Path("/usr/share/vim"),
                   lambda p: p.suffix in (".vim", ".txt") or "." not in p.name),
    ]
    if (base_site / "site-packages").resolve() != venv_site.resolve():
        groups.append(file_group("python-site-packages", base_site / "site-packages", _is_code))
    groups.append(file_group("debian-dist-packages", Path("/usr/lib/python3/dist-packages"), _is_code))
    return groups


class Base(NamedTuple):
    id: str
    text: str
    source: str
    norm: str


@dataclass
class GroupStats:
    docs: int = 0
    bytes: int = 0
    seen: int = 0
    too_small: int = 0
    too_large: int = 0
    exact_dup: int = 0
    seconds: float = 0.0


class BaseStream:
    """Filters and exact-dedups documents; `seen` is shared across calls (survey order)."""

    def __init__(self, max_doc_bytes: int):
        self.max_doc_bytes = max_doc_bytes
        self.hashes: set[bytes] = set()
        self.ids: set[str] = set()
        self.stats: dict[str, GroupStats] = {}

    def _accept(self, group: str, doc_id: str, text: str) -> Base | None:
        st = self.stats[group]
        st.seen += 1
        if len(text) < MIN_CHARS:
            st.too_small += 1
            return None
        size = len(text.encode("utf-8"))
        if size > self.max_doc_bytes:
            st.too_large += 1
            return None
        norm = normalize_for_hashing(text)
        if norm.count(" ") + 1 < MIN_WORDS:
            st.too_small += 1
            return None
        key = hashlib.blake2b(norm.encode("utf-8"), digest_size=16).digest()
        if key in self.hashes:
            st.exact_dup += 1
            return None
        self.hashes.add(key)
        uid, k = doc_id, 1
        while uid in self.ids:
            k += 1
            uid = f"{doc_id}#{k}"
        self.ids.add(uid)
        st.docs += 1
        st.bytes += size
        return Base(uid, text, group, norm)

    def round_robin(self, groups: Iterable[Group], stride: int = 1) -> Iterator[Base]:
        """One item per live group per turn, so every prefix of the stream mixes them."""
        live = []
        for g in groups:
            self.stats.setdefault(g.name, GroupStats())
            live.append((g.name, g.docs(stride)))
        while live:
            nxt = []
            for name, it in live:
                t0 = time.perf_counter()
                item = next(it, None)
                base = None if item is None else self._accept(name, *item)
                self.stats[name].seconds += time.perf_counter() - t0
                if item is None:
                    continue
                nxt.append((name, it))
                if base is not None:
                    yield base
            live = nxt


def resolve_groups(sources: tuple[str, ...] | None,
                   groups: list[Group] | None = None) -> list[Group]:
    """The named groups (all when `sources` is None) of `groups`, by default this machine's."""
    groups = default_groups() if groups is None else groups
    if sources is None:
        return groups
    by_name = {g.name: g for g in groups}
    unknown = sorted(set(sources) - set(by_name))
    if unknown:
        raise ValueError(f"unknown sources {unknown}; known: {sorted(by_name)}")
    return [by_name[n] for n in sources]


def survey(groups: list[Group], stride: int, max_doc_bytes: int) -> dict:
    """Distinct base text per group from a 1/stride sample of paths (same paths in every
    group, so exact copies across groups are found), scaled up; groups in build order."""
    stream = BaseStream(max_doc_bytes)
    out = {}
    for g in groups:
        k = stride if g.strided else 1
        for _ in stream.round_robin([g], k):
            pass
        st = stream.stats[g.name]
        out[g.name] = {"est_docs": st.docs * k, "est_mb": round(st.bytes * k / 1e6, 1),
                       "est_exact_dup": st.exact_dup * k, "est_too_large": st.too_large * k,
                       "stride": k, "sampled_seen": st.seen,
                       "seconds": round(st.seconds, 2),
                       "mb_per_s": round(st.bytes / 1e6 / st.seconds, 2) if st.seconds else None}
    out["total_est_mb"] = round(sum(v["est_mb"] for v in out.values()), 1)
    return out
