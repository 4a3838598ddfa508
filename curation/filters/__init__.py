"""Heuristic document filters (Gopher quality and repetition, C4, FineWeb) in pure Python.

Called from Spark ``mapInArrow`` over Arrow batches; nothing here imports Spark.
"""

from curation.filters.config import FilterConfig
from curation.filters.decision import FilterResult
from curation.filters.runner import evaluate, evaluate_one, rule_names, tally

__all__ = ["FilterConfig", "FilterResult", "evaluate", "evaluate_one", "rule_names", "tally"]
