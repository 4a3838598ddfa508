"""stats.json: what went in, what came out and why, reconciled.

`input = kept + removed + quarantined` is checked here; a mismatch is a bug and fails
the job rather than being written down.
"""

from __future__ import annotations

import platform

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from curation.scorers.model_shipping import configured_models
from curation.side_by_side import side_by_side
from curation.spark_session import driver_max_heap_mb


def _counts(rows: list) -> dict[str, int]:
    """(value, count) rows of a grouping -> {value: count}, without the null value."""
    return {r[0]: int(r[1]) for r in rows if r[0] is not None}


def _ppl_metrics(prov: dict) -> dict | None:
    """A KenLM model's held-out perplexity percentiles (its provenance keeps log10)."""
    pct = prov.get("heldout_log10_ppl")
    return {f"ppl_{k}": round(10 ** v, 1) for k, v in pct.items()} if pct else None


def build_stats(job, validated: DataFrame, files: dict[str, dict], annotated: DataFrame,
                assigned: DataFrame, store, dedup_stats: dict, quality: dict, rules: list[str],
                seconds: float) -> dict:
    """`files` is what the validated stage read from each input file (its marker): the
    records counted from the raw input, and the error that stopped a corrupt file."""
    # one query each for validated and assigned: every count they give comes from one
    # grouping (a Spark job and its planning per figure cost ~0.3 s of driver time); the
    # queries are independent, so they run side by side
    multi = F.col("cluster_size") > 1
    queries: dict[str, DataFrame] = {
        "by_reason": validated.groupBy("q_reason").count(),
        "by_rule": annotated.where(F.col("removed_by").isNotNull()).groupBy(
            "removed_by", "domain").count(),
        "flagged": annotated.select(F.explode("heuristic_flags").alias("f")).groupBy("f").count(),
        "decided": assigned.groupBy("keep", "reason").agg(
            F.count("*").alias("n"), F.max("cluster_size").alias("largest"),
            F.sum(multi.cast("long")).alias("multi"),
            F.sum(F.when(multi, F.col("cluster_size"))).alias("in_multi")),
    }
    if job.mode == "full":
        queries["kept_by_domain"] = assigned.where(F.col("keep")).join(
            annotated.select("id", "domain"), "id").groupBy("domain").count()
    if quality:  # bucket x domain counts, read back from the curated table as written
        queries["buckets"] = job.spark.read.parquet(f"{job.output}/curated").groupBy(
            "domain", "quality_bucket").count()
    if job.mode == "full" and job.cfg.decontamination.eval_sets:
        queries["contamination"] = annotated.select(
            F.explode("contamination").alias("s")).groupBy("s").count()
    if job.cfg.language.model:
        queries["by_lang"] = annotated.groupBy("lang").count()
    got = dict(zip(queries, side_by_side(*(q.collect for q in queries.values())), strict=True))

    by_reason = got["by_reason"]
    n_in = sum(int(r["count"]) for r in by_reason)
    n_raw = sum(f["records"] for f in files.values())
    if n_in != n_raw:
        raise RuntimeError(f"counts do not reconcile: {n_raw} records read from the input "
                           f"files, {n_in} in the validated stage")
    quarantined = {r["q_reason"]: int(r["count"]) for r in by_reason if r["q_reason"] is not None}
    by_rule = {r: 0 for r in rules}
    by_rule_domain: dict[str, dict[str, int]] = {}
    for r in got["by_rule"]:
        by_rule[r["removed_by"]] = by_rule.get(r["removed_by"], 0) + int(r["count"])
        by_rule_domain.setdefault(r["removed_by"], {})[r["domain"]] = int(r["count"])
    flagged = {r[0]: int(r[1]) for r in got["flagged"]}
    decided = got["decided"]
    dup = {r["reason"]: int(r["n"]) for r in decided if not r["keep"]}
    # a kept document has no reason, so one row (a second would fail the reconciliation)
    kept_row = next((r for r in decided if r["keep"]), None)
    kept = int(kept_row["n"]) if kept_row else 0
    n_quar = sum(quarantined.values())
    n_filter = sum(by_rule.values())
    n_exact, n_near = dup.get("exact_dup", 0), dup.get("near_dup", 0)
    removed = n_filter + n_exact + n_near
    if n_in != kept + removed + n_quar:
        raise RuntimeError(
            f"counts do not reconcile: in={n_in} kept={kept} removed={removed} quarantined={n_quar}")
    sizes = (kept_row["largest"], kept_row["multi"], kept_row["in_multi"]) if kept_row else (0, 0, 0)
    kept_by_domain = _counts(got.get("kept_by_domain", []))
    if quality:
        table: dict[str, dict[str, int]] = {}
        for r in sorted(got["buckets"], key=lambda r: (r["domain"], r["quality_bucket"])):
            table.setdefault(r["domain"], {})[str(r["quality_bucket"])] = int(r["count"])
        quality = {**quality, "docs_by_domain_and_bucket": table}
    decontamination = {}
    if "contamination" in got:
        hits = _counts(got["contamination"])
        decontamination = {"action": job.cfg.decontamination.action,
                           "docs_by_eval_set": {k: hits.get(k, 0)
                                                for k in sorted(job.cfg.decontamination.eval_sets)}}
    models = {}
    for field, (path, md) in configured_models(job.cfg).items():
        prov = md.provenance
        models[field] = {"path": path, "kind": prov.get("kind"), "sha256": prov.get("sha256"),
                         "heldout_metrics": prov.get("metrics") or _ppl_metrics(prov)}
    by_lang = _counts(got.get("by_lang", []))
    lsh = job.lsh
    return {
        "mode": job.mode,
        "inputs": job.inputs,
        "output": job.output,
        "counts": {"input": n_in, "kept": kept, "removed": removed, "quarantined": n_quar,
                   "read_from_files": n_raw, "reconciled": True},
        "input_files": {"count": len(files), "records": {f: v["records"] for f, v in files.items()}},
        "failed_files": [{"file": f, "error": v["error"], "records_kept_before_error": v["records"] - 1}
                         for f, v in files.items() if v["error"]],
        "quarantined_by_reason": dict(sorted(quarantined.items())),
        "removed_by_filter": dict(sorted(by_rule.items())),
        "removed_by_filter_and_domain": {k: dict(sorted(v.items()))
                                         for k, v in sorted(by_rule_domain.items())},
        "flagged_by_rule": dict(sorted(flagged.items())),
        "removed_exact_dup": n_exact,
        "removed_near_dup": n_near,
        "kept_by_domain": dict(sorted(kept_by_domain.items())),
        "quality": quality,
        "decontamination": decontamination,
        "models": models,
        "docs_by_lang": dict(sorted(by_lang.items())),
        "clusters": {"largest": int(sizes[0] or 0), "multi_member": int(sizes[1] or 0),
                     "docs_in_multi_member": int(sizes[2] or 0)},
        "lsh": {"bands": lsh.bands, "rows": lsh.rows, "threshold": lsh.threshold,
                "num_perm": job.cfg.dedup.num_perm, "shingle": job.cfg.dedup.shingle,
                "ngram": job.cfg.dedup.ngram, "description": lsh.describe()},
        "dedup": dedup_stats,
        "stages": {"seconds": store.timings, "resumed": store.resumed,
                   "profile": store.profiles},
        "seconds": round(seconds, 2),
        "config": job.cfg.model_dump(mode="json"),
        "spark": {"version": job.spark.version, "master": job.spark.sparkContext.master,
                  "driver_max_heap_mb": driver_max_heap_mb(job.spark),
                  "shuffle_partitions": job.width,
                  "conf": {k: v for k, v in sorted(job.spark.sparkContext.getConf().getAll())
                           if k.endswith("memory") or k in job.cfg.spark}},
        "python": platform.python_version(),
    }
