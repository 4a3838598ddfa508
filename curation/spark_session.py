"""One place that builds the SparkSession, so local and cluster runs use the same settings.

Workers must run the same Python as the driver (they unpickle our functions and need
pyarrow/numpy), hence PYSPARK_PYTHON = sys.executable unless the user set it.
"""

from __future__ import annotations

import logging
import os
import sys

log = logging.getLogger(__name__)

DEFAULT_CONF = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.session.timeZone": "UTC",
    # a fixed shuffle width keeps partitioning, hence output bytes, the same run to run
    "spark.sql.shuffle.partitions": "8",
    "spark.sql.adaptive.enabled": "true",
    "spark.sql.adaptive.coalescePartitions.enabled": "false",
    "spark.sql.adaptive.skewJoin.enabled": "true",
    "spark.sql.execution.arrow.maxRecordsPerBatch": "2000",
    "spark.sql.execution.pythonUDF.arrow.enabled": "true",
    "spark.driver.memory": "4g",
    "spark.sql.files.maxPartitionBytes": str(64 << 20),
}


def get_spark(master: str | None = None, app_name: str = "sharpen-curate",
              conf: dict[str, str] | None = None):
    """Return the active session, or build one (local[*] unless `master` says otherwise).

    Under `spark-submit` the master comes from the submit command; `master=None` keeps it.
    """
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None and (master is None or active.sparkContext.master == master):
        return active
    from pyspark import SparkConf, SparkContext

    # connect to the JVM first: under spark-submit, its --master is only visible there
    SparkContext._ensure_initialized()
    builder = SparkSession.builder.appName(app_name)
    if master is not None:
        builder = builder.master(master)
    elif not SparkConf().contains("spark.master"):  # spark-submit sets it; keep theirs
        builder = builder.master(os.environ.get("SHARPEN_SPARK_MASTER", "local[*]"))
    for key, value in {**DEFAULT_CONF, **(conf or {})}.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    log.info("Spark %s on %s (default parallelism %d)", spark.version,
             spark.sparkContext.master, spark.sparkContext.defaultParallelism)
    return spark
