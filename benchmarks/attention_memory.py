"""Peak memory of one forward+backward against window length, per attention backend.

Each configuration runs in a fresh child process. The number reported is the child's peak
resident set size during the step (`ru_maxrss` read after the step) minus its RSS just
before it: the model, inputs and imports are already resident, so the delta is what the
step itself adds (activations saved for backward, attention transients, gradients).
`tracemalloc` cannot see torch's allocations and CPU torch keeps no allocator statistics,
so RSS is the honest measure; glibc returns large freed blocks to the OS, so it tracks
live tensors closely. If the child's peak before the step already exceeded what the step
reaches, the row is flagged (the delta would then be a lower bound).

Linear memory shows as memory(32k) / memory(4k) near 8; a T x T mask or score matrix
drives it towards 64. The dense `sdpa` reference runs only where its extrapolated peak
fits in `--dense-budget-gib`.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.machine_info import machine_info

LENGTHS = (4096, 8192, 16384, 32768)
OUT = Path("benchmarks/out/attention_memory.json")
GIB = 1 << 30


def segment_ids(seqlen: int, layout: str) -> np.ndarray:
    """`packed`: documents of varied length (mean ~T/8, some tiny); `one_doc`: one spans the row."""
    if layout == "one_doc":
        return np.zeros((1, seqlen), dtype=np.int64)
    rng = np.random.default_rng(0)
    lengths: list[int] = []
    while sum(lengths) < seqlen:
        lengths.append(int(rng.choice([1, 17, seqlen // 16, seqlen // 8, seqlen // 4])))
    lengths[-1] -= sum(lengths) - seqlen
    return np.repeat(np.arange(len(lengths)), lengths)[None, :]


def child(backend: str, seqlen: int, layout: str) -> dict:
    """One fresh process: build, then measure the first step's RSS peak; time a second step."""
    import psutil
    import torch

    from training.model import ModelConfig, Transformer
    from training.model.attention_backends import positions_from_segments
    from training.model.llama import cross_entropy_loss

    torch.manual_seed(0)
    cfg = ModelConfig(
        dim=256,
        n_layers=2,
        n_heads=4,
        n_kv_heads=2,
        ffn_hidden=688,
        max_seq_len=seqlen,
        vocab_size=512,
        attn_backend=backend,
    )
    model = Transformer(cfg)
    seg = torch.from_numpy(segment_ids(seqlen, layout))
    pos = positions_from_segments(seg)
    tokens = torch.randint(0, cfg.vocab_size, (1, seqlen))
    labels = torch.roll(tokens, -1, dims=1)

    def step() -> float:
        start = time.perf_counter()
        cross_entropy_loss(model(tokens, pos, seg), labels).backward()
        model.zero_grad(set_to_none=True)
        return time.perf_counter() - start

    rss_before = psutil.Process().memory_info().rss
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    first_s = step()
    peak_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    second_s = step()
    return {
        "backend": backend,
        "layout": layout,
        "seqlen": seqlen,
        "n_docs": int(seg.max()) + 1,
        "peak_delta_gib": (peak_after - rss_before) / GIB,
        "lower_bound": peak_before >= peak_after,
        "rss_before_gib": rss_before / GIB,
        "first_step_s": first_s,
        "step_s": second_s,
    }


def run_child(backend: str, seqlen: int, layout: str) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.attention_memory", "--child", backend]
    cmd += [str(seqlen), layout]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode:
        return {"backend": backend, "layout": layout, "seqlen": seqlen, "error": done.stderr[-800:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def dense_estimate_gib(rows: list[dict], seqlen: int) -> float:
    """Extrapolate the dense reference: its largest measured peak, scaled quadratically."""
    last = max((r for r in rows if "peak_delta_gib" in r), key=lambda r: r["seqlen"])
    return last["peak_delta_gib"] * (seqlen / last["seqlen"]) ** 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=["doc_blocks", "sdpa"])
    parser.add_argument("--layouts", nargs="+", default=["packed", "one_doc"])
    parser.add_argument("--lengths", nargs="+", type=int, default=list(LENGTHS))
    parser.add_argument("--dense-budget-gib", type=float, default=16.0)
    args = parser.parse_args()
    results: list[dict] = []
    for backend in args.backends:
        for layout in args.layouts:
            rows: list[dict] = []
            for seqlen in args.lengths:
                if backend == "sdpa" and rows:
                    need = dense_estimate_gib(rows, seqlen)
                    if need > args.dense_budget_gib:
                        rows.append(
                            {
                                "backend": backend,
                                "layout": layout,
                                "seqlen": seqlen,
                                "skipped": f"not run: would need ~{need:.0f} GiB",
                            }
                        )
                        continue
                rows.append(run_child(backend, seqlen, layout))
                print(json.dumps(rows[-1]), flush=True)
            results.extend(rows)
    report(results)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"machine": machine_info(), "results": results}, indent=1))


def report(results: list[dict]) -> None:
    print("\n| backend | layout | T | docs | peak delta (GiB) | step (s) |")
    print("|---|---|---|---|---|---|")
    for r in results:
        if "peak_delta_gib" in r:
            flag = " (lower bound)" if r["lower_bound"] else ""
            print(
                f"| {r['backend']} | {r['layout']} | {r['seqlen']} | {r['n_docs']} "
                f"| {r['peak_delta_gib']:.3f}{flag} | {r['step_s']:.2f} |"
            )
        else:
            note = r.get("skipped") or "error: " + r["error"].strip().splitlines()[-1]
            print(f"| {r['backend']} | {r['layout']} | {r['seqlen']} | | {note} | |")
    keyed = {(r["backend"], r["layout"], r["seqlen"]): r for r in results}
    for backend, layout, _ in sorted({k for k in keyed if k[2] == 4096}):
        lo, hi = keyed[(backend, layout, 4096)], keyed.get((backend, layout, 32768), {})
        if "peak_delta_gib" in lo and "peak_delta_gib" in hi:
            ratio = hi["peak_delta_gib"] / lo["peak_delta_gib"]
            print(
                f"{backend}/{layout}: memory(32k) / memory(4k) = {ratio:.1f}x "
                "(linear ~8x, quadratic ~64x)"
            )


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        print(json.dumps(child(sys.argv[2], int(sys.argv[3]), sys.argv[4])))
    else:
        main()
