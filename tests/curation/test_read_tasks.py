"""How JSONL splits are grouped into parsing tasks (curation/io/reader.py)."""

from __future__ import annotations

import random

from curation.io.jsonl_splits import Split
from curation.io.reader import split_groups, task_bytes

MB = 1 << 20


def _splits(sizes: list[int]) -> list[Split]:
    return [Split(f"f{i:03d}.jsonl", 0, n) for i, n in enumerate(sizes)]


def test_small_files_share_a_task_and_every_split_is_read_once_in_order():
    rng = random.Random(0)
    splits = _splits([rng.choice([1, 3, 16, 64]) * MB for _ in range(200)])
    per_task = 64 * MB
    groups = split_groups(splits, per_task)
    assert [r for g in groups for r in g] == [(s.file, s.start, s.end) for s in splits]
    for g in groups:  # a task stops taking splits once it has its bytes
        assert sum(end - start for _, start, end in g[:-1]) < per_task
    for g in groups[:-1]:
        assert sum(end - start for _, start, end in g) >= per_task
    assert len(groups) < len(splits) / 2


def test_sixty_four_16mb_files_make_sixteen_tasks_and_a_small_input_still_fills_the_cores():
    files = _splits([16 * MB] * 64)
    assert len(split_groups(files, task_bytes(files, 64 * MB, min_tasks=4))) == 16
    small = _splits([MB] * 10)  # 10 MB: 64 MB per task would leave 3 of 4 slots idle
    per_task = task_bytes(small, 64 * MB, min_tasks=4)
    assert per_task == -(-10 * MB // 4)
    assert len(split_groups(small, per_task)) == 4
    assert len(split_groups(_splits([100 * MB] * 3), 64 * MB)) == 3  # never merged past
