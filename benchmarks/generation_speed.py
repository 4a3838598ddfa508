"""Generation speed on CPU (issue 8, point 3): our KV-cache `generate` against a no-cache
greedy loop on the same model and against transformers' `LlamaForCausalLM.generate`
holding the same weights (exported by `training.interop.hf_llama`).

The `demo` preset (vocab 8192), fp32, greedy, a batch of equal-length prompts so that
HF needs no padding; every contender makes exactly `--new` tokens per row (HF:
`min_new_tokens`, no EOS). Contenders:
- `ours, KV cache`: `training.generation.generate` (prefill, then one token per step);
- `ours, KV cache, left-padded`: the same prompts cut to lengths spread over
  [prompt/2, prompt] (the same token count, as in GRPO/eval batches), for information;
- `ours, no cache`: the textbook loop, one full forward of the growing sequence per token
  (what `training/eval/passkey.py` does, there in a fixed window);
- `HF generate`: `LlamaForCausalLM.generate(do_sample=False)`, sdpa attention, its
  default dynamic KV cache.
Rounds alternate the contenders; ratios are medians of per-round paired ratios, so a load
burst from other processes falls on both sides. Greedy outputs are compared token by token
(near-ties in an untrained model's logits may flip an argmax between implementations).

Run: .venv/bin/python -m benchmarks.generation_speed  (~3 min on 2 quiet cores)
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from benchmarks.machine_info import machine_info
from training.generation import generate
from training.interop.hf_llama import hf_config, to_hf_state_dict
from training.model import ModelConfig, Transformer
from training.model.presets import get_preset

OUT = Path("benchmarks/out/generation_speed.json")
CACHED, PADDED, NO_CACHE, HF = (
    "ours, KV cache",
    "ours, KV cache, left-padded",
    "ours, no cache",
    "HF generate (KV cache)",
)


@torch.no_grad()
def no_cache_greedy(model: Transformer, prompts: torch.Tensor, n_new: int) -> torch.Tensor:
    seq = prompts
    for _ in range(n_new):
        seq = torch.cat((seq, model(seq)[:, -1:].argmax(-1)), dim=1)
    return seq[:, prompts.shape[1] :]


def timed(fn: Callable[[], object]) -> tuple[float, float, object]:
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--new", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    import transformers
    from transformers import LlamaForCausalLM

    cfg = ModelConfig(**get_preset("demo").model_dump(), vocab_size=8192)
    torch.manual_seed(0)
    ours = Transformer(cfg).eval()
    config = hf_config(cfg)
    config._attn_implementation = "sdpa"
    hf = LlamaForCausalLM(config).eval()
    hf.load_state_dict(to_hf_state_dict(ours.state_dict(), cfg), strict=True)

    gen = torch.Generator().manual_seed(1)
    prompts = torch.randint(1, cfg.vocab_size, (args.batch, args.prompt), generator=gen)
    rows = prompts.tolist()
    cut = torch.linspace(args.prompt // 2, args.prompt, args.batch).long().tolist()
    ragged = [row[args.prompt - n :] for row, n in zip(rows, cut, strict=True)]
    n = args.new

    def hf_generate() -> torch.Tensor:
        out = hf.generate(
            input_ids=prompts,
            attention_mask=torch.ones_like(prompts),
            max_new_tokens=n,
            min_new_tokens=n,
            do_sample=False,
            pad_token_id=0,
        )
        return out[:, args.prompt :]

    contenders: dict[str, Callable[[], object]] = {
        CACHED: lambda: generate(ours, rows, max_new_tokens=n, temperature=0, pad_id=0).tokens,
        PADDED: lambda: generate(ours, ragged, max_new_tokens=n, temperature=0, pad_id=0).tokens,
        NO_CACHE: lambda: no_cache_greedy(ours, prompts, n),
        HF: hf_generate,
    }
    for fn in contenders.values():  # warm-up (allocator, thread pool, HF's first call)
        fn()
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in contenders}
    outputs: dict[str, torch.Tensor] = {}
    for _ in range(args.rounds):
        for name, fn in contenders.items():
            wall, cpu, out = timed(fn)
            times[name].append((wall, cpu))
            outputs[name] = out  # type: ignore[assignment]

    n_tokens = args.batch * n
    table = []
    for name, ts in times.items():
        wall = [w for w, _ in ts]
        table.append(
            {
                "name": name,
                "tokens_per_s": n_tokens / statistics.median(wall),
                "tokens_per_cpu_s": n_tokens / statistics.median([c for _, c in ts]),
                "best_tokens_per_s": n_tokens / min(wall),
                "vs_no_cache": statistics.median(
                    [r[0] / w for r, w in zip(times[NO_CACHE], wall, strict=True)]
                ),
                "vs_hf": statistics.median(
                    [r[0] / w for r, w in zip(times[HF], wall, strict=True)]
                ),
                "wall_s": wall,
            }
        )
    agree = {k: float((outputs[k] == outputs[CACHED]).float().mean()) for k in (NO_CACHE, HF)}
    report = {
        "machine": machine_info(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "threads": args.threads,
        "config": cfg.model_dump(),
        "params": sum(p.numel() for p in ours.parameters()),
        "batch": args.batch,
        "prompt_len": args.prompt,
        "ragged_prompt_lens": cut,
        "new_tokens": n,
        "rounds": args.rounds,
        "greedy_token_agreement_with_cached": agree,
        "rows": table,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(report["machine"])
    print(
        f"torch {torch.__version__}, transformers {transformers.__version__}, {args.threads} "
        f"threads; demo preset {report['params'] / 1e6:.2f}M params, fp32; batch {args.batch}, "
        f"prompt {args.prompt}, {n} new tokens per row; median of {args.rounds} rounds"
    )
    print(f"greedy tokens equal to ours (KV cache): {agree}")
    print(
        f"{'contender':30} {'tok/s':>9} {'per CPU-s':>10} {'best':>9} {'vs no-cache':>12} {'vs HF':>7}"
    )
    for r in table:
        print(
            f"{r['name']:30} {r['tokens_per_s']:9.0f} {r['tokens_per_cpu_s']:10.0f} "
            f"{r['best_tokens_per_s']:9.0f} {r['vs_no_cache']:11.2f}x {r['vs_hf']:6.2f}x"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
