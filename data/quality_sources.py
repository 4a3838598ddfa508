"""Real text for the learned quality signals: extractors of good documents, per package.

Each extractor takes the unpacked root of a Debian package (or a wheel path) and yields
QDoc records in a deterministic order (sorted paths). Which extractor feeds which output
(reference positives, evaluation set, language ID, domains) is decided in
build_quality_data.py; this module only knows how to turn a package into text.

The HTML extractors here keep the *content* of a page and drop its navigation (headers,
footers, sidebars, breadcrumbs): the navigation pages themselves are negatives
(quality_negatives.py).
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import re
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from sample_extract import _TextCollector, html_to_text, normalize_whitespace, parse_dictd_index

MIN_CHARS = 300
MAX_CHARS = 3000


@dataclass(frozen=True)
class QDoc:
    """One JSONL record of data/quality/."""

    id: str
    text: str
    source: str
    domain: str
    kind: str
    license: str
    label: str | None = None

    def record(self) -> dict[str, str]:
        rec = {"id": self.id, "text": self.text, "source": self.source, "domain": self.domain,
               "kind": self.kind, "license": self.license}
        if self.label is not None:
            rec["label"] = self.label
        return rec


# --- reading files -------------------------------------------------------------------------

def read_bytes(path: Path) -> bytes:
    raw = path.read_bytes()
    if path.suffix == ".gz" or path.suffix == ".dz":
        return gzip.decompress(raw)
    if path.suffix == ".xz":
        return lzma.decompress(raw)
    if path.suffix == ".bz2":
        return bz2.decompress(raw)
    return raw


def read_utf8(path: Path) -> str | None:
    """Text of a (possibly compressed) file, or None if it is not strict UTF-8."""
    try:
        return read_bytes(path).decode("utf-8")
    except UnicodeDecodeError:
        return None


def walk(root: Path, patterns: Iterable[str]) -> list[Path]:
    """Regular files (no symlinks) under root matching any glob pattern, sorted by path."""
    found = {p for pat in patterns for p in root.glob(pat) if p.is_file() and not p.is_symlink()}
    return sorted(found, key=lambda p: p.as_posix())


# --- text conversion -----------------------------------------------------------------------

_NAV_WORDS = re.compile(
    r"(^|[\s_-])(nav|navbar|navheader|navfooter|navigation|sphinxsidebar|sidebar|related|"
    r"breadcrumbs?|footer|header|toc|menu|topbar|sidebar-scrollbox|nav-chapters|"
    r"nav-wrapper|mobile-nav-chapters|pager)($|[\s_-])", re.I)
_NAV_TAGS = frozenset({"nav", "header", "footer", "aside"})
_VOID = frozenset("area base br col embed hr img input link meta source track wbr".split())


class _ContentCollector(_TextCollector):
    """Visible text without navigation subtrees (by tag, role, class or id)."""

    def __init__(self) -> None:
        super().__init__()
        self._nav_tag: str | None = None
        self._nav_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._nav_tag is not None:
            if tag == self._nav_tag:
                self._nav_depth += 1
            return
        if tag not in _VOID and tag not in ("html", "body", "main", "article"):
            marks = " ".join(v or "" for k, v in attrs if k in ("class", "id", "role"))
            if tag in _NAV_TAGS or _NAV_WORDS.search(marks):
                self._nav_tag, self._nav_depth = tag, 1
                return
        super().handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if self._nav_tag is not None:
            if tag == self._nav_tag:
                self._nav_depth -= 1
                if self._nav_depth == 0:
                    self._nav_tag = None
            return
        super().handle_endtag(tag)

    def handle_data(self, data: str) -> None:
        if self._nav_tag is None:
            super().handle_data(data)


def html_content_text(html: str) -> str:
    """Text of an HTML page's content, navigation subtrees dropped."""
    parser = _ContentCollector()
    parser.feed(html)
    parser.close()
    lines = [line.strip(" ") for line in "".join(parser.parts).split("\n")]
    return normalize_whitespace("\n".join(lines).replace("\x00", "\n"))


def html_text_keep_nav(html: str) -> str:
    """The whole visible text of a page, navigation kept (what a crawler stores)."""
    return html_to_text(html)


