"""Generation on a model sharded with FSDP2 over a real 2-rank torchrun (gloo, CPU): each
rank generates for different prompts and gets what one unsharded process gets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from training.generation import generate

sys.path.insert(0, str(Path(__file__).parent))
from generation_fsdp_worker import PAD, RUNS, build  # noqa: E402

pytestmark = pytest.mark.slow
WORKER = Path(__file__).with_name("generation_fsdp_worker.py")
TEARDOWN_ABORT = "terminate called without an active exception"


def reference(model, rank: int, **kwargs):  # noqa: ANN001, ANN003, ANN201
    prompts, max_new = RUNS[rank]
    return generate(model, prompts, max_new_tokens=max_new, pad_id=PAD, **kwargs)


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[int, dict]]:
    out = tmp_path_factory.mktemp("gen2")
    plain = build()
    # Stop ids that end rank 0's rows early at different steps (rank 1 keeps its own).
    greedy0 = reference(plain, 0, temperature=0).sequences()
    (out / "stop_ids.txt").write_text(f"{greedy0[0][2]} {greedy0[2][5]}")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for _attempt in range(2):
        proc = subprocess.run(
            [*cmd, str(WORKER), str(out)], env=env, capture_output=True, text=True, timeout=300
        )
        # About 1 run in 70 on this machine a rank aborts in torch's C++ threads with this
        # message and no Python traceback (a std::thread left joinable, the symptom of
        # pytorch/pytorch#190489, not our code): rerun once on exactly that, nothing else.
        if proc.returncode == 0 or TEARDOWN_ABORT not in proc.stderr:
            break
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, {r: json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)}


def unsharded(out: Path):  # noqa: ANN201
    model = build()
    model.load_state_dict(torch.load(out / "weights.pt"))
    return model


def test_greedy_on_two_ranks_equals_one_unsharded_process(ranks):
    out, res = ranks
    model = unsharded(out)
    for rank in (0, 1):
        want = reference(model, rank, temperature=0, return_logprobs=True)
        got = res[rank]["greedy"]
        assert got["sequences"] == want.sequences()
        assert got["finish"] == want.finish_reasons == ["length"] * len(RUNS[rank][0])
        assert torch.allclose(torch.tensor(got["logprobs"]), want.logprobs, atol=1e-5)
    # Rank 1 needs 4 tokens, rank 0 needs 14: both ran prefill + 13 forwards.
    assert res[0]["greedy_forwards"] == res[1]["greedy_forwards"] == RUNS[0][1]


def test_seeded_sampling_and_stop_ids_on_two_ranks(ranks):
    out, res = ranks
    model = unsharded(out)
    stop = [int(x) for x in (out / "stop_ids.txt").read_text().split()]
    for rank in (0, 1):
        gen = torch.Generator().manual_seed(100 + rank)
        want = reference(model, rank, temperature=0.9, top_p=0.95, generator=gen)
        assert res[rank]["sampled"]["sequences"] == want.sequences()
        want = reference(model, rank, temperature=0, stop_ids=stop)
        assert res[rank]["stopped"]["sequences"] == want.sequences()
        assert res[rank]["stopped"]["finish"] == want.finish_reasons
    assert res[0]["stopped"]["finish"][0] == "stop"


def test_a_rank_without_prompts_keeps_pace_and_training_still_works(ranks):
    _, res = ranks
    assert res[1]["empty_rank"]["sequences"] == []
    assert res[0]["empty_rank"]["sequences"] == res[0]["greedy"]["sequences"]
    assert res[0]["forwards_total"] == res[1]["forwards_total"]
    assert res[0]["train_step_ok"] and res[1]["train_step_ok"]
