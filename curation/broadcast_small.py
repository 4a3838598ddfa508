"""Broadcast a join side only when it is small: counted first, so the rule is one number."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F


def broadcast_if_small(df: DataFrame, max_rows: int, rows: int | None = None) -> DataFrame:
    """`df` marked for a broadcast join when it has at most `max_rows` rows (the other side
    then stays where it is, text included); otherwise unchanged, for a shuffle join. The
    count is one cheap job on an already materialised (or narrow) input; a caller that
    has counted `df` already passes `rows`."""
    n = df.count() if rows is None else rows
    return F.broadcast(df) if n <= max_rows else df
