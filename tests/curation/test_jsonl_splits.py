"""The JSONL split reader without Spark: split edges, oversized lines, corrupt files."""

from __future__ import annotations

import gzip

import pytest

from curation.io.jsonl_splits import Split, plan_splits, read_split_lines

LINES = [b'{"id": "d%d", "text": "%s"}' % (i, b"word " * (i % 41)) for i in range(1500)]


def _read(path, size, split_bytes, max_bytes=1 << 20):
    out = []
    for s in plan_splits([(str(path), size)], split_bytes):
        out += list(read_split_lines(s, max_bytes))
    return out


@pytest.mark.parametrize("split_bytes", [1, 2, 13, 100, 4096, 10**9])
def test_every_line_is_read_once_whatever_the_split_size(tmp_path, split_bytes):
    path = tmp_path / "in.jsonl"
    data = b"\n".join(LINES) + b"\n\n   \n"  # trailing blank lines are not records
    path.write_bytes(data)
    got = _read(path, len(data), split_bytes)
    assert [v for kind, v, _ in got] == LINES and {k for k, _, _ in got} == {"line"}


def test_last_line_without_newline_and_crlf(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'{"a": 1}\r\n{"b": 2}')
    assert [v for _, v, _ in _read(path, path.stat().st_size, 5)] == [b'{"a": 1}', b'{"b": 2}']


def test_oversized_line_is_skipped_with_a_preview_only(tmp_path):
    path = tmp_path / "in.jsonl"
    big = b'{"id": "big", "text": "' + b"x" * 5000 + b'"}'
    path.write_bytes(LINES[0] + b"\n" + big + b"\n" + LINES[1] + b"\n")
    got = _read(path, path.stat().st_size, 10**9, max_bytes=1000)
    assert [k for k, _, _ in got] == ["line", "oversized", "line"]
    _, preview, size = got[1]
    assert size == len(big) + 1 and big.startswith(preview) and len(preview) <= 1001


def test_truncated_gzip_keeps_its_readable_prefix(tmp_path):
    path = tmp_path / "in.jsonl.gz"
    path.write_bytes(gzip.compress(b"\n".join(LINES) + b"\n")[:3000])
    got = _read(path, path.stat().st_size, 100)
    assert len(plan_splits([(str(path), 3000)], 100)) == 1  # gzip: one split per file
    kinds = [k for k, _, _ in got]
    assert kinds[-1] == "error" and set(kinds[:-1]) == {"line"} and len(kinds) > 10
    assert [v for k, v, _ in got if k == "line"] == LINES[: len(kinds) - 1]
    assert "EOFError" in got[-1][1]


def test_plain_text_named_gz_and_a_missing_file_are_errors_not_crashes(tmp_path):
    path = tmp_path / "plain.jsonl.gz"
    path.write_bytes(LINES[0] + b"\n")
    assert [k for k, _, _ in _read(path, path.stat().st_size, 100)] == ["error"]
    gone = list(read_split_lines(Split(str(tmp_path / "gone.jsonl"), 0, 10), 100))
    assert gone[0][0] == "error" and "FileNotFoundError" in gone[0][1]
