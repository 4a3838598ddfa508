"""The Spark engine of `sharpen mix`: tokenise, expand copies and write shards on executors.

The driver never holds a text or a token array. It holds aggregates, the tokenizer's
training sample (at most `tokenizer.sample_bytes`), and for planning five numeric columns
per document (id hash, domain, token count, cluster size, quality bucket: ~30 bytes each).
The plan that comes back is a few numbers per domain (`planner.DomainParams`), broadcast
to the executors, which derive each document's repeats from them (`repeats_from_params`),
key and shard every copy (`stage_copies`), and write each shard with the same function
the pyarrow engine uses (`stage_writer.write_shard_file`): equal rows, equal bytes.

Executors write shard files into the stage's hidden `.partial` directory, so the output
directory must be on a filesystem every executor and the driver see (local disk for
local[*], a shared mount on a cluster). The driver renames them in shard order and writes
the manifest last; a killed job leaves no stage that looks complete.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa

from mixtures.curated_table import OPTIONAL_COLUMNS, REQUIRED_COLUMNS, CuratedTableError
from mixtures.doc_keys import id_hashes, shard_of
from mixtures.materialize import (
    MixInputs,
    check_table_against_recipe,
    plan_stages,
    stage_doc_tokens,
    write_mix,
)
from mixtures.planner import DomainParams, PlanInputs, repeats_from_params
from mixtures.recipe import StageSpec
from mixtures.shard_format import SCHEMA
from mixtures.stage_copies import n_shards
from mixtures.stage_writer import StageWriter, write_shard_file
from mixtures.token_bytes import to_binary, to_token_lists, truncate
from mixtures.tokenizer import (
    encode_documents,
    load_tokenizer,
    sample_for_training,
    special_token_ids,
    train_bpe,
)

log = logging.getLogger(__name__)

_SIGN = np.uint64(1 << 63)  # uint64 <-> order-preserving int64 (Spark has no unsigned long)
TOKENIZED = ("id string, domain string, source string, quality_bucket int, cluster_size long, "
             "n_tokens long, tokens binary")
PLAN_COLUMNS = "h long, domain string, n_tokens long, cluster_size long, quality_bucket int"
COPIES = ("shard long, key long, h long, copy int, tokens binary, doc_id string, "
          "domain string, source string, quality_bucket int, cluster_size long")
WRITTEN = ("shard long, file string, sha256 string, rows long, tokens long, "
           "tokens_by_domain string, tokens_by_quality_bucket string")
SPARK_CONF = {"spark.sql.sources.partitionColumnTypeInference.enabled": "false"}


def to_signed(x: np.ndarray) -> np.ndarray:
    return (np.asarray(x, dtype=np.uint64) ^ _SIGN).view(np.int64)


def to_unsigned(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.int64).view(np.uint64) ^ _SIGN


def materialise_spark(inputs: MixInputs, master: str | None) -> dict:
    """Plan and write every stage with Spark; returns plan.json's content."""
    from pyspark import StorageLevel

    from curation.spark_session import get_spark

    spark = get_spark(master, app_name="sharpen-mix", conf=SPARK_CONF)
    docs = _read(spark, inputs.table_path)
    n_docs, domains, top = _check(docs, inputs)
    check_table_against_recipe(inputs, domains, top)
    tok = (load_tokenizer(inputs.tokenizer_source) if inputs.tokenizer_source
           else _train_tokenizer(docs, inputs))
    tok_json = spark.sparkContext.broadcast(tok.to_str())
    eos = special_token_ids(tok)["eos"]  # the JSON alone does not say which token is eos
    # Parquet splits only at row groups: a table of few large files would tokenise on a few
    # cores. Plans and shards do not depend on partitioning, so spread it before tokenising.
    cores = spark.sparkContext.defaultParallelism
    if docs.rdd.getNumPartitions() < 2 * cores:
        docs = docs.repartition(2 * cores)
    tokenized = docs.mapInArrow(lambda it: _tokenize(it, tok_json.value, eos), TOKENIZED)
    tokenized = tokenized.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        from pyspark.sql import functions as F

        row = tokenized.agg(F.sum(F.greatest("n_tokens", F.lit(0))).alias("tokens"),
                            F.sum((F.col("n_tokens") < 0).cast("long")).alias("nulls")).collect()[0]
        if row["nulls"]:
            raise CuratedTableError(f"{inputs.table_path}: column 'text' has {row['nulls']} "
                                    "null value(s)")
        n_tokens = int(row["tokens"] or 0)
        log.info("tokenised %d documents into %d tokens on the executors", n_docs, n_tokens)
        def stage_docs(stage: StageSpec) -> PlanInputs:
            docs = _plan_inputs(tokenized, stage, inputs.seed)
            _check_unique_ids(tokenized, docs.id_hash, inputs.table_path)
            return docs

        plans = plan_stages(inputs, stage_docs)
        for stage, plan in zip(inputs.recipe.stages, plans, strict=True):
            _name_top_clusters(tokenized, plan.report, stage, inputs.seed)

        def write_stages(writers: dict[str, StageWriter]) -> None:
            for stage, plan in zip(inputs.recipe.stages, plans, strict=True):
                with writers[stage.name] as writer:
                    _write_stage(spark, tokenized, stage, plan.params, plan.planned_tokens,
                                 int(plan.repeats.sum()), inputs, eos, writer)

        return write_mix(inputs, tok, plans, n_docs, n_tokens, write_stages)
    finally:
        tokenized.unpersist()


