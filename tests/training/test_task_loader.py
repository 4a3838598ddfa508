"""RL / evaluation tasks: a stable task_index, every task once in order (iter_tasks), the
rank/accumulation split of the task stream and exact resume (the bundled RL set plus a
few code tasks, mixed by the real `mix tasks`)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from chat_fixtures import DATA, write_chat_mixture

from mixtures.chat_stages import mix_tasks
from mixtures.shard_format import ShardError
from mixtures.shards import StageShards
from mixtures.tokenizer import ASSISTANT, render_chats
from training.data import LoaderStateError, PackedLoader, PreferenceLoader
from training.data.tasks import Task, TaskLoader, iter_tasks

TESTS = "def test_add():\n    assert add(2, 3) == 5\n"


@pytest.fixture(scope="module")
def mixture(tmp_path_factory):
    root, tok = write_chat_mixture(tmp_path_factory.mktemp("tasks"))
    code = root / "src" / "code_tasks.jsonl"
    prompts = [f"Write add(a, b) returning the sum ({i})." for i in range(20)]
    lines = [
        json.dumps({"id": f"code-{i}", "domain": "code", "prompt": p, "tests": TESTS})
        for i, p in enumerate(prompts)
    ]
    code.write_text("\n".join(lines) + "\n")
    mix_tasks([DATA / "arithmetic_rl.jsonl", code], root / "tokenizer" / "tokenizer.json", root,
              rows_per_shard=64)  # fmt: skip
    return StageShards.open(root / "tasks"), StageShards.open(root / "preferences"), tok


def indices(tasks: list[Task]) -> list[int]:
    return [t.index for t in tasks]


def test_iter_tasks_visits_every_task_once_in_task_index_order(mixture):
    shards, _, tok = mixture
    records = {}
    for path in (DATA / "arithmetic_rl.jsonl", shards.stage_dir.parent / "src/code_tasks.jsonl"):
        records |= {r["id"]: r for r in map(json.loads, path.read_text().splitlines())}
    tasks = list(iter_tasks(shards))
    assert indices(tasks) == list(range(shards.total_rows)) == list(range(320))
    assert shards.num_shards == 5 and shards.domains == ["code", "math"]
    ids = [
        d for i in range(shards.num_shards) for d in shards.shard(i).column("doc_id").to_pylist()
    ]
    assistant = tok.token_to_id(ASSISTANT)
    for task, doc in zip(tasks, ids, strict=True):
        record = records[doc]
        prompt = record["prompt"]
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
        ((want, _),) = render_chats(tok, [messages], generation_prompt=True)
        assert task.prompt.dtype == np.int64 and task.prompt.tolist() == want.tolist()
        assert task.prompt[-1] == assistant
        assert (task.answer, task.tests) == (record.get("answer"), record.get("tests"))
        assert task.domain == record["domain"]
    assert sum(t.tests is not None for t in tasks) == 20


def test_ranks_and_accumulation_split_the_task_stream_like_one_rank(mixture):
    shards, _, _ = mixture
    one = TaskLoader(shards, batch_size=4)
    ranks = [TaskLoader(shards, batch_size=2, rank=r, world_size=2) for r in (0, 1)]
    accum = TaskLoader(shards, batch_size=2, grad_accum=2)
    assert TaskLoader.batch_type is list
    for _ in range(5):
        big = one.next_batch()
        per_rank = [ld.next_batches()[0] for ld in ranks]
        micro = accum.next_batches()
        assert all(isinstance(t, Task) for t in big) and len(micro) == 2
        assert indices(big) == indices(per_rank[0] + per_rank[1]) == indices(micro[0] + micro[1])
        assert [t.prompt.tolist() for t in big] == [t.prompt.tolist() for t in micro[0] + micro[1]]
    assert indices(big) == [16, 17, 18, 19]
    assert one.tasks_consumed == ranks[0].tasks_consumed == accum.tasks_consumed == 20
    assert one.tokens_consumed == ranks[1].tokens_consumed == accum.tokens_consumed > 0
    assert one.domains == ["code", "math"]


def test_resume_reproduces_the_task_stream_across_epochs(mixture):
    shards, _, _ = mixture
    steps = shards.total_rows // 32 + 4  # past the end: epoch 1 reorders the shards

    def step(loader: TaskLoader) -> list[int]:
        return [i for batch in loader.next_batches() for i in indices(batch)]

    full = TaskLoader(shards, batch_size=8, grad_accum=2, world_size=2, rank=1, seed=5)
    expected = [step(full) for _ in range(steps)]
    head = TaskLoader(shards, batch_size=8, grad_accum=2, world_size=2, rank=1, seed=5)
    for _ in range(steps // 2):
        step(head)
    tail = TaskLoader(shards, batch_size=8, grad_accum=2, world_size=2, rank=1, seed=5)
    tail.load_state_dict(json.loads(json.dumps(head.state_dict())))
    assert [step(tail) for _ in range(steps // 2, steps)] == expected[steps // 2 :]
    assert tail.tasks_consumed == full.tasks_consumed == steps * 32
    assert tail.tokens_consumed == full.tokens_consumed
    assert full.state_dict()["epoch"] == 1
    with pytest.raises(LoaderStateError, match="global batch"):
        TaskLoader(shards, batch_size=4).load_state_dict(full.state_dict())


def test_wrong_stage_kinds_and_vocab_are_clear_errors(mixture):
    shards, preferences, _ = mixture
    with pytest.raises(ValueError, match="preferences stage has no tasks"):
        TaskLoader(preferences, batch_size=2)
    with pytest.raises(ValueError, match="a tasks stage"):
        PackedLoader(shards, seq_len=15, batch_size=2)
    with pytest.raises(ValueError, match="tasks stage has no preference pairs"):
        PreferenceLoader(shards, batch_size=2, pad_id=2)
    with pytest.raises(ShardError, match="holds prompts, not a token stream"):
        shards.rows(0)
    with pytest.raises(ValueError, match="vocab_size 10"):
        TaskLoader(shards, batch_size=2, vocab_size=10).next_batch()
    with pytest.raises(ValueError, match="outside world size"):
        TaskLoader(shards, batch_size=2, rank=2, world_size=2)
