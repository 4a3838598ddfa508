"""One rank of `test_generation_fsdp.py`: generate on an FSDP2-sharded model, write results.

Run under `torchrun --nproc_per_node 2 THIS OUT_DIR`. Every rank builds the same weights
(seeded), rank 0 saves them for the single-process reference, then each rank generates
for its own prompts with its own `max_new_tokens`, so the ranks need different numbers
of decode steps; the model is sharded per block and over the root, as training does.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from training.generation import generate
from training.model import ModelConfig, Transformer, cross_entropy_loss
from training.model.rope import YaRN
from training.parallel import init_distributed, shard_model, shutdown

CFG = ModelConfig(
    dim=64, n_layers=3, n_heads=4, n_kv_heads=2, ffn_hidden=128, max_seq_len=64, vocab_size=96
)
PAD = 0
# rank -> (prompts, max_new_tokens); rank 1 needs far fewer steps than rank 0
RUNS: dict[int, tuple[list[list[int]], int]] = {
    0: ([[5, 9, 17, 3, 44, 8, 21, 70], [30, 2], [7, 7, 12, 60, 90]], 14),
    1: ([[11, 4, 4], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]], 4),
}


def build() -> Transformer:
    torch.manual_seed(0)
    model = Transformer(CFG)
    with torch.no_grad():  # sharper attention than at init, so positions matter
        for block in model.blocks:
            block.attn.wq.weight.mul_(8)
            block.attn.wk.weight.mul_(8)
    model.rope_theta = 20_000.0
    model.rope_yarn = YaRN(factor=2.0, original_max_seq_len=32)
    return model


def result(out: Any) -> dict[str, Any]:
    return {
        "sequences": out.sequences(),
        "finish": out.finish_reasons,
        "logprobs": None if out.logprobs is None else out.logprobs.tolist(),
    }


def main(out_dir: Path) -> None:
    env = init_distributed("cpu")
    model = build()
    if env.rank == 0:
        torch.save(model.state_dict(), out_dir / "weights.pt")
    shard_model(model, env.mesh["dp"], torch.float32)
    forwards = [0]
    model.register_forward_hook(lambda *_: forwards.__setitem__(0, forwards[0] + 1))
    prompts, max_new = RUNS[env.rank]
    stop = [int(x) for x in (out_dir / "stop_ids.txt").read_text().split()]
    gen = torch.Generator().manual_seed(100 + env.rank)

    def run(**kwargs: Any) -> dict[str, Any]:
        return result(generate(model, prompts, max_new_tokens=max_new, pad_id=PAD, **kwargs))

    res: dict[str, Any] = {"greedy": run(temperature=0, return_logprobs=True)}
    res["greedy_forwards"] = forwards[0]
    res["sampled"] = run(temperature=0.9, top_p=0.95, generator=gen)
    res["stopped"] = run(temperature=0, stop_ids=stop)
    # A rank with no prompts still keeps pace with the other's forwards.
    mine = prompts if env.rank == 0 else []
    res["empty_rank"] = result(
        generate(model, mine, max_new_tokens=max_new, temperature=0, pad_id=PAD)
    )
    # GRPO alternates rollouts and updates: a training step on the same sharded model works.
    tokens = torch.randint(1, CFG.vocab_size, (2, 17), generator=torch.Generator().manual_seed(1))
    loss = cross_entropy_loss(model(tokens[:, :-1]), tokens[:, 1:])
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    res["train_step_ok"] = all(
        g is not None and bool(g.full_tensor().isfinite().all()) for g in grads
    )
    res["forwards_total"] = forwards[0]
    (out_dir / f"rank{env.rank}.json").write_text(json.dumps(res))
    dist.barrier()
    shutdown()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
