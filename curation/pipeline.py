"""The curation job: read+validate -> filters -> exact dedup -> MinHash LSH -> components
-> keepers and signals -> curated table, removed/, quarantine/, dedup/ and stats.json.
(In dedup mode the quality signals are computed after the components, for the documents
of multi-member clusters only: `dedup/keeper_quality.py`.)

Each stage is checkpointed by `StageStore`, so a killed job resumes where it stopped.
Two modes share the code: `full` (the whole job, `sharpen curate`) and `dedup`
(validation and dedup only, `sharpen curate dedup`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from curation.annotate import (
    DOCUMENT_COLUMNS,
    annotate_batches,
    annotation_ddl,
    valid_documents,
    with_priority,
)
from curation.broadcast_small import broadcast_if_small
from curation.config import CurationConfig
from curation.dedup.connected_components import connected_components
from curation.dedup.exact import exact_groups, keeper_order, ranked_keys
from curation.dedup.keeper_quality import clustered_quality
from curation.dedup.lsh import bucket_members
from curation.dedup.lsh_params import lsh_params_for
from curation.dedup.minhash import ShingleSpec
from curation.dedup.verify import candidate_shingles, verified_edges
from curation.errors import JobFailed, is_spark_error, root_cause
from curation.filters.runner import rule_names
from curation.io.arrow_parquet import SUMMARY_DDL, arrow_filesystem, writing
from curation.io.hadoop_fs import HadoopFS
from curation.io.jsonl_splits import Split, plan_splits
from curation.io.output_checks import check_output
from curation.io.output_lock import OutputLock
from curation.io.reader import (
    InputFiles,
    list_input_files,
    parquet_row_counts,
    read_documents,
    spread_rows,
)
from curation.outputs import write_outputs
from curation.scorers import registry
from curation.scorers.lang_id import RULE as LANG_RULE
from curation.scorers.model_shipping import configured_models, ship_models
from curation.scorers.registry import QUALITY_ENTRIES, build_scorers
from curation.stage_profile import python_timed
from curation.stage_store import StageStore
from curation.stats import build_stats

log = logging.getLogger(__name__)

# Read tasks per core for the stages that run per-byte Python (annotation, verification):
# enough that no core idles at the end of a stage, few enough that per-task costs stay
# small. 80 MB of text read back as 3 tasks on 2 cores took 1.5x the wall time of 29.
PYTHON_TASKS_PER_CORE = 8
# Up to this many repeated ids (~100 MB of ids and input positions) are broadcast.
BROADCAST_REPEATED_IDS = 2_000_000


def code_version() -> str:
    """sha256 of the curation package's source: a stage is reused only by the code that
    wrote it (no version number to remember to bump)."""
    h = hashlib.sha256()
    root = Path(__file__).parent
    for f in sorted(root.rglob("*.py")):
        h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


class CurationJob:
    def __init__(self, spark: SparkSession, inputs: list[str], output: str,
                 cfg: CurationConfig, mode: str = "full"):
        if mode not in ("full", "dedup"):
            raise ValueError(f"mode must be 'full' or 'dedup', got {mode!r}")
        self.spark, self.inputs, self.output, self.cfg, self.mode = spark, inputs, output.rstrip("/"), cfg, mode
        self.fs = HadoopFS(spark)
        self.lsh = lsh_params_for(cfg.dedup)
        self.files: InputFiles | None = None  # listed once, by run()
        self.width: int | None = None  # the shuffle width, set by run() from the input
        self.splits: list[Split] = []
        self.stats: dict = {}
        self.shipped_models: dict[str, str] = {}  # model dir -> archive shipped to executors
        self._cached: list[DataFrame] = []  # persisted by _cache until _release

    def _cache(self, df: DataFrame) -> DataFrame:
        """Persist a narrow table several later queries read (per-document ids and keys, no
        text), so each reads it instead of re-scanning and re-joining its inputs."""
        self._cached.append(df.persist())
        return df

    def _fingerprint(self) -> str:
        sig = [list(f) for f in self.files.all]
        # a retrained model at the same path must not reuse stages scored by the old one
        models = {f: md.sha256 for f, (_, md) in configured_models(self.cfg).items()}
        blob = json.dumps([code_version(), self.mode, self.cfg.model_dump(mode="json"), sig,
                           models])
        return hashlib.sha256(blob.encode()).hexdigest()[:24]

    # -- stages ---------------------------------------------------------------------
    def _validated(self, tmp: str | None = None) -> DataFrame | int:
        """Every input record, parsed once: valid, or quarantined with a reason. With `tmp`
        the parsing tasks write the stage's files there themselves (pyarrow: no JVM
        Parquet encoding of the texts) and the rows written are returned."""
        return read_documents(self.spark, self.splits, [p for p, _, _ in self.files.parquet],
                              self.cfg, write_to=tmp and self.fs.qualify(tmp))

    @staticmethod
    def _repeated_ids(validated: DataFrame) -> DataFrame:
        """(id, first input position) of each id that valid records repeat: read from the
        committed `validated` columns (no text), one row per repeated id."""
        valid = validated.where((F.col("kind") == "doc") & F.col("q_reason").isNull())
        return valid.groupBy("id").agg(
            F.count("*").alias("_n"), F.min(F.struct("file", "block", "pos")).alias("_first"),
        ).where("_n > 1").drop("_n")

    def _mark_repeated(self, docs: DataFrame, repeated: DataFrame,
                       n_repeated: int | None = None) -> DataFrame:
        """Quarantine every copy of a repeated id but the first in input order. The table
        of repeated ids is broadcast when small (so no text moves), joined by a shuffle
        when a messy input repeats millions of ids. `n_repeated`: the table's rows, when
        known; with none the rows are returned as they are, so the quarantine's scan reads
        no text (a repeated copy's preview is its only column taken from the text)."""
        if n_repeated == 0:
            return docs
        marked = docs.join(broadcast_if_small(repeated, BROADCAST_REPEATED_IDS), "id", "left")
        again = F.col("q_reason").isNull() & F.col("_first").isNotNull() & (
            F.struct("file", "block", "pos") != F.col("_first"))
        return marked.select(
            *[c for c in docs.columns if c not in ("q_reason", "q_detail", "q_raw")],
            F.when(again, F.lit("duplicate_id")).otherwise(F.col("q_reason")).alias("q_reason"),
            F.when(again, F.format_string("id %s already read at %s (block %d, position %d)",
                   "id", "_first.file", "_first.block", "_first.pos"))
            .otherwise(F.col("q_detail")).alias("q_detail"),
            F.when(again, F.substring("text", 1, self.cfg.validation.raw_preview_bytes))
            .otherwise(F.col("q_raw")).alias("q_raw"),
        )

    def _check_read(self, written: DataFrame, info: dict) -> None:
        """Before `validated` commits: every planned split reported once, and the rows
        written per split (and per Parquet file) equal the records read from the input."""
        is_doc = (F.col("kind") == "doc").cast("long")
        summary = F.col("kind") == "split"
        rows = written.groupBy("file", "block").agg(
            F.sum(is_doc).alias("docs"), F.sum(summary.cast("long")).alias("n"),
            F.max(F.when(summary, F.col("pos"))).alias("read"),
            F.max(F.when(summary, F.col("q_detail"))).alias("error")).collect()
        got = {(r["file"], r["block"]): r for r in rows}
        files: dict[str, dict] = {}
        for s in self.splits:
            r = got.pop((s.file, s.start), None)
            if r is None or r["n"] != 1 or r["docs"] != r["read"]:
                raise RuntimeError(
                    f"stage validated: split {s.file}@{s.start} wrote "
                    f"{r and r['docs']} rows for {r and r['read']} records read "
                    f"({r and r['n']} reports); not committed")
            f = files.setdefault(s.file, {"records": 0, "error": None})
            f["records"] += r["read"]
            f["error"] = f["error"] or r["error"]
        parquet = parquet_row_counts(self.spark, [p for p, _, _ in self.files.parquet])
        stray = sorted({f for f, _ in got} - set(parquet))
        if stray:
            raise RuntimeError(f"stage validated: rows from unplanned inputs {stray[:3]}")
        for file, n in parquet.items():
            written_n = sum(r["docs"] for (f, _), r in got.items() if f == file)
            if written_n != n:
                raise RuntimeError(f"stage validated: {file} has {n} rows, {written_n} written")
            files[file] = {"records": n, "error": None}
        info["files"] = dict(sorted(files.items()))

    def _annotation_cfg(self) -> CurationConfig:
        cfg = self.cfg
        if self.mode == "dedup":  # dedup only: no heuristic filters, no decontamination
            cfg = cfg.model_copy(update={"filters": cfg.filters.disabled(),
                "language": cfg.language.model_copy(update={"languages": None}),
                "decontamination": cfg.decontamination.model_copy(update={"eval_sets": {}})})
        return cfg

    def _annotated(self, validated: DataFrame, files: list[str] | None = None,
                   tmp: str | None = None) -> DataFrame | int:
        """Every registry entry on every valid document; in dedup mode the quality entries
        are deferred to the documents of multi-member clusters (`_keeper_quality`).

        `files`: `validated`'s Parquet files, when the tasks may read them themselves
        (pyarrow opens them and no id repeats, so no row needs the repeated-ids join): the
        texts then go from the files to the scorers, and the signals from the scorers to
        `tmp`, without passing through the JVM (its scan, Arrow conversions and Parquet
        encoding cost ~6 CPU-s per GB); the rows written are returned."""
        cfg = self._annotation_cfg()
        entries = None
        if self.mode == "dedup":
            entries = tuple(e for e in registry.ENTRIES if e not in QUALITY_ENTRIES)
        self.shipped_models = shipped = ship_models(self.spark.sparkContext, cfg)
        ddl = f"{annotation_ddl(cfg, entries)}, prio int"
        order = list(self.cfg.source_priority)

        def annotate(docs):
            return with_priority(annotate_batches(docs, cfg, shipped, entries), order)

        if files:
            tasks = min(len(files), self.spark.sparkContext.defaultParallelism * PYTHON_TASKS_PER_CORE)
            paths = spread_rows(self.spark, [(f,) for f in files], "path string", tasks)
            body = python_timed(lambda it: annotate(valid_documents(it)))
            return sum(r["rows"] for r in paths.mapInArrow(
                writing(body, self.fs.qualify(tmp), "annotated"), SUMMARY_DDL).collect())
        valid = validated.where(F.col("q_reason").isNull())
        return valid.select(*DOCUMENT_COLUMNS).mapInArrow(python_timed(annotate), ddl)

    def _exact(self, annotated: DataFrame) -> DataFrame:
        quality = (F.col("quality_score") if "quality_score" in annotated.columns  # not in dedup mode
                   else F.lit(None).cast("double").alias("quality_score"))
        survivors = annotated.where(F.col("removed_by").isNull()).select(
            "id", "source", "domain", "norm_hash", quality, "prio")
        grouped = self._cache(exact_groups(survivors, self.cfg.dedup.exact))  # read 4 times
        keepers = grouped.where(F.col("id") == F.col("exact_keeper_id")).select("id")
        keyed = ranked_keys(keepers, self.width, self._cache)
        return grouped.join(keyed, "id", "left").drop("norm_hash")

    @staticmethod
    def _keys(exact: DataFrame) -> DataFrame:
        """(id, key) of the exact keepers: the documents the near-dedup stages work on."""
        return exact.where(F.col("key").isNotNull()).select("id", "key")

    def _keeper_bands(self, exact: DataFrame, annotated: DataFrame) -> DataFrame:
        """(key, bands) of the exact keepers: computed in the annotation pass, so no text
        moves here."""
        return self._keys(exact).join(annotated.where(F.col("bands").isNotNull()).select("id", "bands"),
                            "id").select("key", "bands")

    @staticmethod
    def _texts(validated: DataFrame, annotated: DataFrame) -> DataFrame:
        """(id, text): the final text of each annotated document, from `annotated` when a
        filter may have rewritten it, else from `validated` (annotated does not repeat it)."""
        if "text" in annotated.columns:
            return annotated.select("id", "text")
        return validated.where(F.col("q_reason").isNull()).select("id", "text")

    def _candidate_shingles(self, members: DataFrame, exact: DataFrame,
                            texts: DataFrame) -> DataFrame:
        d = self.cfg.dedup
        return candidate_shingles(members, self._keys(exact), texts,
                                  ShingleSpec(d.shingle, d.ngram))

    def _clustered(self, exact: DataFrame, components: DataFrame | None) -> DataFrame:
        """The surviving documents with their cluster (the root key of their exact group's
        component), its size and its number of sources."""
        keepers = self._keys(exact).withColumnRenamed("id", "exact_keeper_id")
        if components is not None:
            keepers = keepers.join(components, "key", "left")
            keepers = keepers.select("exact_keeper_id", F.coalesce("root", "key").alias("cluster_id"))
        else:
            keepers = keepers.select("exact_keeper_id", F.col("key").alias("cluster_id"))
        docs = exact.drop("key").join(keepers, "exact_keeper_id")
        clusters = docs.groupBy("cluster_id").agg(F.count("*").alias("cluster_size"),
                                                  F.countDistinct("source").alias("n_sources"))
        return docs.join(clusters, "cluster_id")

    def _keeper_quality(self, clustered: DataFrame, texts: DataFrame) -> DataFrame:
        """Dedup mode: (id, quality_score) of the documents of multi-member clusters, the
        only ones whose score can change a keeper."""
        cfg = self._annotation_cfg()
        shipped = ship_models(self.spark.sparkContext, cfg)  # also when annotated resumed
        docs = clustered.where(F.col("cluster_size") > 1).select("id", "source", "domain")
        return clustered_quality(docs, texts, cfg, shipped)

    @staticmethod
    def _assigned(clustered: DataFrame, quality: DataFrame | None) -> DataFrame:
        """Keep or remove each document: the best copy (`keeper_order`) of each exact group
        and of each cluster is kept. `quality` replaces the scores (dedup mode)."""
        docs = clustered
        if quality is not None:
            docs = docs.drop("quality_score").join(quality, "id", "left")
        exact_best = docs.groupBy("exact_keeper_id").agg(F.min(keeper_order()).alias("best"))
        cluster_best = docs.groupBy("cluster_id").agg(F.min(keeper_order()).alias("best"))
        docs = docs.join(exact_best.select("exact_keeper_id", F.col("best.id").alias("exact_best")),
                         "exact_keeper_id")
        docs = docs.join(cluster_best.select("cluster_id", F.col("best.id").alias("cluster_keeper_id")),
                         "cluster_id")
        exact_dup = F.col("id") != F.col("exact_best")
        near_dup = F.col("id") != F.col("cluster_keeper_id")
        return docs.select(
            "id", "cluster_id", "cluster_size", "n_sources", "exact_dup_count",
            (~near_dup).alias("keep"),
            F.when(exact_dup, F.lit("exact_dup")).when(near_dup, F.lit("near_dup")).alias("reason"),
            F.when(exact_dup, F.col("exact_best")).when(near_dup, F.col("cluster_keeper_id"))
            .alias("duplicate_of"),
        )

    def _rules(self) -> list[str]:
        """Every removal rule of this job, so stats report those that removed nothing."""
        if self.mode != "full":
            return []
        d = self.cfg.decontamination
        lang = self.cfg.language
        return rule_names(self.cfg.filters) + (
            [LANG_RULE] if lang.model and lang.languages is not None else []) + (
            ["decontamination"] if d.eval_sets and d.action == "remove" else [])

    # -- the job ----------------------------------------------------------------------
    def run(self) -> dict:
        """Check the output and every scorer (models readable, sha256 as recorded), lock the
        output, run (or resume) the stages, write outputs and stats."""
        check_output(self.fs, self.output, self.inputs)
        build_scorers(self.cfg)  # a missing or corrupt model fails here, before any write
        with OutputLock(self.fs, self.output) as lock:
            try:
                return self._run(lock)
            finally:
                self._release()

    def _release(self) -> None:
        for df in self._cached:
            df.unpersist()
        self._cached.clear()

    def _run(self, lock: OutputLock) -> dict:
        started = time.perf_counter()
        d = self.cfg.dedup
        self.files = list_input_files(self.spark, self.inputs, exclude=self.fs.qualify(self.output))
        self.width = self.cfg.shuffle_width(sum(n for _, n, _ in self.files.all))
        self.spark.conf.set("spark.sql.shuffle.partitions", str(self.width))
        self.splits = plan_splits([(p, n) for p, n, _ in self.files.jsonl],
                                  self.cfg.input_split_mb << 20)
        store = StageStore(self.spark, f"{self.output}/_stages", self._fingerprint(), lock)
        read_info: dict = {}
        # the Python tasks write (and read) stage files with pyarrow where it opens the output
        tasks_write = arrow_filesystem(self.fs.qualify(self.output)) is not None
        validated = store.stage("validated", self._validated, read_info, self._check_read,
                                writes_itself=tasks_write)
        repeated_info: dict = {}
        repeated = store.stage("repeated_ids", lambda: self._repeated_ids(validated),
                               repeated_info, lambda written, info: info.update(rows=written.count()))
        validated = self._mark_repeated(validated.where(F.col("kind") == "doc").drop("kind"),
                                        repeated, repeated_info.get("rows"))
        python_tasks = self.spark.sparkContext.defaultParallelism * PYTHON_TASKS_PER_CORE
        files = None
        if repeated_info.get("rows") == 0 and tasks_write:
            files = [f for f in self.fs.list_files(f"{store.root}/validated")
                     if f.endswith(".parquet") and not f.rsplit("/", 1)[-1].startswith((".", "_"))]
        annotated = store.stage("annotated", lambda *tmp: self._annotated(validated, files, *tmp),
                                min_read_tasks=python_tasks, writes_itself=bool(files))
        texts = self._texts(validated, annotated)
        exact = store.stage("exact", lambda: self._exact(annotated))
        self._release()
        components = None
        dedup_stats: dict = {}
        if d.near:
            members = store.stage("members", lambda: bucket_members(
                self._keeper_bands(exact, annotated)))
            edges = store.stage("edges", lambda: verified_edges(
                members, self._candidate_shingles(members, exact, texts) if d.verify else None,
                d.threshold, d.verify_rounds, d.verify_max_pairs,
                store.scratch("edges_work"), dedup_stats), dedup_stats,
                min_read_tasks=python_tasks)
            components = store.stage("components", lambda: connected_components(
                edges, store.scratch("cc_work"), d.max_cc_iterations, dedup_stats), dedup_stats)
        # read by keeper_quality and three times by assigned (at 1 GB: assigned 3.7 -> 1.9 s)
        clustered = self._cache(self._clustered(exact, components))
        quality = None
        if self.mode == "dedup":
            quality = store.stage("keeper_quality", lambda: self._keeper_quality(clustered, texts),
                                  min_read_tasks=python_tasks)
        assigned = store.stage("assigned", lambda: self._assigned(clustered, quality))
        quality = write_outputs(self, validated, annotated, assigned, texts, commit=store.commit)
        self.stats = build_stats(self, validated, read_info["files"], annotated, assigned,
                                 store, dedup_stats, quality,
                                 self._rules(),
                                 time.perf_counter() - started)
        lock.assert_held()
        self.fs.write_text(f"{self.output}/stats.json", json.dumps(self.stats, indent=2, sort_keys=True) + "\n")
        return self.stats


def run_curation(inputs: list[str] | str, output: str, cfg: CurationConfig | None = None,
                 master: str | None = None, mode: str = "full",
                 spark_conf: dict[str, str] | None = None) -> dict:
    """Python entry point (used by the CLI, the demo and notebooks). `spark_conf` (the
    CLI's `--conf`) wins over the config's `spark:` settings. A failed Spark job raises
    `JobFailed` with its root cause on one line (the Py4J error is its `__cause__`)."""
    from curation.spark_session import get_spark, spark_log_path

    cfg = cfg or CurationConfig()
    user_conf = {**cfg.spark, **(spark_conf or {})}
    if "spark.sql.shuffle.partitions" in user_conf:  # the job sets it from its config
        cfg = cfg.model_copy(update={"shuffle_partitions": int(user_conf["spark.sql.shuffle.partitions"])})
    spark = get_spark(master, user_conf=user_conf)  # the job sets its shuffle width
    if isinstance(inputs, str):
        inputs = [inputs]
    try:
        return CurationJob(spark, inputs, output, cfg, mode).run()
    except Exception as e:
        if not is_spark_error(e):
            raise
        raise JobFailed(f"{root_cause(e)} (Spark log: {spark_log_path()}; `sharpen -v` shows "
                        "the trace; a rerun resumes from the last finished stage)") from e