_POD_CODE = re.compile(r"[A-Z]<(?:<+\s(.*?)\s>+|([^<>]*))>", re.S)
_POD_ESCAPES = {"lt": "<", "gt": ">", "verbar": "|", "sol": "/", "quot": '"', "amp": "&"}


def _pod_code(m: re.Match[str]) -> str:
    letter = m.group(0)[0]
    inner = m.group(1) if m.group(1) is not None else m.group(2)
    if letter == "E":
        return _POD_ESCAPES.get(inner, chr(int(inner)) if inner.isdigit() else inner)
    if letter in "XZ":
        return ""
    if letter == "L":
        if "|" in inner:
            return inner.split("|", 1)[0]
        return inner if "://" in inner else inner.replace('"', "")
    return inner


def pod_to_text(pod: str) -> str:
    """Plain text of Perl POD: headings kept, commands and formatting codes removed."""
    out: list[str] = []
    in_pod = True
    for block in re.split(r"\n\s*\n", pod):
        if block.startswith("="):
            cmd, _, rest = block.partition(" ")
            cmd = cmd.split("\n")[0]
            if cmd == "=cut":
                in_pod = False
                continue
            in_pod = True
            if cmd.startswith("=head"):
                out.append(rest.strip())
            elif cmd == "=item":
                out.append(("* " + rest.strip()) if rest.strip() not in ("*", "") else "")
            continue
        if not in_pod:
            continue
        out.append(block)
    text = "\n\n".join(b for b in out if b)
    for _ in range(4):  # nested codes such as B<C<foo>>
        text = _POD_CODE.sub(_pod_code, text)
    return normalize_whitespace(text)


_ROFF_FONT = re.compile(r"\\f(?:\[[^\]]*\]|\(..|.)")
_ROFF_ESC = {r"\-": "-", r"\(em": "\u2014", r"\(en": "\u2013", r"\(bu": "\u2022",
             r"\(aq": "'", r"\(dq": '"', r"\(lq": "\u201c", r"\(rq": "\u201d", r"\e": "\\",
             r"\ ": " ", r"\&": "", r"\(co": "\u00a9", r"\~": " ", r"\|": "", r"\^": "",
             r"\%": "", r"\(cq": "'", r"\(oq": "'", r"\:": ""}
_ROFF_TEXT_MACROS = re.compile(r"^\.(SH|SS|B|I|BR|BI|IB|IR|RB|RI|TP|IP|SM|SB|UR|MT|Nm|Sh|"
                               r"Ss|Nd|Ar|Fl|Xr|Pa|Em|Sy|Dq|Qo|Ql|Li|Cm|Ic|It)\b\s*(.*)$")


def roff_to_text(roff: str) -> str:
    """Rough plain text of a man page: requests dropped, text of font macros kept."""
    lines: list[str] = []
    for line in roff.splitlines():
        if line.startswith(('.\\"', "'\\\"", '.\\\\"')) or line.startswith("\\\""):
            continue
        if line.startswith((".", "'")):
            m = _ROFF_TEXT_MACROS.match(line)
            if m is None:
                if line[1:3] in ("PP", "LP", "P ", "sp", "br") or line.strip() in (".P", ".Pp"):
                    lines.append("")
                continue
            macro, args = m.groups()
            args = args.replace('"', "")
            if macro in ("BR", "BI", "IB", "IR", "RB", "RI"):
                args = args.replace(" ", "")
            if macro in ("SH", "SS", "Sh", "Ss"):
                lines += ["", args, ""]
            elif args:
                lines.append(args)
            continue
        lines.append(line)
    text = "\n".join(lines)
    text = _ROFF_FONT.sub("", text)
    for esc, repl in _ROFF_ESC.items():
        text = text.replace(esc, repl)
    text = re.sub(r"\\\*\[[^\]]*\]|\\\*\(..|\\\*.", "", text)
    text = re.sub(r"\\[sv]'?[-+]?\d+'?", "", text)
    text = re.sub(r"\\(.)", r"\1", text)
    return normalize_whitespace(text)


