"""Planted near duplicates of the dedup corpus, and their exact Jaccard on the engine's shingles.

Why a module: how a copy is made (five kinds, each with its recorded params) and how its
truth is scored are the benchmark's ground truth, apart from where base text comes from
(`corpus_sources`) and how the corpus is written (`dedup_corpus`).

Rates per base document, all drawn from the `rng` the build seeds per document:
- near copies: with probability `near_rate` (0.10) a document gets 1..`max_copies` (3)
  copies, each of one kind, uniformly: `edit` (2-8% of words replaced, deleted or
  followed by an inserted word), `insert` (paragraphs of a recent other document, 5-30%
  of the length, at a paragraph break), `truncate` (keep an 80-95% prefix),
  `boilerplate` (licence banners / navigation / cookie text worth 5-25% of the words, as a
  header, a footer or both);
- exact copies: with probability `exact_rate` (0.03) one copy that differs only in ASCII
  case and whitespace (CRLF, doubled or trailing spaces): equal after normalisation, so
  the exact stage catches it.
Each pair's Jaccard is exact, on the engine's own shingle sets (`normalize_for_hashing` +
`shingle_hashes`, word 5-grams by default).
"""

from __future__ import annotations

import random
import re
import string
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from benchmarks.corpus_sources import Base
from curation.dedup.minhash import ShingleSpec, normalize_for_hashing, shingle_hashes

if TYPE_CHECKING:
    from benchmarks.dedup_corpus import Plan

NEAR_KINDS = ("edit", "insert", "truncate", "boilerplate")
KINDS = (*NEAR_KINDS, "exact")

BOILERPLATE: tuple[tuple[str, str], ...] = (
    ("apache-2.0-notice",
     'Licensed under the Apache License, Version 2.0 (the "License");\n'
     "you may not use this file except in compliance with the License.\n"
     "You may obtain a copy of the License at\n\n    http://www.apache.org/licenses/LICENSE-2.0\n\n"
     "Unless required by applicable law or agreed to in writing, software\n"
     'distributed under the License is distributed on an "AS IS" BASIS,\n'
     "WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.\n"
     "See the License for the specific language governing permissions and\n"
     "limitations under the License."),
    ("navigation",
     "Home | Documentation | Downloads | Community | Blog | About | Contact\n"
     "Getting started · Tutorials · How-to guides · API reference · Release notes · FAQ\n"
     "You are here: Home > Documentation > Reference > Library\n"
     "Previous topic | Next topic | This page | Show source | Report a bug | Edit on GitHub\n"
     "Search the documentation. Quick search. Go. Table of contents. Index. Modules."),
    ("gpl-3.0-notice",
     "This program is free software: you can redistribute it and/or modify\n"
     "it under the terms of the GNU General Public License as published by\n"
     "the Free Software Foundation, either version 3 of the License, or\n"
     "(at your option) any later version.\n\n"
     "This program is distributed in the hope that it will be useful,\n"
     "but WITHOUT ANY WARRANTY; without even the implied warranty of\n"
     "MERCHANTABILITY or FITNESS FOR A PARTICULAR PURPOSE.  See the\n"
     "GNU General Public License for more details.\n\n"
     "You should have received a copy of the GNU General Public License\n"
     "along with this program.  If not, see <https://www.gnu.org/licenses/>."),
    ("cookie-banner",
     "We use cookies to give you the best experience on our website. By continuing to browse "
     "the site you agree to our use of cookies. Read our privacy policy and cookie policy to "
     "find out more or to change your settings. Accept all cookies. Reject optional cookies. "
     "Manage preferences. Subscribe to our newsletter to get the latest news and updates "
     "delivered to your inbox every week. Follow us on social media."),
    ("mit-license",
     "Permission is hereby granted, free of charge, to any person obtaining a copy\n"
     'of this software and associated documentation files (the "Software"), to deal\n'
     "in the Software without restriction, including without limitation the rights\n"
     "to use, copy, modify, merge, publish, distribute, sublicense, and/or sell\n"
     "copies of the Software, and to permit persons to whom the Software is\n"
     "furnished to do so, subject to the following conditions:\n\n"
     "The above copyright notice and this permission notice shall be included in all\n"
     "copies or substantial portions of the Software.\n\n"
     'THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR\n'
     "IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,\n"
     "FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE\n"
     "AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER\n"
     "LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,\n"
     "OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE\n"
     "SOFTWARE."),
    ("site-footer",
     "Copyright © 2001-2024 the project authors and contributors. All rights reserved.\n"
     "Last updated on 2024-05-01. Created using a documentation generator.\n"
     "Terms of use | Privacy | Trademarks | Code of conduct | Security | Status | Sitemap\n"
     "Found a bug? Report it on the issue tracker. Want to help? See the contributing guide.\n"
     "Hosted by the community infrastructure team. Powered by volunteers and sponsors."),
)

