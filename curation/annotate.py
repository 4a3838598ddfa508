"""One Python pass per valid document: every registry entry (`curation/scorers/`).

Grouping the per-document Python work into a single `mapInArrow` keeps the text from
crossing the JVM/Python boundary more than once for all signals. The output schema and
its Spark DDL come from the registry's entries.
"""

from __future__ import annotations

import pyarrow as pa

from curation.config import CurationConfig
from curation.io.arrow_parquet import read_files
from curation.scorers.base import Scorer
from curation.scorers.model_shipping import resolve_models
from curation.scorers.registry import annotation_schema, build_scorers, score_batch, spark_ddl

Entries = tuple[type[Scorer], ...] | None


def annotation_ddl(cfg: CurationConfig, entries: Entries = None) -> str:
    """The annotated stage's Spark DDL for this config (checked on the driver)."""
    return spark_ddl(annotation_schema(build_scorers(cfg, entries=entries)))


def annotate_batches(batches, cfg: CurationConfig, shipped: dict[str, str] | None = None,
                     entries: Entries = None):
    """mapInArrow body: documents in, the same documents plus their signals out (the
    text passes through, replaced only when a filter is configured to rewrite it).
    `entries`: the registry entries to run (all by default)."""
    cfg = resolve_models(cfg, shipped)  # the executor's copies of models the driver shipped
    scorers = build_scorers(cfg, check=False, entries=entries)  # checked on the driver
    schema = annotation_schema(scorers)
    for batch in batches:
        yield score_batch(scorers, batch, schema)


# what the annotation pass reads of each valid document
DOCUMENT_COLUMNS = ["id", "source", "domain", "text", "meta"]


def valid_documents(paths):
    """mapInArrow body: the valid documents (`DOCUMENT_COLUMNS`) of the `validated` files
    named in `paths`, read by this task."""
    import pyarrow.compute as pc

    for batch in read_files(paths, [*DOCUMENT_COLUMNS, "kind", "q_reason"]):
        keep = pc.and_(pc.equal(batch.column("kind"), "doc"), pc.is_null(batch.column("q_reason")))
        docs = batch.filter(keep).select(DOCUMENT_COLUMNS)
        if docs.num_rows:
            yield docs


def with_priority(batches, order: list[str]):
    """The batches plus `prio`: the source's rank in `order` (`source_priority`), or
    len(order) for any other source (the keeper order's second key)."""
    rank = {src: i for i, src in enumerate(order)}  # a source listed twice: its last rank
    for batch in batches:
        prio = [rank.get(s, len(order)) for s in batch.column("source").to_pylist()]
        yield batch.append_column("prio", pa.array(prio, pa.int32()))
