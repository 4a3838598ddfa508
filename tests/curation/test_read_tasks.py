"""How JSONL splits are grouped into parsing tasks (curation/io/reader.py)."""

from __future__ import annotations

import random

from curation.io.jsonl_splits import Split
from curation.io.reader import parse_tasks, split_groups

MB = 1 << 20


def _splits(sizes: list[int]) -> list[Split]:
    return [Split(f"f{i:03d}.jsonl", 0, n) for i, n in enumerate(sizes)]


def _bytes(group: list[tuple]) -> int:
    return sum(end - start for _, start, end in group)


def test_small_files_share_a_task_and_every_split_is_read_once_in_order():
    rng = random.Random(0)
    splits = _splits([rng.choice([1, 3, 16, 64]) * MB for _ in range(200)])
    tasks = parse_tasks(splits, 64 * MB, min_tasks=4)
    groups = split_groups(splits, tasks)
    assert [r for g in groups for r in g] == [(s.file, s.start, s.end) for s in splits]
    assert tasks == -(-sum(s.end for s in splits) // (64 * MB))
    assert 0.9 * tasks <= len(groups) <= tasks  # a 64 MB split may span a whole share
    mean = sum(s.end for s in splits) / tasks
    assert all(abs(_bytes(g) - mean) <= 64 * MB for g in groups)  # within one split


def test_sixty_four_16mb_files_make_sixteen_even_tasks_and_a_small_input_fills_the_cores():
    files = _splits([int(15.6 * MB)] * 64)  # the 1 GB benchmark corpus
    groups = split_groups(files, parse_tasks(files, 64 * MB, min_tasks=4))
    assert [len(g) for g in groups] == [4] * 16  # not 13 tasks of five files for 2 cores
    small = _splits([MB] * 10)  # 10 MB: one 64 MB task would leave 3 of 4 slots idle
    assert parse_tasks(small, 64 * MB, min_tasks=4) == 4
    assert [len(g) for g in split_groups(small, 4)] == [3, 2, 3, 2]
    assert parse_tasks(_splits([MB] * 3), 64 * MB, min_tasks=4) == 3  # one per split at most
    big = _splits([100 * MB] * 3)
    assert len(split_groups(big, parse_tasks(big, 64 * MB, min_tasks=2))) == 3