_SPLIT_WS = re.compile(r"(\s+)")
_WORD_CHAR = re.compile(r"\w")
_PARA = re.compile(r"\n[ \t]*\n\s*")
_NONSPACE = re.compile(r"\S+")
_UPPER = str.maketrans(string.ascii_lowercase, string.ascii_uppercase)


def _cut(text: str, n: int) -> str:
    """At most n characters of text, ending at a whitespace when there is one."""
    if len(text) <= n:
        return text
    k = max(text.rfind(" ", 0, n), text.rfind("\n", 0, n))
    return text[: k if k > 0 else n]


def _word_prefix(text: str, words: int) -> str:
    """The first `words` whitespace-separated words of text, line breaks kept."""
    end = 0
    for i, m in enumerate(_NONSPACE.finditer(text)):
        if i == words:
            break
        end = m.end()
    return text[:end]


def plant_edit(text: str, rng: random.Random, fraction: float) -> tuple[str, dict]:
    """Replace, delete, or follow by a new word a `fraction` of the words (wordy tokens)."""
    parts = _SPLIT_WS.split(text)
    idx = [i for i in range(0, len(parts), 2) if _WORD_CHAR.search(parts[i])]
    words = [parts[i] for i in idx]
    m = min(len(idx), max(1, round(fraction * len(idx))))
    ops: Counter[str] = Counter()
    for i in rng.sample(idx, m):
        op = rng.choice(("replace", "delete", "insert"))
        w = rng.choice(words)
        if op == "replace" and w.lower() == parts[i].lower():
            op = "delete"
        parts[i] = "" if op == "delete" else w if op == "replace" else f"{parts[i]} {w}"
        ops[op] += 1
    return "".join(parts), {"fraction": round(fraction, 4), "edits": m, **dict(sorted(ops.items()))}


