"""Mixture materialisation on Spark (issue 9, point 6), side by side in one run:

- tokens/s per core of `sharpen mix --engine spark` (tokenise, plan, expand copies, global
  shuffle, write checksummed shards) against HF `tokenizers` `encode_batch` in a plain loop
  over the same documents, one thread (target: >= 0.8x per core at >= 100 MB of text);
- local[1] -> local[2] scaling;
- planner time on a curated table of one million rows (target: < 30 s);
- driver peak memory at two input sizes 5x apart (must not grow with the input).

The corpus is real text (CPython stdlib, Debian copyright files, Linux kernel docs; the
labelled dedup set's sources, `benchmarks.dedup_labelled_set.iter_documents`), cycled with
new ids to reach each size, written as a curated table (hive-partitioned by domain) under
benchmarks/out/mix_speed/ (never committed). Every mix runs in its own process, sampled for
wall time, CPU seconds and peak RSS by role (Python driver, JVM, Python workers).

Run: .venv/bin/python -m benchmarks.mix_speed [--large-mb 120 --small-mb 24]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import yaml

from benchmarks.dedup_labelled_set import iter_documents
from benchmarks.machine_info import machine_info
from benchmarks.process_tree_memory import TreeSampler

OUT = Path(__file__).resolve().parent / "out" / "mix_speed"
DOMAIN_OF = {"cpython-3.11.7": "code", "cpython-3.11.2-debian": "code",
             "debian-copyright": "legal", "linux-doc-rst": "reference",
             "linux-doc-html-sources": "reference"}
log = logging.getLogger("mix_speed")


def build_table(out: Path, megabytes: float, seed: int = 0) -> dict:
    """A curated table of about `megabytes` MB of real text (documents cycled, new ids)."""
    if (out / "stats.json").is_file():
        return json.loads((out / "stats.json").read_text())
    base = list(iter_documents())
    rng = np.random.default_rng(seed)
    rows, size, cycle = [], 0, 0
    while size < megabytes * 1e6:
        for i in rng.permutation(len(base)):  # every size holds every domain
            d = base[int(i)]
            rows.append({"id": f"{d.id}#{cycle}", "domain": DOMAIN_OF[d.source],
                         "source": d.source, "text": d.text,
                         "cluster_size": int(rng.choice([1, 1, 1, 2, 3, 8])),
                         "quality_bucket": int(rng.integers(0, 5))})
            size += len(d.text.encode("utf-8"))
            if size >= megabytes * 1e6:
                break
        cycle += 1
    table = pa.Table.from_pylist(rows)
    ds.write_dataset(table, out / "curated", format="parquet", max_rows_per_file=4000,
                     max_rows_per_group=4000, basename_template="part-{i}.parquet",
                     partitioning=ds.partitioning(pa.schema([("domain", pa.string())]),
                                                  flavor="hive"))
    stats = {"documents": len(rows), "text_bytes": size, "quality": {"buckets": 5}}
    (out / "stats.json").write_text(json.dumps(stats))
    return stats


def train_tokenizer(table: Path, path: Path) -> Path:
    if path.is_file():
        return path
    from mixtures.tokenizer import sample_for_training, save_tokenizer, train_bpe

    t = ds.dataset(str(table / "curated"), partitioning="hive").to_table(columns=["id", "text"])
    sample = sample_for_training(t.column("text").to_pylist(), t.column("id").to_pylist(),
                                 10_000_000, 0)
    return save_tokenizer(train_bpe(sample, 32_000), path)


def hf_loop(table: Path, tokenizer: Path, method: str = "encode_batch") -> dict:
    """The peer: encode_batch over every text of the table, 2048 at a time, one thread
    (`encode_batch_fast`, which skips character offsets, is what the mix calls)."""
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer))
    texts = ds.dataset(str(table / "curated"), partitioning="hive").to_table(
        columns=["text"]).column("text").to_pylist()
    wall, cpu = time.perf_counter(), time.process_time()
    tokens = 0
    for i in range(0, len(texts), 2048):
        for enc in getattr(tok, method)(texts[i:i + 2048], add_special_tokens=False):
            tokens += len(enc.ids) + 1  # + EOS, as the mix counts
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"tokens": tokens, "wall_s": wall, "cpu_s": cpu, "tokens_per_s": tokens / wall,
            "tokens_per_cpu_s": tokens / cpu}


def run_mix(table: Path, recipe: Path, tokenizer: Path, out: Path, engine: str,
            master: str) -> dict:
    """One `sharpen mix` in a child process; wall, CPU seconds, peak RSS by role."""
    import shutil

    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "sharpen.cli", "mix", "--curated", str(table), "--recipe",
           str(recipe), "--output", str(out), "--tokenizer", str(tokenizer), "--engine", engine,
           "--master", master]
    env = dict(os.environ, SPARK_LOCAL_IP="127.0.0.1", TOKENIZERS_PARALLELISM="false")
    wall = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    with TreeSampler(proc.pid) as sampler:
        stdout, stderr = proc.communicate()
    stats = sampler.result
    wall = time.perf_counter() - wall
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{stderr[-3000:]}")
    plan = json.loads((out / "plan.json").read_text())
    tokens = sum(s["tokens"] for s in plan["stages"].values())
    mib = 1 << 20
    return {"engine": engine, "master": master, "wall_s": wall, "tokens": tokens,
            "cpu_s": stats.cpu_seconds,
            "peak_mib": {k: round(v / mib) for k, v in sorted(stats.peak_sum.items())},
            "shards": {k: s["shards"] for k, s in plan["stages"].items()},
            "shard_sha256": [json.loads((out / k / "manifest.json").read_text())["shards"][0]
                             ["sha256"] for k in plan["stages"]]}


def write_recipe(path: Path, tokens: int) -> Path:
    """One stage holding 90% of the table's tokens at natural shares, and a second, smaller
    annealing stage: every document is tokenised once and most are written."""
    path.write_text(yaml.safe_dump({
        "seed": 1, "shard_tokens": 8_000_000,
        "stages": [
            {"name": "broad", "token_budget": int(0.9 * tokens), "share_rule": "temperature",
             "temperature": 1.0, "repeat_cap": 1, "cluster_size_weight": 0.0},
            {"name": "anneal", "token_budget": int(0.1 * tokens), "share_rule": "temperature",
             "temperature": 2.0, "min_quality_bucket": 2},
        ]}))
    return path


def planner_million(n: int = 1_000_000) -> dict:
    """plan_stage on n documents in 8 domains: id hashing included."""
    from mixtures.doc_keys import id_hashes
    from mixtures.planner import PlanInputs, plan_stage
    from mixtures.recipe import StageSpec

    rng = np.random.default_rng(0)
    domains = np.array([f"d{i}" for i in range(8)])
    domain = domains[rng.integers(0, 8, n)]
    tokens = rng.lognormal(6.5, 1.2, n).astype(np.int64) + 2
    ids = [f"doc-{i}" for i in range(n)]
    stage = StageSpec(name="broad", token_budget=int(tokens.sum() * 0.8),
                      domain_shares={d: 1 / 8 for d in domains},
                      quality_bucket_weights={0: 0.5, 4: 2.0})
    t = time.perf_counter()
    docs = PlanInputs(id_hashes(ids, 0, "broad"), domain, tokens,
                      rng.choice([1, 1, 2, 5, 40], n), rng.integers(0, 5, n))
    t_hash = time.perf_counter() - t
    plan = plan_stage(docs, stage)
    total = time.perf_counter() - t
    worst = max(abs(r["planned"] - r["goal"]) for r in plan.report["domains"].values())
    return {"documents": n, "seconds": total, "hash_seconds": t_hash,
            "worst_domain_error_tokens": worst, "budget": stage.token_budget}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--large-mb", type=float, default=120.0)
    ap.add_argument("--small-mb", type=float, default=24.0)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    OUT.mkdir(parents=True, exist_ok=True)
    print(machine_info())
    large = OUT / f"curated_{args.large_mb:g}mb"
    small = OUT / f"curated_{args.small_mb:g}mb"
    sizes = {"large": build_table(large, args.large_mb), "small": build_table(small, args.small_mb)}
    tokenizer = train_tokenizer(small, OUT / "tokenizer.json")
    results: dict = {"sizes": sizes}
    results["hf_loop"] = hf_loop(large, tokenizer)
    results["hf_loop_fast"] = hf_loop(large, tokenizer, "encode_batch_fast")
    log.info("HF loops: %s %s", results["hf_loop"], results["hf_loop_fast"])
    recipe = write_recipe(OUT / "recipe_large.yaml", results["hf_loop"]["tokens"])
    for master in ("local[1]", "local[2]"):
        r = run_mix(large, recipe, tokenizer, OUT / f"mix_{master[6]}", "spark", master)
        results[f"spark_{master}"] = r
        log.info("spark %s: %s", master, r)
    small_tokens = hf_loop(small, tokenizer)["tokens"]
    small_recipe = write_recipe(OUT / "recipe_small.yaml", small_tokens)
    results["spark_small_local[2]"] = run_mix(small, small_recipe, tokenizer, OUT / "mix_small",
                                              "spark", "local[2]")
    results["pyarrow_small"] = run_mix(small, small_recipe, tokenizer, OUT / "mix_small_pa",
                                       "pyarrow", "local[1]")
    results["planner_1m"] = planner_million()
    (OUT / f"results_{args.large_mb:g}mb.json").write_text(json.dumps(results, indent=2))
    report(results)
    return 0


def report(r: dict) -> None:
    hf = r["hf_loop"]
    print(f"\ncorpus: large {r['sizes']['large']['text_bytes'] / 1e6:.1f} MB "
          f"({r['sizes']['large']['documents']:,} docs), small "
          f"{r['sizes']['small']['text_bytes'] / 1e6:.1f} MB; HF loop over the large table: "
          f"{hf['tokens']:,} tokens in {hf['wall_s']:.1f} s "
          f"({hf['tokens_per_s'] / 1e6:.2f}M tokens/s, one thread); encode_batch_fast: "
          f"{r['hf_loop_fast']['wall_s']:.1f} s "
          f"({r['hf_loop_fast']['tokens_per_s'] / 1e6:.2f}M tokens/s)\n")
    fast = r["hf_loop_fast"]
    print("| run | wall s | CPU s | tokens written | tokens/s per core | vs HF encode_batch | "
          "vs HF encode_batch_fast | driver peak MiB | JVM peak MiB | workers peak MiB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for key in ("spark_local[1]", "spark_local[2]", "spark_small_local[2]", "pyarrow_small"):
        x = r[key]
        cores = 2 if "[2]" in x["master"] and x["engine"] == "spark" else 1
        per_core = x["tokens"] / x["wall_s"] / cores
        p = x["peak_mib"]
        print(f"| {key} | {x['wall_s']:.1f} | {x['cpu_s']:.1f} | {x['tokens']:,} | "
              f"{per_core / 1e6:.2f}M | {per_core / hf['tokens_per_s']:.2f}x | "
              f"{per_core / fast['tokens_per_s']:.2f}x | "
              f"{p.get('driver', 0)} | {p.get('jvm', 0)} | {p.get('python_worker', 0)} |")
    one, two = r["spark_local[1]"], r["spark_local[2]"]
    print(f"\nlocal[1] -> local[2]: {one['wall_s'] / two['wall_s']:.2f}x in wall time "
          f"(CPU s {one['cpu_s']:.0f} -> {two['cpu_s']:.0f}); shards identical: "
          f"{one['shard_sha256'] == two['shard_sha256']}")
    pm = r["planner_1m"]
    print(f"planner on {pm['documents']:,} rows: {pm['seconds']:.1f} s (id hashing "
          f"{pm['hash_seconds']:.1f} s); worst domain off its goal by "
          f"{pm['worst_domain_error_tokens']:.0f} of {pm['budget']:,} budget tokens")


if __name__ == "__main__":
    raise SystemExit(main())
