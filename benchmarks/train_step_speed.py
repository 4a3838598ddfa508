"""Training-step speed, side by side (issue 7, point 8): our Transformer vs transformers'
LlamaForCausalLM with the same configuration and weights, on CPU, in one run.

A step is what the trainer does per batch: forward, next-token cross-entropy (the same
`cross_entropy_loss` for both), backward, AdamW (`training.optim.adamw.build_adamw`, the
same settings for both), zero grads. Both models get the same shape (~7M parameters, GQA,
SwiGLU, untied head, vocab 8192), fp32, the same batch; HF runs
`attn_implementation="sdpa"` without a KV cache (a training configuration). HF is built
from our config by `training.interop.hf_llama` and loaded with our weights; the logits
are checked equal once before timing, so both compute the same function.

Timing: warm-up steps for each, then rounds that alternate the contenders step by step.
`vs HF` is the median over rounds of the paired ratio (HF step / this step): a load burst
from other processes falls on both sides of a pair. Also printed: tokens per CPU-second
and best-of-rounds. Lines:
- `ours (causal)`: no segment ids, one document per row: plain causal SDPA (like HF);
- `ours (packed docs, doc_blocks)`: the same batch with packed documents of random
  length (segment ids, positions restarting per document), the trainer's real input. HF's
  SDPA path has no document masking, so this line is compared against HF causal for
  information only (it does less attention work, in more kernel calls).

Run: .venv/bin/python -m benchmarks.train_step_speed  (~1 min on 2 quiet cores)
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from benchmarks.machine_info import machine_info
from training.interop.hf_llama import hf_config, to_hf_state_dict
from training.model import ModelConfig, Transformer, cross_entropy_loss
from training.model.attention_backends import doc_groups, positions_from_segments
from training.model.flops import flops_per_token
from training.optim.adamw import build_adamw

OUT = Path("benchmarks/out/train_step_speed.json")
HF_NAME = "hf LlamaForCausalLM (sdpa, causal)"
CFG = ModelConfig(
    dim=256,
    n_layers=4,
    n_heads=4,
    n_kv_heads=2,
    ffn_hidden=688,
    max_seq_len=512,
    vocab_size=8192,
    attn_backend="doc_blocks",
)


def packed_segments(batch: int, seq_len: int, mean_doc: int, seed: int = 0) -> torch.Tensor:
    """(B, T) segment ids: documents of exponential length (mean `mean_doc`, at least 1)."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(batch):
        lengths: list[int] = []
        while sum(lengths) < seq_len:
            lengths.append(max(1, int(rng.exponential(mean_doc))))
        lengths[-1] -= sum(lengths) - seq_len
        rows.append(np.repeat(np.arange(len(lengths)), lengths))
    return torch.from_numpy(np.stack(rows))


def build_pair(cfg: ModelConfig) -> tuple[Transformer, nn.Module]:
    """Ours, and HF's LlamaForCausalLM holding the same weights (sdpa attention)."""
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    ours = Transformer(cfg)
    config = hf_config(cfg)
    config._attn_implementation = "sdpa"
    config.use_cache = False  # training: no KV cache copies (HF's default would add them)
    hf = LlamaForCausalLM(config)
    hf.load_state_dict(to_hf_state_dict(ours.state_dict(), cfg), strict=True)
    return ours.train(), hf.train()


@torch.no_grad()
def check_same_function(ours: Transformer, hf: nn.Module, tokens: torch.Tensor) -> float:
    diff = (ours(tokens) - hf(input_ids=tokens).logits).abs().max().item()
    if diff > 1e-4:
        raise SystemExit(f"ours and HF disagree on logits (max abs diff {diff:.2e})")
    return diff