def chunks(text: str, min_chars: int = MIN_CHARS, max_chars: int = MAX_CHARS) -> list[str]:
    """Consecutive paragraphs grouped into pieces of at most max_chars characters.

    A paragraph longer than max_chars is cut at line breaks; pieces shorter than
    min_chars are dropped (a stray heading is not a document).
    """
    paras: list[str] = []
    for para in re.split(r"\n\s*\n", text.strip("\n")):
        if len(para) <= max_chars:
            paras.append(para)
            continue
        buf = ""
        for line in para.split("\n"):
            if buf and len(buf) + len(line) + 1 > max_chars:
                paras.append(buf)
                buf = ""
            buf = f"{buf}\n{line}" if buf else line[:max_chars]
        if buf:
            paras.append(buf)
    out: list[str] = []
    cur: list[str] = []
    size = 0
    for para in paras:
        if cur and size + len(para) + 2 > max_chars:
            out.append("\n\n".join(cur) + "\n")
            cur, size = [], 0
        cur.append(para)
        size += len(para) + 2
    if cur:
        out.append("\n\n".join(cur) + "\n")
    return [c for c in out if len(c.strip()) >= min_chars]


# --- generic extractors --------------------------------------------------------------------

def file_docs(source: str, domain: str, kind: str, license_: str, root: Path, base: Path,
              patterns: Iterable[str], to_text=normalize_whitespace,
              max_chars: int = MAX_CHARS) -> Iterator[QDoc]:
    """Documents of the files matching patterns (split at paragraphs); non-UTF-8 skipped."""
    for path in walk(base, patterns):
        raw = read_utf8(path)
        if raw is None:
            continue
        rel = path.relative_to(root).as_posix()
        parts = chunks(to_text(raw), max_chars=max_chars)
        for i, part in enumerate(parts):
            suffix = f"#part{i}" if len(parts) > 1 else ""
            yield QDoc(f"{source}/{rel}{suffix}", part, source, domain, kind, license_)


def wheel_py_docs(source: str, license_: str, wheel: Path, exclude: tuple[str, ...] = (),
                  max_chars: int = MAX_CHARS) -> Iterator[QDoc]:
    """Python modules of a wheel; large modules are split at blank lines."""
    with zipfile.ZipFile(wheel) as zf:
        for name in sorted(zf.namelist()):
            if not name.endswith(".py") or any(x in name for x in exclude):
                continue
            text = normalize_whitespace(zf.read(name).decode("utf-8"))
            parts = chunks(text, max_chars=max_chars)
            for i, part in enumerate(parts):
                suffix = f"#part{i}" if len(parts) > 1 else ""
                yield QDoc(f"{source}/{name}{suffix}", part, source, "code", "source", license_)


def dictd_docs(source: str, license_: str, root: Path, name: str, per_doc: int = 6000,
               skip_heads: tuple[str, ...] = ("00-database",)) -> Iterator[QDoc]:
    """Entries of a dictd dictionary, consecutive entries grouped into ~per_doc characters."""
    dictd = root / "usr/share/dictd"
    data = gzip.decompress((dictd / f"{name}.dict.dz").read_bytes())
    rows = parse_dictd_index((dictd / f"{name}.index").read_text(encoding="utf-8"))
    buf: list[str] = []
    first = ""
    size = 0
    for head, off, length in rows:
        if head.startswith(skip_heads):
            continue
        try:
            entry = data[off:off + length].decode("utf-8").strip("\n")
        except UnicodeDecodeError:
            continue
        if not buf:
            first = head
        buf.append(entry)
        size += len(entry)
        if size >= per_doc:
            yield QDoc(f"{source}/{name}/{first}", normalize_whitespace("\n\n".join(buf)),
                       source, "reference", "dictionary", license_)
            buf, size = [], 0
    if buf and size >= MIN_CHARS:
        yield QDoc(f"{source}/{name}/{first}", normalize_whitespace("\n\n".join(buf)),
                   source, "reference", "dictionary", license_)


# --- copyright files -----------------------------------------------------------------------

def license_of(root: Path, package: str) -> str:
    """Short licence name from a package's DEP-5 copyright file (the `Files: *` paragraph),
    or '' when the file is not machine-readable (then build_quality_data names it)."""
    paths = walk(root, (f"usr/share/doc/{package}/copyright", "usr/share/doc/*/copyright"))
    if not paths:
        return ""
    text = paths[0].read_text(encoding="utf-8", errors="replace")
    for para in re.split(r"\n\s*\n", text):
        if re.search(r"^Files:\s*\*\s*$", para, re.M):
            m = re.search(r"^License:\s*(\S.*)$", para, re.M)
            if m:
                return m.group(1).strip()
    return ""
