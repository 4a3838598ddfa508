"""Refuse an unusable output before any input is read, in one line naming the path.

Each of these used to surface late, as a Java trace, or not at all: an output that is a
file, an output the job cannot write, and an output inside an input directory (whose
Parquet files a rerun would read back as input).
"""

from __future__ import annotations

from curation.io.hadoop_fs import HadoopFS
from curation.io.paths import is_under

PROBE = "_sharpen.write-probe"


class OutputError(ValueError):
    """The output path cannot hold this job's output."""


def check_output(fs: HadoopFS, output: str, inputs: list[str]) -> None:
    out = fs.qualify(output)
    for pattern in inputs:
        for inp in fs.glob_dirs(pattern):
            if is_under(out, inp):
                raise OutputError(f"{output}: the output lies inside the input directory {pattern}; "
                                  "choose an output outside the inputs")
    if fs.is_file(output):
        raise OutputError(f"{output}: the output is a file, not a directory")
    try:
        fs.mkdirs(output)
        fs.write_text(f"{output}/{PROBE}", "")
        fs.delete(f"{output}/{PROBE}")
    except Exception as e:  # Py4J-wrapped IOException / AccessControlException
        msg = " ".join(str(getattr(e, "java_exception", e)).split())[:200]
        raise OutputError(f"{output}: the output is not writable ({msg})") from None
