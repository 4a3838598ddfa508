"""One place that builds the SparkSession, so local and cluster runs use the same settings.

Settings reach the JVM. Static keys (`spark.driver.memory`, JVM options) only take effect
when the JVM is launched, so the JVM is launched by `getOrCreate()` with every setting;
under `spark-submit` the JVM already exists and its own flags win. Every key the user set
(`spark:` in the curation config, or `--conf key=value`) is checked against the running
session afterwards: one that could not be applied is an error, not a silent default.

Defaults (`DEFAULT_CONF`): 4 GiB of driver heap. The driver holds no document data
(JSONL is read by Python workers, records over `validation.max_record_bytes` are never
held whole), so heap scales with the number of input files and Spark partitions, not
with input size; raise it for inputs of hundreds of thousands of files. In local mode
executors share the driver JVM; on a cluster set `spark.executor.memory` (Spark's default
1 GiB) and leave about 1 GiB of `spark.executor.memoryOverhead` per core for the Python
workers that parse and hash documents.

Logs: Spark's own log goes to a file (`spark_log_path()`), not the console, unless
`sharpen -v`; a failure is reported in one line by `curation.errors`.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from pathlib import Path

from curation.jvm_class_archive import java_options

log = logging.getLogger(__name__)

# JVM flags of our jobs (a user's own extraJavaOptions replace them). C1 only: the C2
# compiler spent 22 of 90 CPU seconds of a 180 MB dedup job compiling Spark's generated
# code, while the JVM's task threads ran 12 s in all (the per-byte work is in Python);
# C1 only cut the job's CPU to 71 s and its wall time by 11%, the parallel collector to
# 67 s. On long cluster jobs where JVM operators dominate, set them without
# TieredStopAtLevel. (benchmarks/RESULTS.md, curation throughput.) C1 only shrinks the
# JVM's default code cache from 240 to 48 MB, which a long-lived session (the test
# suite, a notebook) fills after a few dozen jobs of generated code: the JIT is then
# switched off for good, and a new generated class can kill the JVM ("Out of space in
# CodeCache for adapters"). The cache is reserved, not committed, so 240 MB costs nothing.
JVM_OPTIONS = "-XX:TieredStopAtLevel=1 -XX:+UseParallelGC -XX:ReservedCodeCacheSize=240m"

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
    "spark.driver.extraJavaOptions": JVM_OPTIONS,
    "spark.executor.extraJavaOptions": JVM_OPTIONS,
    "spark.sql.files.maxPartitionBytes": str(64 << 20),
    # pyspark's daemon with a young-generation collection after each task instead of a full
    # one (~9% of a 1 GB dedup job's CPU): curation/spark_daemon.py
    "spark.python.daemon.module": "curation.spark_daemon",
}

_LOG4J = """\
rootLogger.level = {level}
rootLogger.appenderRef.file.ref = file
rootLogger.appenderRef.console.ref = console
appender.file.type = File
appender.file.name = file
appender.file.fileName = {path}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = %d{{yy/MM/dd HH:mm:ss}} %p %c{{1}}: %m%n%ex
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{{yy/MM/dd HH:mm:ss}} %p %c{{1}}: %m%n%ex
appender.console.filter.threshold.type = ThresholdFilter
appender.console.filter.threshold.level = {console}
logger.jetty.name = org.sparkproject.jetty
logger.jetty.level = warn
logger.hadoop.name = org.apache.hadoop.util.NativeCodeLoader
logger.hadoop.level = error
"""


class SparkSettingError(ValueError):
    """A Spark setting the user asked for could not be applied to the running JVM."""


def spark_log_path() -> Path:
    """Where this process's JVM writes Spark's log (one file per driver process)."""
    root = Path(os.environ.get("SHARPEN_LOG_DIR", Path(tempfile.gettempdir()) / "sharpen-logs"))
    return root / f"spark-driver-{os.getpid()}.log"


def _verbose() -> bool:
    return logging.getLogger().isEnabledFor(logging.DEBUG)


def _log4j_option() -> str:
    path = spark_log_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    props = path.with_suffix(".log4j2.properties")
    console = "warn" if _verbose() else "off"
    props.write_text(_LOG4J.format(level="warn", path=path, console=console))
    return f"-Dlog4j2.configurationFile=file:{props}"


def parse_conf_args(pairs: list[str] | None) -> dict[str, str]:
    """`--conf key=value` options -> a dict; keys must be `spark.*`."""
    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.startswith("spark."):
            raise SparkSettingError(f"--conf {pair!r}: expected spark.KEY=VALUE")
        out[key.strip()] = value.strip()
    return out


def get_spark(master: str | None = None, app_name: str = "sharpen-curate",
              conf: dict[str, str] | None = None, user_conf: dict[str, str] | None = None):
    """Return the active session, or build one (local[*] unless `master` says otherwise).

    `conf` are the job's own settings; `user_conf` the user's (config `spark:` and
    `--conf`), which win and are verified to have reached the JVM. Under `spark-submit`
    the master comes from the submit command; `master=None` keeps it.
    """
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark import SparkConf, SparkContext
    from pyspark.sql import SparkSession

    wanted = {**DEFAULT_CONF, **(conf or {}), **(user_conf or {})}
    active = SparkSession.getActiveSession()
    if active is not None and (master is None or active.sparkContext.master == master):
        _apply_runtime(active, {**(conf or {}), **(user_conf or {})})
        _verify(active, user_conf or {})
        return active
    submitted = "PYSPARK_GATEWAY_PORT" in os.environ  # spark-submit launched our JVM
    if submitted:
        SparkContext._ensure_initialized()  # its --master is only visible in the JVM
    elif SparkContext._gateway is None:
        extra = wanted.get("spark.driver.extraJavaOptions", "")
        if extra == JVM_OPTIONS:  # ours, not the user's: map the class archive if built
            extra = f"{extra} {java_options(extra)}"
        wanted["spark.driver.extraJavaOptions"] = f"{extra} {_log4j_option()}".strip()
    builder = SparkSession.builder.appName(app_name)
    if master is not None:
        builder = builder.master(master)
    elif not submitted or not SparkConf().contains("spark.master"):
        builder = builder.master(os.environ.get("SHARPEN_SPARK_MASTER", "local[*]"))
    for key, value in wanted.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    # our JVM: WARN to the log file (console per its config); spark-submit's: quiet unless -v
    spark.sparkContext.setLogLevel("WARN" if _verbose() or not submitted else "OFF")
    _verify(spark, user_conf or {})
    log.info("Spark %s on %s (default parallelism %d, driver heap %d MiB; Spark log: %s)",
             spark.version, spark.sparkContext.master, spark.sparkContext.defaultParallelism,
             driver_max_heap_mb(spark), spark_log_path())
    return spark


def driver_max_heap_mb(spark) -> int:
    """The running driver JVM's max heap (what `spark.driver.memory` really gave)."""
    return int(spark.sparkContext._jvm.java.lang.Runtime.getRuntime().maxMemory()) >> 20


def _apply_runtime(spark, conf: dict[str, str]) -> None:
    for key, value in conf.items():
        if spark.conf.isModifiable(key):
            spark.conf.set(key, value)


def _verify(spark, user_conf: dict[str, str]) -> None:
    """Every user-set key must hold in the running session (static keys included)."""
    sc_conf = spark.sparkContext.getConf()
    for key, value in user_conf.items():
        have = spark.conf.get(key, None) if spark.conf.isModifiable(key) else sc_conf.get(key)
        if have != value and not (key.endswith("JavaOptions") and value in (have or "")):
            raise SparkSettingError(
                f"{key}={value} was asked for but the running Spark has {have!r}: a static "
                "setting applies only when the JVM starts (under spark-submit pass it to "
                "spark-submit, e.g. --driver-memory or --conf)")
