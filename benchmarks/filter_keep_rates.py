"""Keep rate of the heuristic filters per source and per domain on the bundled sample.

Runs the plain-Python filter runner (`curation.filters.runner.evaluate`, no Spark) over
`data/sample/*.jsonl.gz` with the default or a given filter config. Exact duplicates (same
sha256 of the text; the first occurrence in file order is kept) are left out, because the
dedup stage removes them anyway and the kernel docs ship most pages twice: counting them
would weigh those pages double.

Prints, per source and per domain: documents, kept %, and the most frequent removal reasons.
With ``--examples N`` it also prints the first lines of N removed documents per rule, which
is how a misfiring rule is found.

Run: .venv/bin/python -m benchmarks.filter_keep_rates [--config filters.yaml] [--examples 2]
     [--source python3.11-doc] [--json out.json]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path

from curation.filters.config import FilterConfig
from curation.filters.decision import FilterResult
from curation.filters.runner import evaluate

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "sample"


def read_sample(sample_dir: Path = SAMPLE) -> Iterator[dict]:
    """Records of every ``*.jsonl.gz`` in sorted file order, exact duplicates left out."""
    seen: set[str] = set()
    for path in sorted(sample_dir.glob("*.jsonl.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            for line in fh:
                rec = json.loads(line)
                digest = hashlib.sha256(rec["text"].encode("utf-8")).hexdigest()
                if digest in seen:
                    continue
                seen.add(digest)
                yield rec


def keep_rates(records: list[dict], results: list[FilterResult], top: int = 3) -> dict:
    """{'by_source': {...}, 'by_domain': {...}}; each row: docs, kept, kept_pct, reasons."""
    groups: dict[str, dict[str, list[FilterResult]]] = {"by_source": defaultdict(list),
                                                         "by_domain": defaultdict(list)}
    for rec, res in zip(records, results, strict=True):
        groups["by_source"][f"{rec['domain']}/{rec['source']}"].append(res)
        groups["by_domain"][rec["domain"]].append(res)
    out: dict[str, dict] = {}
    for kind, by_key in groups.items():
        rows = {}
        for key, res in sorted(by_key.items()):
            kept = sum(r.kept for r in res)
            reasons = Counter(r.removed_by for r in res if not r.kept)
            rows[key] = {"docs": len(res), "kept": kept,
                         "kept_pct": round(100 * kept / len(res), 1),
                         "reasons": dict(reasons.most_common(top))}
        out[kind] = rows
    return out


def format_table(rates: dict) -> str:
    """Markdown tables, one per grouping, as pasted into RESULTS.md."""
    lines = []
    for kind, title in (("by_source", "domain/source"), ("by_domain", "domain")):
        lines += [f"| {title} | docs | kept % | top removal reasons |", "|---|---:|---:|---|"]
        for key, row in rates[kind].items():
            reasons = ", ".join(f"{r.split('.', 1)[-1]} {n}" for r, n in row["reasons"].items())
            lines.append(f"| {key} | {row['docs']} | {row['kept_pct']} | {reasons or '—'} |")
        lines.append("")
    return "\n".join(lines)


def removed_examples(records: list[dict], results: list[FilterResult], per_rule: int,
                     source: str | None = None, chars: int = 300) -> str:
    """The opening of up to ``per_rule`` removed documents per rule, with the measured value."""
    shown: Counter[str] = Counter()
    parts = []
    for rec, res in zip(records, results, strict=True):
        rule = res.removed_by
        if rule is None or shown[rule] >= per_rule or (source and rec["source"] != source):
            continue
        shown[rule] += 1
        head = rec["text"][:chars].replace("\n", "⏎ ")
        parts.append(f"--- {rule} = {res.stats.get(rule, float('nan')):.3f}  {rec['id']}\n{head}")
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, help="filter config YAML (default: FilterConfig())")
    ap.add_argument("--sample", type=Path, default=SAMPLE)
    ap.add_argument("--examples", type=int, default=0, help="removed examples per rule")
    ap.add_argument("--source", help="only show examples of this source")
    ap.add_argument("--top", type=int, default=3, help="removal reasons per row")
    ap.add_argument("--json", type=Path, help="also write the rates as JSON here")
    args = ap.parse_args(argv)

    cfg = FilterConfig.from_yaml(args.config) if args.config else FilterConfig()
    records = list(read_sample(args.sample))
    start = time.perf_counter()
    results = evaluate([r["text"] for r in records], [r["domain"] for r in records], cfg)
    seconds = time.perf_counter() - start
    rates = keep_rates(records, results, args.top)
    print(f"{len(records)} non-duplicate documents, filters took {seconds:.1f} s\n")
    print(format_table(rates))
    if args.examples:
        print(removed_examples(records, results, args.examples, args.source))
    if args.json:
        args.json.write_text(json.dumps(rates, indent=1) + "\n", encoding="utf-8")
    return rates


if __name__ == "__main__":
    main()