def plant_insert(text: str, rng: random.Random, fraction: float, donor_id: str,
                 donor: str) -> tuple[str, dict]:
    """Put paragraphs of another document (about `fraction` of the length) at a break."""
    target = max(80, int(fraction * len(text)))
    paras = [p for p in _PARA.split(donor) if p.strip()]
    start = rng.randrange(len(paras))
    taken: list[str] = []
    for p in paras[start:] + paras[:start]:
        taken.append(p.strip())
        if sum(map(len, taken)) >= target:
            break
    block = _cut("\n\n".join(taken), min(int(1.5 * target), len(donor) // 2)).strip()
    breaks = [0, *(m.end() for m in _PARA.finditer(text)), len(text)]
    pos = rng.choice(breaks)
    if pos >= len(text):
        new = f"{text.rstrip()}\n\n{block}\n"
    else:
        new = f"{text[:pos]}{block}\n\n{text[pos:]}"
    return new, {"fraction": round(fraction, 4), "donor_id": donor_id, "chars": len(block),
                 "position": pos}


def plant_truncate(text: str, rng: random.Random, keep: float) -> tuple[str, dict]:
    """Keep a prefix of `keep` of the characters, cut at a whitespace."""
    new = _cut(text, int(keep * len(text))).rstrip() + "\n"
    return new, {"keep": round(keep, 4), "chars": len(new) - 1}


def _boilerplate(first: int, words: int) -> tuple[str, list[str]]:
    """`words` words of the boilerplate blocks, starting at block `first` (cycling)."""
    out, names = [], []
    for k in range(len(BOILERPLATE)):
        name, block = BOILERPLATE[(first + k) % len(BOILERPLATE)]
        if words <= 0:
            break
        piece = _word_prefix(block, words)
        out.append(piece)
        names.append(name)
        words -= len(piece.split())
    return "\n\n".join(out), names


def plant_boilerplate(text: str, rng: random.Random, fraction: float) -> tuple[str, dict]:
    """Add shared licence / navigation / footer text as a header, a footer or both."""
    target = max(8, round(fraction * len(text.split())))
    where = rng.choice(("header", "footer", "both"))
    first = rng.randrange(len(BOILERPLATE))
    head = foot = ""
    names: list[str] = []
    if where in ("header", "both"):
        head, n = _boilerplate(first, target if where == "header" else (target + 1) // 2)
        names += n
    if where in ("footer", "both"):
        foot, n = _boilerplate(first + 1, target if where == "footer" else target // 2)
        names += n
    new = (f"{head}\n\n" if head else "") + text.rstrip() + (f"\n\n{foot}\n" if foot else "\n")
    added = len(head.split()) + len(foot.split())
    return new, {"fraction": round(fraction, 4), "where": where, "blocks": names, "words": added}


def plant_exact(text: str, rng: random.Random, norm: str) -> tuple[str, dict]:
    """Change only ASCII case and whitespace: equal after `normalize_for_hashing`."""
    ops = sorted(rng.sample(("case", "crlf", "spaces", "trailing"), rng.randint(1, 2)))
    lines = text.split("\n")
    if "case" in ops:
        for i in rng.sample(range(len(lines)), max(1, len(lines) // 3)):
            lines[i] = lines[i].translate(_UPPER)
    if "trailing" in ops:
        lines = [f"{line}  " for line in lines]
    new = ("\r\n" if "crlf" in ops else "\n").join(lines)
    if "spaces" in ops:
        new = new.replace(" ", "  ")
    if new == text or normalize_for_hashing(new) != norm:  # never seen; kept as a guard
        ops, new = ["trailing-space"], text + " "
    return new, {"ops": ops}


def plant(doc: Base, rng: random.Random, plan: Plan,
          donors: deque[tuple[str, str]]) -> list[tuple[str, str, dict]]:
    """Planted copies of one base document: [(kind, text, params)]."""
    u_near, u_exact = rng.random(), rng.random()
    out = []
    if u_near < plan.near_rate:
        for _ in range(rng.randint(1, plan.max_copies)):
            out.append(plant_near(doc.text, rng, plan, rng.choice(NEAR_KINDS), donors))
    if u_exact < plan.exact_rate:
        out.append(("exact", *plant_exact(doc.text, rng, doc.norm)))
    return out


def plant_near(text: str, rng: random.Random, plan: Plan, kind: str,
               donors: deque[tuple[str, str]]) -> tuple[str, str, dict]:
    if kind == "insert" and not donors:
        kind = "edit"  # the very first document has no other document to borrow from
    if kind == "edit":
        new, params = plant_edit(text, rng, rng.uniform(*plan.edit_fraction))
    elif kind == "insert":
        donor_id, donor = rng.choice(donors)
        new, params = plant_insert(text, rng, rng.uniform(*plan.insert_fraction), donor_id, donor)
    elif kind == "truncate":
        new, params = plant_truncate(text, rng, rng.uniform(*plan.truncate_keep))
    else:
        new, params = plant_boilerplate(text, rng, rng.uniform(*plan.boilerplate_fraction))
    return kind, new, params


@dataclass
class Pair:
    """One planted pair of the ground truth (line indices are positions in the spool)."""

    dup_id: str
    source_id: str
    kind: str
    params: dict
    dup_line: int
    source_line: int
    jaccard: float = -1.0
    shingles: dict = field(default_factory=dict)


class PairScorer:
    """Exact Jaccard of planted pairs on the engine's shingle sets, in batches."""

    def __init__(self, spec: ShingleSpec, batch_chars: int = 2 << 20):
        self.spec, self.batch_chars = spec, batch_chars
        self.texts: list[str] = []
        self.pending: list[tuple[Pair, int, int]] = []
        self.chars = self.src = 0

    def add(self, pair: Pair, source_norm: str, dup_norm: str) -> None:
        """Queue a pair; the source text is shared with the previous pair when it is the same."""
        if not (self.pending and self.pending[-1][0].source_line == pair.source_line):
            self.texts.append(source_norm)
            self.chars += len(source_norm)
            self.src = len(self.texts) - 1
        src = self.src
        self.texts.append(dup_norm)
        self.chars += len(dup_norm)
        self.pending.append((pair, src, len(self.texts) - 1))

    def maybe_flush(self) -> None:
        if self.chars >= self.batch_chars:
            self.flush()

    def flush(self) -> None:
        if not self.texts:
            return
        hashes, offsets = shingle_hashes(self.texts, self.spec)
        sets = [np.unique(hashes[offsets[i]: offsets[i + 1]]) for i in range(len(self.texts))]
        for pair, a, b in self.pending:
            shared = int(np.intersect1d(sets[a], sets[b], assume_unique=True).size)
            union = sets[a].size + sets[b].size - shared
            pair.jaccard = round(shared / union, 6) if union else 0.0
            pair.shingles = {"source": int(sets[a].size), "dup": int(sets[b].size), "shared": shared}
        self.texts, self.pending, self.chars = [], [], 0
