"""Quality scores for the documents whose cluster has more than one member.

In `sharpen curate dedup` a quality score has one use: choosing which copy of a cluster
survives (`exact.keeper_order`). A singleton keeps itself whatever its score, so scoring
it is wasted work: on the 1 GB benchmark corpus 38% of documents share a cluster, and
the heuristic quality was half of the annotation pass. The job therefore defers the
quality entries of the registry (`registry.QUALITY_ENTRIES`) until the clusters are
known and runs them here, on those documents only, with the same scorers and models as
`sharpen curate` (which scores every document, since its curated table carries the
scores). Keepers are the same as if every document had been scored.
"""

from __future__ import annotations

import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from curation.broadcast_small import broadcast_if_small
from curation.config import CurationConfig
from curation.scorers.model_shipping import resolve_models
from curation.scorers.registry import QUALITY_ENTRIES, build_scorers, score_batch, spark_ddl
from curation.stage_profile import python_timed

QUALITY_SCHEMA = pa.schema([pa.field("id", pa.string()), pa.field("quality_score", pa.float64())])
# Up to this many (id, source, domain) rows (~100 MB) are broadcast to the text scan, so the
# texts are read in place; above it, a shuffle join.
BROADCAST_IDS = 2_000_000


def quality_batches(batches, cfg: CurationConfig, shipped: dict[str, str] | None = None):
    """mapInArrow body: (id, source, domain, text, meta) -> (id, quality_score): the
    registry's quality entries, run as the annotation pass runs its entries."""
    cfg = resolve_models(cfg, shipped)
    scorers = build_scorers(cfg, check=False, entries=QUALITY_ENTRIES)
    for batch in batches:
        yield score_batch(scorers, batch, QUALITY_SCHEMA)


def clustered_quality(docs: DataFrame, texts: DataFrame, cfg: CurationConfig,
                      shipped: dict[str, str] | None = None) -> DataFrame:
    """(id, quality_score) of the documents `docs` (id, source, domain) names; `texts`:
    (id, text). No quality entry reads `meta`: it goes in empty."""
    docs = texts.join(broadcast_if_small(docs, BROADCAST_IDS), "id")
    return docs.select("id", "source", "domain", "text",
                       F.lit(None).cast("string").alias("meta")).mapInArrow(
        python_timed(lambda it: quality_batches(it, cfg, shipped)), spark_ddl(QUALITY_SCHEMA))