def make_step(
    model: nn.Module, forward: Callable[[], torch.Tensor], labels: torch.Tensor
) -> Callable[[], tuple[float, float]]:
    """One timed training step (forward, loss, backward, AdamW, zero grads): wall and CPU s."""
    optimizer = build_adamw(model, lr=3e-4, weight_decay=0.1)

    def step() -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        loss = cross_entropy_loss(forward(), labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return time.perf_counter() - wall, time.process_time() - cpu

    return step


def summarise(times: dict[str, list[tuple[float, float]]], ref: str, n_tokens: int) -> list[dict]:
    """Per contender: median tokens/s (wall and per CPU-second), and the ratio to `ref`.

    `vs_hf` is the median over rounds of the paired ratio ref_step / this_step: rounds are
    adjacent in time, so a load burst from other processes shifts both sides of a pair.
    """
    rows = []
    for name, ts in times.items():
        wall, cpu = [w for w, _ in ts], [c for _, c in ts]
        paired = [r[0] / w for r, w in zip(times[ref], wall, strict=True)]
        paired_cpu = [r[1] / c for r, c in zip(times[ref], cpu, strict=True)]
        rows.append(
            {
                "name": name,
                "tokens_per_s": n_tokens / statistics.median(wall),
                "tokens_per_cpu_s": n_tokens / statistics.median(cpu),
                "best_tokens_per_s": n_tokens / min(wall),
                "vs_hf": statistics.median(paired),
                "vs_hf_cpu": statistics.median(paired_cpu),
                "vs_hf_best": min(times[ref])[0] / min(wall),
                "median_step_s": statistics.median(wall),
                "step_wall_s": wall,
                "step_cpu_s": cpu,
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--mean-doc", type=int, default=128, help="mean packed document length")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    import transformers

    cfg = CFG.model_copy(update={"max_seq_len": args.seq_len})
    ours, hf = build_pair(cfg)
    gen = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, cfg.vocab_size, (args.batch, args.seq_len + 1), generator=gen)
    inputs, labels = tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()
    diff = check_same_function(ours.eval(), hf.eval(), inputs)
    ours.train()
    hf.train()

    seg = packed_segments(args.batch, args.seq_len, args.mean_doc)
    pos = positions_from_segments(seg)
    n_groups = len(doc_groups(seg)[2])
    steps = {
        "ours (causal)": make_step(ours, lambda: ours(inputs), labels),
        "ours (packed docs, doc_blocks)": make_step(ours, lambda: ours(inputs, pos, seg), labels),
        HF_NAME: make_step(hf, lambda: hf(input_ids=inputs).logits, labels),
    }
    # Each line has its own AdamW; both of ours update the same model, so its weights
    # keep moving between them (the speed does not depend on the values).
    for step in steps.values():
        for _ in range(args.warmup):
            step()
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in steps}
    for _ in range(args.rounds):
        for name, step in steps.items():
            times[name].append(step())

    n_tokens = args.batch * args.seq_len
    rows = summarise(times, HF_NAME, n_tokens)
    info = machine_info()
    n_params = sum(p.numel() for p in ours.parameters())
    report = {
        "machine": info,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "threads": args.threads,
        "config": cfg.model_dump(),
        "params": n_params,
        "batch": args.batch,
        "seq_len": args.seq_len,
        "rounds": args.rounds,
        "warmup": args.warmup,
        "packed_docs": int(pos.eq(0).sum()),
        "packed_length_groups": n_groups,
        "logits_max_abs_diff": diff,
        "gflop_per_step": flops_per_token(cfg, args.seq_len) * n_tokens / 1e9,
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))

    print(info)
    print(
        f"torch {torch.__version__}, transformers {transformers.__version__}, "
        f"{args.threads} threads; {n_params / 1e6:.2f}M params, batch {args.batch} x "
        f"{args.seq_len}, fp32; packed: {report['packed_docs']} docs in {n_groups} "
        f"length groups; logits max |ours - HF| = {diff:.1e}"
    )
    print(f"median of {args.rounds} alternating rounds after {args.warmup} warm-up steps each")
    print(
        "| model | tokens/s (median) | per CPU-s | best | vs HF: paired median "
        "| by CPU-s | best vs best |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['name']} | {r['tokens_per_s']:,.0f} | {r['tokens_per_cpu_s']:,.0f} "
            f"| {r['best_tokens_per_s']:,.0f} | **{r['vs_hf']:.3f}x** | {r['vs_hf_cpu']:.3f}x "
            f"| {r['vs_hf_best']:.3f}x |"
        )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
