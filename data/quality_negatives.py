"""Real low-quality text, of the kinds web crawls hold, for the learned quality signals.

Two families, both made of real text only:

* found as is in packages: navigation and index pages of generated documentation
  (`nav`), changelogs (`changelog`), logs shipped in packages or printed by real
  programs run on real inputs (`log`), data files (`dump`);
* real documents damaged the way crawled pages are damaged: keyword stuffing
  (`stuffing`: a document's own frequent words and phrases, repeated SEO-style), wrong
  decoding (`mojibake`: UTF-8 bytes read as Windows-1252 or Latin-1), shuffled words
  (`salad`: the document's words in a seeded random order) and repeated lines
  (`repeated`: some of the document's lines, over and over).

Every function is deterministic: randomness comes from a `random.Random` seeded with a
string naming the document, so a rebuild gives the same bytes.
"""

from __future__ import annotations

import random
import re
import subprocess
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

from quality_sources import QDoc, chunks, html_text_keep_nav, read_bytes, walk

NEGATIVE_KINDS = ("nav", "changelog", "log", "dump", "stuffing", "mojibake", "salad",
                  "repeated")


def rng_for(*parts: str) -> random.Random:
    return random.Random("\x1f".join(parts))


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def line_windows(text: str, n: int, max_chars: int, rng: random.Random,
                 min_chars: int = 300) -> list[str]:
    """Up to n runs of consecutive lines (each at most max_chars), at seeded offsets."""
    lines = text.splitlines()
    total = len(text)
    if total <= max_chars:
        return [text] if len(text.strip()) >= min_chars else []
    starts = sorted(set(rng.randrange(len(lines)) for _ in range(n)))
    out: list[str] = []
    last_end = -1
    for start in starts:
        if start <= last_end:
            continue
        buf: list[str] = []
        size = 0
        i = start
        while i < len(lines) and size + len(lines[i]) + 1 <= max_chars:
            buf.append(lines[i])
            size += len(lines[i]) + 1
            i += 1
        last_end = i
        piece = "\n".join(buf).strip("\n")
        if len(piece) >= min_chars:
            out.append(piece + "\n")
    return out


# --- found in packages ---------------------------------------------------------------------

def nav_pages(source: str, license_: str, root: Path, patterns: Iterable[str],
              max_chars: int = 6000) -> Iterator[QDoc]:
    """Index, TOC and API-list pages of generated docs, tags stripped, navigation kept."""
    for path in walk(root, patterns):
        text = html_text_keep_nav(_decode(read_bytes(path)))
        rel = path.relative_to(root).as_posix()
        for i, part in enumerate(chunks(text, max_chars=max_chars)[:4]):
            yield QDoc(f"{source}/{rel}#nav{i}", part, source, "web", "nav", license_)


def changelogs(source: str, license_: str, root: Path, max_per_file: int = 6,
               max_chars: int = 4000) -> Iterator[QDoc]:
    """Debian and upstream changelogs shipped in usr/share/doc (newest entries first)."""
    pats = ("usr/share/doc/*/changelog*", "usr/share/doc/*/ChangeLog*",
            "usr/share/doc/*/NEWS.Debian*", "usr/share/doc/*/CHANGES*")
    for path in walk(root, pats):
        if path.suffix in (".pdf", ".html"):
            continue
        text = _decode(read_bytes(path)).replace("\r\n", "\n")
        rel = path.relative_to(root).as_posix()
        for i, part in enumerate(chunks(text, max_chars=max_chars)[:max_per_file]):
            yield QDoc(f"{source}/{rel}#{i}", part, source, "web", "changelog", license_)


def file_windows(source: str, kind: str, license_: str, root: Path, patterns: Iterable[str],
                 per_file: int, max_chars: int = 3000,
                 max_file_bytes: int = 80_000_000) -> Iterator[QDoc]:
    """Windows of consecutive lines of shipped files (logs, data tables) at seeded offsets."""
    for path in walk(root, patterns):
        if path.stat().st_size > max_file_bytes:
            continue
        text = _decode(read_bytes(path))
        rel = path.relative_to(root).as_posix()
        for i, piece in enumerate(line_windows(text, per_file, max_chars,
                                               rng_for(source, rel))):
            yield QDoc(f"{source}/{rel}#{kind}{i}", piece, source, "web", kind, license_)


def dpkg_listing_log(source: str, license_: str, deb: Path, per_file: int = 6,
                     max_chars: int = 3000) -> Iterator[QDoc]:
    """`dpkg-deb --contents` of a package: the verbose tar listing a build log prints."""
    out = subprocess.run(["dpkg-deb", "--contents", str(deb)], capture_output=True, check=True,
                         env={"LC_ALL": "C", "TZ": "UTC", "PATH": "/usr/bin:/bin"}).stdout
    text = _decode(out)
    for i, piece in enumerate(line_windows(text, per_file, max_chars, rng_for(source, "dpkg"))):
        yield QDoc(f"{source}/dpkg-deb--contents#{i}", piece, source, "web", "log", license_)


