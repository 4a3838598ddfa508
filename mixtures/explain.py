"""`sharpen mix explain`: what a recipe would do to a curated table, without writing a shard.

Token counts are estimated: each document's characters times its domain's tokens per
character, measured by tokenising a seeded sample of documents (the recipe's tokenizer, or
a BPE trained on that sample with the recipe's settings). The planner then runs on the
estimates exactly as `sharpen mix` runs it on real counts. The same numbers come back as
pandas DataFrames (`MixExplanation.frames()`) for notebooks.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mixtures.curated_table import (
    curated_dataset,
    load_stats,
    read_curated,
    resolve_curated,
    top_bucket,
)
from mixtures.doc_keys import id_hashes
from mixtures.planner import PlanInputs, plan_stage
from mixtures.recipe import Recipe, check_domains, check_quality_buckets, load_recipe
from mixtures.tokenizer import encode_documents, load_tokenizer, train_bpe

log = logging.getLogger(__name__)

SAMPLE_BYTES = 4_000_000  # text tokenised to measure tokens per character


@dataclass
class MixExplanation:
    """Per-stage plan reports on estimated token counts, and how they were estimated."""

    recipe: Recipe
    curated: str
    tokens_per_char: dict[str, float]  # per domain (measured on the sample)
    sample: dict  # documents, characters, tokens and tokenizer of the estimate
    reports: dict[str, dict] = field(default_factory=dict)

    def frames(self) -> dict:
        """The report as DataFrames: tokens (domain x bucket), epochs, repeats, top
        clusters, shortfalls; each with a `stage` column."""
        import pandas as pd

        tokens, epochs, hist, top, short = [], [], [], [], []
        for stage, r in self.reports.items():
            for d, row in r["domains"].items():
                for b, n in row["tokens_by_quality_bucket"].items():
                    tokens.append({"stage": stage, "domain": d, "quality_bucket": int(b),
                                   "tokens": n})
                epochs.append({"stage": stage, "domain": d, "share": row["share"],
                               "target": row["target"], "planned": row["planned"],
                               "planned_share": row["planned_share"],
                               "unique_tokens": row["unique_tokens"], "epochs": row["epochs"],
                               "max_repeats": row["max_repeats"]})
                if row["shortfall"]:
                    short.append({"stage": stage, "domain": d, "shortfall": row["shortfall"],
                                  "capacity": row["capacity"], "target": row["target"]})
            if r["unfilled"]:
                short.append({"stage": stage, "domain": "(stage)", "shortfall": r["unfilled"],
                              "capacity": r["planned_tokens"], "target": r["token_budget"]})
            hist += [{"stage": stage, "repeats": int(k), "documents": v}
                     for k, v in r["repeat_histogram"].items()]
            top += [{"stage": stage, **row} for row in r["top_clusters"]]
        return {
            "tokens": pd.DataFrame(tokens, columns=["stage", "domain", "quality_bucket",
                                                    "tokens"]),
            "epochs": pd.DataFrame(epochs),
            "repeats": pd.DataFrame(hist, columns=["stage", "repeats", "documents"]),
            "top_clusters": pd.DataFrame(top),
            "shortfalls": pd.DataFrame(short, columns=["stage", "domain", "shortfall",
                                                       "capacity", "target"]),
        }

    def format(self) -> str:
        """The text `sharpen mix explain` prints."""
        s = self.sample
        lines = [
            f"ESTIMATE: token counts are characters x tokens per character, measured on "
            f"{s['documents']:,} sampled documents ({s['chars']:,} characters -> "
            f"{s['tokens']:,} tokens, tokenizer: {s['tokenizer']}); nothing was written.",
            "tokens/char by domain: " + ", ".join(
                f"{d} {v:.3f}" for d, v in self.tokens_per_char.items()),
        ]
        for stage, r in self.reports.items():
            lines.append("")
            lines.append(f"stage {stage} ({r['share_rule']} shares): ~{r['planned_tokens']:,} "
                         f"of {r['token_budget']:,} budget tokens, repeat_cap {r['repeat_cap']}")
            buckets = sorted({b for row in r["domains"].values()
                              for b in row["tokens_by_quality_bucket"]}, key=int)
            head = f"  {'domain':<12}{'share':>7}{'planned':>13}{'epochs':>8}{'max_rep':>8}"
            lines.append(head + "".join(f"{'q' + b:>11}" for b in buckets) + f"{'shortfall':>11}")
            for d, row in r["domains"].items():
                q = row["tokens_by_quality_bucket"]
                lines.append(
                    f"  {d:<12}{row['planned_share']:>7.3f}{row['planned']:>13,}"
                    f"{row['epochs']:>8.2f}{row['max_repeats']:>8}"
                    + "".join(f"{q.get(b, 0):>11,}" for b in buckets) + f"{row['shortfall']:>11,}")
            hist = ", ".join(f"{k}x: {v:,}" for k, v in sorted(r["repeat_histogram"].items(),
                                                              key=lambda kv: int(kv[0])))
            lines.append(f"  documents by copies: {hist}")
            if r["top_clusters"]:
                lines.append("  most amplified clusters (keeper, cluster size, copies):")
                for t in r["top_clusters"][:5]:
                    lines.append(f"    {t['id']} [{t['domain']}] size {t['cluster_size']}, "
                                 f"{t['copies']} copies, ~{t['tokens']:,} tokens")
            if r["unfilled"]:
                lines.append(f"  SHORTFALL: every domain at its cap; ~{r['unfilled']:,} budget "
                             "tokens cannot be planned")
            for d, row in r["domains"].items():
                if row["shortfall"]:
                    lines.append(f"  SHORTFALL: {d} supplies ~{row['capacity']:,} of its "
                                 f"{row['target']:,} target tokens (given to the others)")
            if r["excluded_domains"]:
                lines.append(f"  excluded domains (documents): {r['excluded_domains']}")
        return "\n".join(lines)


def explain_mix(
    recipe: Recipe | str | Path,
    curated: str | Path,
    tokenizer_path: str | None = None,
    seed: int | None = None,
    sample_bytes: int = SAMPLE_BYTES,
) -> MixExplanation:
    """Plan every stage of `recipe` (a Recipe, e.g. edited in a notebook, or a YAML path)
    on estimated token counts of the curated table."""
    where = str(recipe) if not isinstance(recipe, Recipe) else "<recipe>"
    recipe = recipe if isinstance(recipe, Recipe) else load_recipe(recipe)
    seed = recipe.seed if seed is None else int(seed)
    table_path, stats_path = resolve_curated(curated)
    docs = read_curated(table_path, with_text=False)
    domain = docs.column("domain").to_numpy(zero_copy_only=False).astype(str)
    check_domains(recipe, sorted(set(domain)), where, str(table_path))
    check_quality_buckets(recipe, top_bucket(docs.column("quality_bucket"),
                                             load_stats(stats_path)), where, str(table_path))
    ids = np.asarray(docs.column("id").to_pylist(), dtype=object)
    n_chars = docs.column("n_chars").to_numpy()
    per_char, sample = measure_tokens_per_char(recipe, table_path, ids, domain, n_chars, seed,
                                               tokenizer_path, sample_bytes)
    rate = np.array([per_char.get(d, per_char["*"]) for d in domain]) if len(domain) else []
    est = np.rint(n_chars * rate).astype(np.int64) + 1  # + EOS
    out = MixExplanation(recipe, str(table_path), per_char, sample)
    for stage in recipe.stages:
        tokens = est if stage.max_doc_tokens is None else np.minimum(est, stage.max_doc_tokens)
        docs_in = PlanInputs(id_hashes(ids, seed, stage.name), domain, tokens,
                             docs.column("cluster_size").to_numpy(),
                             docs.column("quality_bucket").to_numpy(), ids=ids)
        out.reports[stage.name] = plan_stage(docs_in, stage).report
    return out


def measure_tokens_per_char(recipe: Recipe, table_path: Path, ids: np.ndarray,
                            domain: np.ndarray, n_chars: np.ndarray, seed: int,
                            tokenizer_path: str | None,
                            sample_bytes: int) -> tuple[dict[str, float], dict]:
    """Tokens per character per domain ("*": all) on a seeded sample of whole documents,
    about the same number of characters from each domain."""
    keys = id_hashes(ids, seed, "estimate")
    domains = sorted(set(domain))
    per_domain = max(1, sample_bytes // max(1, len(domains)))
    chosen: list[int] = []
    for d in domains:
        idx = np.flatnonzero(domain == d)
        idx = idx[np.argsort(keys[idx], kind="stable")]
        take = int(np.searchsorted(np.cumsum(n_chars[idx]), per_domain)) + 1
        chosen += idx[:take].tolist()
    wanted = pa.array([ids[i] for i in chosen], pa.string())
    table = curated_dataset(table_path).to_table(columns=["id", "domain", "text"],
                                                 filter=pc.field("id").isin(wanted))
    texts = table.column("text").cast(pa.string()).fill_null("").to_pylist()
    sdom = table.column("domain").cast(pa.string()).to_pylist()
    source = tokenizer_path or recipe.tokenizer.path
    if source:
        tok, name = load_tokenizer(source), str(source)
    else:
        spec = recipe.tokenizer
        tok = train_bpe(texts, spec.vocab_size, spec.min_frequency)
        name = f"BPE {spec.vocab_size} trained on the sample (the mix trains its own)"
    _, offsets = encode_documents(tok, texts, append_eos=False)
    n_tok = np.diff(offsets)
    chars = np.array([len(t) for t in texts])
    rates = {"*": float(n_tok.sum() / max(1, chars.sum()))}
    for d in domains:
        m = np.array([x == d for x in sdom], dtype=bool)
        if chars[m].sum():
            rates[d] = float(n_tok[m].sum() / chars[m].sum())
    sample = {"documents": len(texts), "chars": int(chars.sum()), "tokens": int(n_tok.sum()),
              "tokenizer": name}
    log.info("tokens per character measured on %d documents", len(texts))
    return {k: rates[k] for k in ["*", *domains] if k in rates}, sample
