"""A class-data-sharing (AppCDS) archive of the classes our Spark driver loads.

Every `sharpen` process starts its own JVM, which loads and verifies thousands of Spark,
Scala and Hadoop classes before the first query runs: ~6 s to a ready session and ~3.5 s
more for the first query on a 2-core VM. A dynamic CDS archive (JDK 13+, `-XX:ArchiveClassesAtExit`)
records those classes once, parsed and verified; JVMs started with
`-XX:SharedArchiveFile` map it instead (measured: session 6.0-8.2 s -> 3.5-3.7 s, first
query 3.4-4.2 s -> 1.4-1.8 s). Nothing a job computes changes: it is the same classes.

The archive is built once, explicitly (`python -m curation.jvm_class_archive`, run by
`make` after installing), by a small real dedup job, and lives in the environment
(`<sys.prefix>/share/sharpen/`), so a rebuilt environment starts without one. It is used
only when its sidecar says it was completely written for this pyspark and these JVM
options, with the size it has now: a truncated archive crashes the JVM (SIGBUS) instead
of being ignored. The JVM itself rejects one made by another Java build or classpath
(and its CDS messages are silenced); the session then starts as it would without one.
`SHARPEN_JVM_ARCHIVE=0` turns it off.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

QUIET = "-Xlog:cds=off -Xlog:cds+dynamic=off"


def archive_path() -> Path:
    """Where this environment's archive lives (`SHARPEN_JVM_ARCHIVE_DIR` overrides)."""
    base = os.environ.get("SHARPEN_JVM_ARCHIVE_DIR") or Path(sys.prefix) / "share" / "sharpen"
    return Path(base) / "spark-driver-classes.jsa"


def _key(jvm_options: str) -> dict:
    import pyspark

    return {"pyspark": pyspark.__version__, "jvm_options": jvm_options}


def java_options(jvm_options: str) -> str:
    """The flags that map the archive, or "" when there is no usable one for this key."""
    if os.environ.get("SHARPEN_JVM_ARCHIVE", "1") == "0":
        return ""
    path = archive_path()
    try:
        meta = json.loads(path.with_suffix(".json").read_text())
        size = path.stat().st_size
    except (OSError, ValueError):
        return ""
    if meta.get("key") != _key(jvm_options) or meta.get("bytes") != size or size == 0:
        return ""
    return f"-XX:SharedArchiveFile={path} {QUIET}"


_WORKLOAD = """
import json, shutil, sys, tempfile
from pathlib import Path
from curation.pipeline import run_curation
from curation.spark_session import get_spark
tmp = Path(tempfile.mkdtemp(prefix="sharpen-cds-"))
docs = tmp / "docs.jsonl"
words = "the quick brown fox jumps over the lazy dog while seven wizards quietly box".split()
with docs.open("w") as f:
    for i in range(40):
        text = " ".join(words[(i + j) % len(words)] for j in range(60 + i % 5))
        f.write(json.dumps({"id": f"d{i}", "text": text}) + "\\n")
spark = get_spark("local[2]", conf={"spark.driver.extraJavaOptions": sys.argv[1]})
run_curation([str(docs)], str(tmp / "out"), mode="dedup")
spark.read.parquet(str(tmp / "out" / "dedup")).count()
spark.stop()
from pyspark import SparkContext
proc = SparkContext._gateway.proc
SparkContext._gateway.shutdown()
proc.stdin.close()  # the JVM exits when its parent's pipe closes, writing the archive
proc.wait(timeout=300)
shutil.rmtree(tmp, ignore_errors=True)
"""


def build(jvm_options: str, timeout_s: float = 600) -> Path:
    """Write the archive: run a small dedup job in a child whose JVM dumps the classes it
    loaded at exit, then move the archive and its sidecar into place."""
    path = archive_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".writing-{os.getpid()}.jsa")  # the JVM creates it
    tmp.unlink(missing_ok=True)
    started = time.perf_counter()
    env = {**os.environ, "SHARPEN_JVM_ARCHIVE": "0"}
    options = f"{jvm_options} -XX:ArchiveClassesAtExit={tmp} {QUIET}"
    try:
        subprocess.run([sys.executable, "-c", _WORKLOAD, options], env=env, check=True,
                       timeout=timeout_s, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        size = tmp.stat().st_size if tmp.exists() else 0
        if size == 0:
            raise RuntimeError("the JVM wrote no class archive (a JDK without CDS?)")
        os.replace(tmp, path)
        path.with_suffix(".json").write_text(json.dumps(
            {"key": _key(jvm_options), "bytes": size,
             "seconds": round(time.perf_counter() - started, 1)}, sort_keys=True))
    finally:
        tmp.unlink(missing_ok=True)
    return path


def main() -> int:
    from curation.spark_session import JVM_OPTIONS

    try:
        path = build(JVM_OPTIONS)
    except (subprocess.SubprocessError, OSError, RuntimeError) as e:
        detail = getattr(e, "stderr", b"") or b""
        print(f"no JVM class archive: {e} {detail.decode(errors='replace')[-500:]}".strip(),
              file=sys.stderr)
        return 1
    print(f"JVM class archive: {path} ({path.stat().st_size >> 20} MiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