# --- real documents, damaged ---------------------------------------------------------------

_STOP = frozenset("""a about above after again against all also an and any are as at be
because been before being below between both but by can could did do does doing down during
each few for from further had has have having he her here hers him his how i if in into is it
its itself just me more most my no nor not now of off on once only or other our out over own
same she should so some such than that the their them then there these they this those through
to too under until up very was we were what when where which while who whom why will with
would you your used use using may must one two see also new get set""".split())


def keyword_stuffing(doc: QDoc) -> QDoc:
    """The document's most frequent words and word pairs, repeated the way SEO spam does,
    around its real title and first sentences."""
    rng = rng_for("stuffing", doc.id)
    words = re.findall(r"[^\W\d_][\w'-]{2,}", doc.text)
    content = [w.lower() for w in words if w.lower() not in _STOP]
    top = [w for w, _ in Counter(content).most_common(10)]
    pairs = Counter(f"{a} {b}" for a, b in zip(content, content[1:], strict=False) if a != b)
    phrases = top + [p for p, c in pairs.most_common(8) if c > 1]
    if len(phrases) < 4:
        phrases = (phrases * 4)[:4] or ["text"]
    title = next((ln.strip() for ln in doc.text.splitlines() if ln.strip()), "")[:100]
    sentences = re.split(r"(?<=[.!?])\s+", " ".join(doc.text.split()))[:rng.randint(1, 3)]
    lines = [title, "", " ".join(sentences)[:600], ""]
    for _ in range(rng.randint(12, 30)):
        k = rng.sample(phrases, min(len(phrases), rng.randint(3, 7)))
        lines.append(rng.choice((", ", " | ", " - ", " ")).join(k))
    lines += ["", ", ".join(phrases * rng.randint(2, 4))]
    return QDoc(f"{doc.id}#stuffing", "\n".join(lines).strip() + "\n", doc.source, doc.domain,
                "stuffing", doc.license)


def word_salad(doc: QDoc, max_words: int = 500) -> QDoc:
    """The document's own words, shuffled with a seeded RNG, wrapped in lines."""
    rng = rng_for("salad", doc.id)
    words = doc.text.split()
    rng.shuffle(words)
    words = words[:max_words]
    lines: list[str] = []
    i = 0
    while i < len(words):
        n = rng.randint(8, 16)
        lines.append(" ".join(words[i:i + n]))
        if rng.random() < 0.15:
            lines.append("")
        i += n
    return QDoc(f"{doc.id}#salad", "\n".join(lines).strip() + "\n", doc.source, doc.domain,
                "salad", doc.license)


_CP1252 = "".join(
    bytes([b]).decode("cp1252") if b not in (0x81, 0x8D, 0x8F, 0x90, 0x9D) else chr(b)
    for b in range(256)
)


def _as_cp1252(text: str) -> str:
    """UTF-8 bytes read as Windows-1252 (undefined bytes as Latin-1, like browsers do)."""
    return "".join(_CP1252[b] for b in text.encode("utf-8"))


def mojibake(doc: QDoc, max_chars: int = 4000) -> QDoc:
    """The document's UTF-8 bytes decoded with the wrong codec (once or twice)."""
    rng = rng_for("mojibake", doc.id)
    text = doc.text[:max_chars]
    variant = rng.choice(("cp1252", "cp1252", "latin-1", "double-cp1252"))
    if variant == "cp1252":
        bad = _as_cp1252(text)
    elif variant == "latin-1":
        bad = text.encode("utf-8").decode("latin-1")
    else:
        bad = _as_cp1252(_as_cp1252(text))
    return QDoc(f"{doc.id}#mojibake-{variant}", bad, doc.source, doc.domain, "mojibake",
                doc.license)


def repeated_lines(doc: QDoc) -> QDoc:
    """A few of the document's real lines, repeated page after page."""
    rng = rng_for("repeated", doc.id)
    cands = sorted({ln.strip() for ln in doc.text.splitlines() if 15 <= len(ln.strip()) <= 160})
    picked = rng.sample(cands, min(len(cands), rng.randint(1, 3))) or [doc.text.split("\n")[0]]
    lines: list[str] = []
    if rng.random() < 0.5:
        lines += doc.text.split("\n\n")[0].splitlines()[:6] + [""]
    target = rng.randint(800, 3500)
    size = 0
    while size < target:
        for ln in picked:
            lines.append(ln)
            size += len(ln) + 1
    return QDoc(f"{doc.id}#repeated", "\n".join(lines).strip() + "\n", doc.source, doc.domain,
                "repeated", doc.license)


DAMAGE = {"stuffing": keyword_stuffing, "salad": word_salad, "mojibake": mojibake,
          "repeated": repeated_lines}