def _read(spark, path: Path):
    """The curated table with every column a mix reads (optional ones defaulted)."""
    from pyspark.sql import functions as F

    try:
        df = spark.read.parquet(str(path))
    except Exception as e:  # AnalysisException: unreadable or no Parquet files
        raise CuratedTableError(f"{path}: cannot read curated Parquet dataset: {e}") from e
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise CuratedTableError(f"{path}: curated table lacks column(s) {missing} "
                                f"(has {df.columns})")
    defaults = {"source": F.lit("unknown"), "cluster_size": F.lit(1), "quality_bucket": F.lit(0)}
    cols = [F.col(c).cast("string").alias(c) for c in REQUIRED_COLUMNS]
    for name in OPTIONAL_COLUMNS[:3]:
        typ = {"source": "string", "cluster_size": "long", "quality_bucket": "int"}[name]
        value = F.col(name) if name in df.columns else defaults[name]
        cols.append(F.coalesce(value.cast(typ), defaults[name].cast(typ)).alias(name))
    return df.select(*cols)


def _check(docs, inputs: MixInputs) -> tuple[int, list[str], int]:
    """Row count, null ids and domains, the domains and the top quality bucket: one pass
    over three small columns (texts are checked as they are tokenised, repeated ids as
    the first stage's id hashes are collected)."""
    from pyspark.sql import functions as F

    from mixtures.curated_table import top_bucket

    path = inputs.table_path
    row = docs.agg(
        F.count(F.lit(1)).alias("n"),
        *(F.sum(F.col(c).isNull().cast("long")).alias(c) for c in ("id", "domain")),
        F.max("quality_bucket").alias("top"),
        F.collect_set("domain").alias("domains"),
    ).collect()[0]
    if not row["n"]:
        raise CuratedTableError(f"{path}: curated table has no rows")
    for c in ("id", "domain"):
        if row[c]:
            raise CuratedTableError(f"{path}: column {c!r} has {row[c]} null value(s)")
    domains = sorted(row["domains"])
    top = top_bucket(pa.array([row["top"] or 0]), inputs.stats)
    log.info("curated table %s: %d documents, domains %s", path, row["n"], domains)
    return int(row["n"]), domains, top


def _check_unique_ids(tokenized, h: np.ndarray, path: Path) -> None:
    """Equal id hashes mean repeated ids (a 64-bit collision is ~n^2 / 2^65); only then
    ask Spark which ids repeat, to name them."""
    if len(np.unique(h)) == len(h):
        return
    repeated = tokenized.groupBy("id").count().filter("count > 1")
    examples = [r["id"] for r in repeated.limit(3).collect()]
    raise CuratedTableError(
        f"{path}: column 'id' has {repeated.count()} repeated value(s), e.g. {examples}: "
        "plans are keyed by document id (curation quarantines repeated ids)")


def _train_tokenizer(docs, inputs: MixInputs):
    """Train the BPE on exactly the sample the pyarrow engine takes: the documents with
    the smallest (seed, id) keys up to sample_bytes. Executors keep only keys below a
    threshold; it is raised until the kept documents hold enough bytes."""
    from pyspark.sql import functions as F

    spec, seed = inputs.recipe.tokenizer, inputs.seed
    total = int(docs.agg(F.sum(F.octet_length("text"))).collect()[0][0] or 0)
    fraction = min(1.0, 2.0 * spec.sample_bytes / max(1, total))
    while True:
        limit = to_signed(np.array([min(2**64 - 1, int(fraction * 2**64))], dtype=np.uint64))[0]
        kept = docs.select("id", "text").where("text IS NOT NULL").mapInArrow(
            lambda it, s=seed, lim=int(limit): _below(it, s, lim), "id string, text string")
        rows = kept.toArrow()
        got = int(sum(len(t.encode("utf-8")) for t in rows.column("text").to_pylist()))
        if got >= spec.sample_bytes or fraction >= 1.0:
            break
        fraction = min(1.0, fraction * 4)
    texts, ids = rows.column("text").to_pylist(), rows.column("id").to_pylist()
    sample = sample_for_training(texts, ids, spec.sample_bytes, seed)
    log.info("training BPE (vocab %d) on %d documents", spec.vocab_size, len(sample))
    return train_bpe(sample, spec.vocab_size, spec.min_frequency)


