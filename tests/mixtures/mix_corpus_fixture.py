"""A small real curated table: stdlib source, docstrings, licences and Debian copyright files.

Written as the curated contract says (hive-partitioned Parquet under <out>/curated, with
<out>/stats.json), with real duplicate clusters (identical copyright files) and quality
buckets from a simple text statistic, so the planner sees realistic skew.
"""

from __future__ import annotations

import ast
import glob
import hashlib
import json
import sys
import sysconfig
from collections import defaultdict
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds

MATH_MODULES = {"statistics", "fractions", "_pydecimal", "random", "numbers", "colorsys", "cmath"}


def _quality_bucket(text: str) -> int:
    letters = sum(c.isalpha() for c in text) / max(1, len(text))
    return int(sum(letters >= t for t in (0.55, 0.65, 0.75)))  # 0..3: prose > code > tables


def corpus_rows(max_chars: int = 6000) -> list[dict]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    rows: list[dict] = []
    for path in sorted(stdlib.glob("*.py"))[:160]:
        text = path.read_text(encoding="utf-8", errors="replace")
        name = path.stem
        domain = "math" if name in MATH_MODULES else "code"
        rows.append(
            {
                "id": f"py:{name}",
                "source": "stdlib",
                "domain": domain,
                "text": text[:max_chars],
                "cluster_size": 1,
            }
        )
        try:
            doc = ast.get_docstring(ast.parse(text))
        except SyntaxError:
            doc = None
        if doc and len(doc) > 200:
            rows.append(
                {
                    "id": f"doc:{name}",
                    "source": "stdlib-doc",
                    "domain": "reference",
                    "text": doc,
                    "cluster_size": 1,
                }
            )
    licence = Path(sys.base_prefix) / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
    for lic in sorted(glob.glob(str(licence / "LICENSE.txt"))):
        text = Path(lic).read_text(encoding="utf-8", errors="replace")
        for i in range(0, len(text), 3000):
            rows.append(
                {
                    "id": f"lic:{i}",
                    "source": "python-licence",
                    "domain": "books",
                    "text": text[i : i + 3000],
                    "cluster_size": 1,
                }
            )
    clusters: dict[str, list[str]] = defaultdict(list)
    texts: dict[str, str] = {}
    for path in sorted(glob.glob("/usr/share/doc/*/copyright"))[:400]:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        key = hashlib.sha1(text.encode()).hexdigest()
        clusters[key].append(Path(path).parent.name)
        texts[key] = text
    for key, members in sorted(clusters.items()):
        rows.append(
            {
                "id": f"copyright:{min(members)}",
                "source": "debian",
                "domain": "web",
                "text": texts[key][:max_chars],
                "cluster_size": len(members),
            }
        )
    for r in rows:
        r["n_chars"] = len(r["text"])
        r["quality_bucket"] = _quality_bucket(r["text"])
    return [r for r in rows if r["text"].strip()]


def write_curated(out: Path, rows: list[dict]) -> Path:
    table = pa.Table.from_pylist(rows)
    ds.write_dataset(
        table,
        out / "curated",
        format="parquet",
        basename_template="part-{i}.parquet",
        partitioning=ds.partitioning(pa.schema([("domain", pa.string())]), flavor="hive"),
    )
    (out / "stats.json").write_text(json.dumps({"kept_docs": len(rows)}))
    return out
