"""Path strings as Hadoop and pyarrow write them: `file:/x`, `file:///x` and `/x` are one
local file. One place folds them, so containment checks and local opens agree."""

from __future__ import annotations

import re

_FILE_SCHEME = re.compile(r"^file:(//)?")


def local_path(uri: str) -> str:
    """`file:` URIs as plain local paths; other strings unchanged."""
    return _FILE_SCHEME.sub("", uri)


def is_under(path: str, directory: str) -> bool:
    """Whether `path` is `directory` or lies inside it (both qualified the same way)."""
    p, d = local_path(path).rstrip("/"), local_path(directory).rstrip("/")
    return (p + "/").startswith(d + "/")