def _below(batches: Iterator[pa.RecordBatch], seed: int, limit: int) -> Iterator[pa.RecordBatch]:
    for b in batches:
        keys = to_signed(id_hashes(b.column(0).to_pylist(), seed, "tokenizer"))
        yield b.filter(pa.array(keys < limit))


_TOKENIZERS: dict[int, object] = {}


def _tokenize(batches: Iterator[pa.RecordBatch], tok_json: str, eos: int
              ) -> Iterator[pa.RecordBatch]:
    """Executor side: documents -> uint32 token bytes (EOS appended), one row each."""
    from tokenizers import Tokenizer

    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one core per task: Spark runs the tasks
    tok = _TOKENIZERS.get(hash(tok_json))
    if tok is None:
        tok = _TOKENIZERS[hash(tok_json)] = Tokenizer.from_str(tok_json)
    for b in batches:
        texts = b.column("text").to_pylist()
        values, offsets = encode_documents(tok, [t or "" for t in texts], eos=eos)
        n_tokens = np.where([t is None for t in texts], -1, np.diff(offsets))  # -1: null text
        yield pa.RecordBatch.from_arrays(
            [*(b.column(c) for c in ("id", "domain", "source", "quality_bucket",
                                     "cluster_size")),
             pa.array(n_tokens, pa.int64()), to_binary(values, offsets)],
            names=["id", "domain", "source", "quality_bucket", "cluster_size", "n_tokens",
                   "tokens"])


def _plan_inputs(tokenized, stage: StageSpec, seed: int) -> PlanInputs:
    """Collect the planner's numeric columns for one stage (no text, no tokens)."""
    cols = tokenized.select("id", "domain", "n_tokens", "cluster_size", "quality_bucket")
    table = cols.mapInArrow(lambda it, s=seed, n=stage.name: _hash_ids(it, s, n),
                            PLAN_COLUMNS).toArrow()
    return PlanInputs(
        to_unsigned(table.column("h").to_numpy()),
        table.column("domain").to_numpy(zero_copy_only=False).astype(str),
        stage_doc_tokens(table.column("n_tokens").to_numpy(), stage.max_doc_tokens),
        table.column("cluster_size").to_numpy(),
        table.column("quality_bucket").to_numpy(),
    )


def _hash_ids(batches: Iterator[pa.RecordBatch], seed: int, stage: str):
    for b in batches:
        h = to_signed(id_hashes(b.column("id").to_pylist(), seed, stage))
        yield pa.RecordBatch.from_arrays(
            [pa.array(h), b.column("domain"), b.column("n_tokens"), b.column("cluster_size"),
             b.column("quality_bucket")],
            names=["h", "domain", "n_tokens", "cluster_size", "quality_bucket"])


def _name_top_clusters(tokenized, report: dict, stage: StageSpec, seed: int) -> None:
    """The report names its top clusters by id hash; look up their ids (a few rows)."""
    wanted = {int(t["id"][1:], 16) for t in report["top_clusters"]}
    if not wanted:
        return
    targets = to_signed(np.array(sorted(wanted), dtype=np.uint64))
    found = tokenized.select("id").mapInArrow(
        lambda it, s=seed, n=stage.name, t=targets: _ids_with_hash(it, s, n, t),
        "h long, id string").collect()
    names = {int(to_unsigned(np.array([r["h"]]))[0]): r["id"] for r in found}
    for t in report["top_clusters"]:
        t["id"] = names.get(int(t["id"][1:], 16), t["id"])


def _ids_with_hash(batches, seed: int, stage: str, targets: np.ndarray):
    for b in batches:
        h = to_signed(id_hashes(b.column("id").to_pylist(), seed, stage))
        keep = np.isin(h, targets)
        if keep.any():
            yield pa.RecordBatch.from_arrays([pa.array(h[keep]), b.column("id").filter(keep)],
                                             names=["h", "id"])


def _write_stage(spark, tokenized, stage: StageSpec, params: dict[str, DomainParams],
                 planned_tokens: int, planned_rows: int, inputs: MixInputs, eos: int,
                 writer: StageWriter) -> None:
    """Expand copies on the executors, shuffle them to their shard, write each shard there;
    then adopt the files in shard order and check that nothing was lost."""
    k = n_shards(planned_tokens, inputs.recipe.shard_tokens)
    seed, partial = inputs.seed, str(writer.partial_dir)
    spec = spark.sparkContext.broadcast((stage, params))
    copies = tokenized.mapInArrow(
        lambda it: _expand(it, *spec.value, seed, k, eos), COPIES)
    parts = max(1, min(k, 4 * spark.sparkContext.defaultParallelism))
    ordered = copies.repartition(parts, "shard").sortWithinPartitions("shard", "key", "h", "copy")
    written = ordered.mapInArrow(lambda it: _write_shards(it, partial), WRITTEN).collect()
    written = sorted(written, key=lambda r: r["shard"])
    rows, tokens = sum(r["rows"] for r in written), sum(r["tokens"] for r in written)
    if (rows, tokens) != (planned_rows, planned_tokens):
        raise RuntimeError(f"stage {stage.name}: executors wrote {rows} rows / {tokens} tokens, "
                           f"the plan has {planned_rows} / {planned_tokens}")
    for r in written:
        writer.adopt_shard(Path(partial) / r["file"], {
            "sha256": r["sha256"], "rows": r["rows"], "tokens": r["tokens"],
            "tokens_by_domain": json.loads(r["tokens_by_domain"]),
            "tokens_by_quality_bucket": json.loads(r["tokens_by_quality_bucket"]),
        })
    spec.unpersist()
    log.info("stage %s: %d shards, %d rows, %d tokens written by the executors", stage.name,
             len(written), rows, tokens)


def _expand(batches, stage: StageSpec, params: dict[str, DomainParams], seed: int, k: int,
            eos: int):
    """Executor side: each document's repeats from the plan, then one row per copy with
    its key and shard, its tokens cut to the stage's max_doc_tokens (EOS kept last)."""
    from mixtures.doc_keys import copy_keys

    for b in batches:
        h = id_hashes(b.column("id").to_pylist(), seed, stage.name)
        tokens, lengths = truncate(b.column("tokens"), b.column("n_tokens").to_numpy(),
                                   stage.max_doc_tokens, eos)
        docs = PlanInputs(h, b.column("domain").to_numpy(zero_copy_only=False), lengths,
                          b.column("cluster_size").to_numpy(), b.column("quality_bucket")
                          .to_numpy())
        repeats = repeats_from_params(docs, stage, params).astype(np.int64)
        if not repeats.any():
            continue
        rows = np.repeat(np.arange(len(repeats)), repeats)
        copy = np.arange(len(rows)) - np.repeat(np.cumsum(repeats) - repeats, repeats)
        keys = copy_keys(h[rows], copy)
        take = pa.array(rows)
        yield pa.RecordBatch.from_arrays(
            [pa.array(shard_of(keys, k)), pa.array(to_signed(keys)), pa.array(to_signed(h[rows])),
             pa.array(copy.astype(np.int32)), tokens.take(take),
             *(b.column(c).take(take) for c in ("id", "domain", "source", "quality_bucket",
                                                "cluster_size"))],
            names=["shard", "key", "h", "copy", "tokens", "doc_id", "domain", "source",
                   "quality_bucket", "cluster_size"])


def _write_shards(batches, partial: str):
    """Executor side: rows arrive sorted by (shard, key, h, copy); write each shard whole."""
    current, pending = None, []

    def flush():
        table = pa.Table.from_batches(pending)
        shard = pa.table({
            "tokens": to_token_lists(table.column("tokens")),
            "doc_id": table.column("doc_id"), "domain": table.column("domain"),
            "source": table.column("source"), "quality_bucket": table.column("quality_bucket"),
            "cluster_size": table.column("cluster_size"), "copy": table.column("copy"),
        })
        name = f"part-{current:06d}.arrow"
        entry = write_shard_file(shard, Path(partial) / name, SCHEMA, "pretrain")
        return pa.RecordBatch.from_pylist([{
            "shard": current, "file": name, "sha256": entry["sha256"], "rows": entry["rows"],
            "tokens": entry["tokens"],
            "tokens_by_domain": json.dumps(entry["tokens_by_domain"]),
            "tokens_by_quality_bucket": json.dumps(entry["tokens_by_quality_bucket"]),
        }])

    for b in batches:
        shard_col = b.column("shard").to_numpy()
        cuts = np.flatnonzero(np.diff(shard_col)) + 1
        for piece_start, piece_stop in zip(np.r_[0, cuts], np.r_[cuts, len(shard_col)],
                                           strict=True):
            piece = b.slice(int(piece_start), int(piece_stop - piece_start))
            s = int(shard_col[piece_start])
            if current is not None and s != current:
                yield flush()
                pending = []
            current = s
            pending.append(piece)
    if pending:
        yield flush()
