"""One-GPU training speed: MFU of the 1b preset, attention backends side by side.

Issue 7, point 8: MFU of the `1b` preset at 4k and 32k tokens, and the attention backends
side by side on the same packed batch.

Everything runs the trainer's own path on one CUDA device: `Transformer` built from the
preset, optional activation checkpointing and `torch.compile` per block
(`training.parallel`), FSDP2 with bf16 parameters and fp32 gradient reduction (a world of
one; `--no-fsdp` uses bf16 autocast instead), AdamW from `training.optim.adamw`. A timed
step is forward + cross-entropy + backward + optimizer step, between CUDA syncs.
MFU = tokens/s x `training.model.flops.flops_per_token` / the device's dense bf16 peak
(`flops.peak_flops`; PaLM's convention, attention counted over the whole window; the
`mfu_causal` column halves the attention term).

Batch: `--tokens-per-step` tokens per step (batch = tokens / seq_len). If a configuration
runs out of memory, the next one is tried: no checkpointing at the full batch, at half the
batch, then checkpointing at the full batch (`--ac on|off` forces one). Every measurement
is wrapped: an error is recorded in the output and the script goes on.

Backends on the packed batch (documents of exponential length, mean seq_len / 8):
`flash_varlen` (flash-attn; the script tries `pip install flash-attn` first when it is
missing and records the outcome), `doc_blocks`, `flex` (compiled flex_attention),
`sdpa` with the dense T x T mask (only up to 8k), and `causal (no doc mask)`: the same
tokens without segment ids, plain causal SDPA over whole rows (more attention work, one
kernel call; the speed ceiling the document masking is compared to). Each gets a full
training step and an attention-only forward+backward.

Run on a GPU machine: python benchmarks/train_gpu.py --out DIR [--quick] [--compile]
Writes DIR/train_gpu.json and DIR/train_gpu.md and prints both. Exits with status 2 and
a message when no CUDA device is present.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # also runnable as a plain script path
    sys.path.insert(0, str(ROOT))

DEVICE = "cuda"  # a CPU dry run of the logic may set "cpu"; the numbers then mean nothing
NO_DOCS = "causal (no doc mask)"
BACKENDS = ("flash_varlen", "doc_blocks", "flex", "sdpa", NO_DOCS)
DENSE_MAX_T = 8192  # the dense-mask reference is quadratic in memory


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="directory for the JSON and table")
    ap.add_argument("--quick", action="store_true", help="fewer steps, backends at 4k only")
    ap.add_argument("--preset", default="1b")
    ap.add_argument("--vocab", type=int, default=32768)
    ap.add_argument("--seq-lens", type=int, nargs="+", default=[4096, 32768])
    ap.add_argument("--tokens-per-step", type=int, default=65536)
    ap.add_argument("--ac", choices=("auto", "on", "off"), default="auto")
    ap.add_argument("--compile", action="store_true", help="torch.compile each block")
    ap.add_argument("--no-fsdp", action="store_true", help="bf16 autocast instead of FSDP2")
    ap.add_argument("--warmup", type=int, default=None)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--no-install", action="store_true", help="do not pip install flash-attn")
    ap.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    args = ap.parse_args(argv)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 3)
    args.steps = args.steps if args.steps is not None else (3 if args.quick else 10)
    return args


def require_cuda() -> torch.device:
    if not torch.cuda.is_available():
        print(
            "train_gpu: no CUDA device is available (torch.cuda.is_available() is False; "
            f"torch {torch.__version__}). Run this on a GPU machine.",
            file=sys.stderr,
        )
        raise SystemExit(2)
    return torch.device("cuda", 0)


def ensure_flash_attn(skip: bool) -> dict[str, Any]:
    """Import flash-attn, else try `pip install flash-attn` once; record what happened."""
    if importlib.util.find_spec("flash_attn") is not None:
        version = _flash_version()
        return {"available": version is not None, "installed_now": False, "version": version}
    if skip:
        return {"available": False, "installed_now": False, "note": "--no-install"}
    cmd = [sys.executable, "-m", "pip", "install", "--retries", "0", "--timeout", "15"]
    cmd += ["flash-attn", "--no-build-isolation"]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
        tail, rc = (done.stdout + done.stderr)[-1500:], done.returncode
    except subprocess.TimeoutExpired as exc:
        tail, rc = f"timed out after {exc.timeout} s", None
    importlib.invalidate_caches()
    version = _flash_version() if importlib.util.find_spec("flash_attn") else None
    ok = version is not None
    return {
        "available": ok,
        "installed_now": ok,
        "pip_rc": rc,
        "pip_tail": tail,
        "version": version,
    }


def _flash_version() -> str | None:
    """flash-attn's version, or None if it does not import (a broken build is recorded)."""
    try:
        return str(importlib.import_module("flash_attn").__version__)
    except Exception as exc:  # a broken install is itself a finding
        print(f"train_gpu: flash_attn is installed but does not import: {exc!r}", file=sys.stderr)
        return None


def _error(exc: BaseException) -> dict[str, str]:
    return {"error": f"{type(exc).__name__}: {exc}"[:600], "trace": traceback.format_exc()[-1500:]}


def _free() -> None:
    gc.collect()
    if DEVICE == "cuda":
        torch.cuda.empty_cache()


def _sync() -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def _reset_peak() -> None:
    if DEVICE == "cuda":
        _reset_peak()


def _peak_gib() -> float | None:
    return torch.cuda.max_memory_allocated() / 2**30 if DEVICE == "cuda" else None


def packed_batch(batch: int, seq_len: int, vocab: int, device: torch.device) -> dict:
    from benchmarks.train_step_speed import packed_segments
    from training.model.attention_backends import positions_from_segments

    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, vocab, (batch, seq_len + 1), generator=gen)
    seg = packed_segments(batch, seq_len, mean_doc=max(1, seq_len // 8))
    return {
        "inputs": tokens[:, :-1].to(device),
        "labels": tokens[:, 1:].to(device),
        "segment_ids": seg.to(device),
        "position_ids": positions_from_segments(seg).to(device),
        "n_docs": int(seg[:, 0].numel() + (seg[:, 1:] != seg[:, :-1]).sum()),
    }


class Rig:
    """A model, its optimizer and one packed batch, built the way the trainer builds them."""

    def __init__(
        self, args: argparse.Namespace, seq_len: int, batch: int, ac: bool, mesh: Any
    ) -> None:
        from training.model import ModelConfig, Transformer
        from training.model.presets import get_preset
        from training.optim.adamw import build_adamw
        from training.parallel import apply_activation_checkpointing, compile_blocks, shard_model

        spec = get_preset(args.preset)
        fields = spec.model_dump() | {"max_seq_len": max(seq_len, spec.max_seq_len)}
        self.cfg = ModelConfig(**fields, vocab_size=args.vocab)
        self.seq_len, self.batch, self.ac, self.fsdp = seq_len, batch, ac, not args.no_fsdp
        torch.manual_seed(0)
        device = torch.device("cuda", torch.cuda.current_device()) if DEVICE == "cuda" else None
        device = device or torch.device(DEVICE)
        with device:
            model = Transformer(self.cfg)
        if ac:
            apply_activation_checkpointing(model)
        if args.compile:
            compile_blocks(model)
        if self.fsdp:
            shard_model(model, mesh, torch.bfloat16)
        self.model = model
        self.optimizer = build_adamw(model, lr=1e-4, weight_decay=0.1)
        self.data = packed_batch(batch, seq_len, args.vocab, device)

    def set_backend(self, backend: str) -> None:
        self.model.cfg.attn_backend = backend  # read at every forward

    def step(self, docs: bool = True) -> None:
        from training.model import cross_entropy_loss

        d = self.data
        seg, pos = (d["segment_ids"], d["position_ids"]) if docs else (None, None)
        with torch.autocast(DEVICE, torch.bfloat16, enabled=not self.fsdp):
            loss = cross_entropy_loss(self.model(d["inputs"], pos, seg), d["labels"])
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)


def timed(fn: Callable[[], None], warmup: int, steps: int) -> list[float]:
    for _ in range(warmup):
        fn()
    _sync()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        fn()
        _sync()
        times.append(time.perf_counter() - start)
    return times


def speed_row(rig: Rig, times: list[float], peak: float | None) -> dict:
    from training.model.flops import flops_per_token, mfu

    tps = rig.batch * rig.seq_len / statistics.median(times)
    return {
        "tokens_per_s": tps,
        "step_s": statistics.median(times),
        "steps_s": times,
        "mfu": mfu(tps, flops_per_token(rig.cfg, rig.seq_len), peak),
        "mfu_causal": mfu(tps, flops_per_token(rig.cfg, rig.seq_len, causal=True), peak),
        "peak_mem_gib": _peak_gib(),
    }


def build_rig(args: argparse.Namespace, seq_len: int, mesh: Any, tried: list[dict]) -> Rig | None:
    """The first configuration that fits: full batch, half batch, then checkpointing."""
    batch = max(1, args.tokens_per_step // seq_len)
    plans = {"off": [(False, batch), (False, max(1, batch // 2))], "on": [(True, batch)]}
    order = plans["off"] + plans["on"] if args.ac == "auto" else plans[args.ac]
    for ac, b in dict.fromkeys(order):
        rig = None
        try:
            rig = Rig(args, seq_len, b, ac, mesh)
            rig.set_backend(args.mfu_backend)
            timed(rig.step, 1, 0)  # one step proves it fits
            tried.append({"seq_len": seq_len, "batch": b, "ac": ac, "fits": True})
            return rig
        except torch.OutOfMemoryError as exc:
            tried.append(
                {"seq_len": seq_len, "batch": b, "ac": ac, "fits": False, "error": str(exc)[:200]}
            )
        del rig
        _free()
    return None


def attention_only(rig: Rig, backend: str, docs: bool, warmup: int, steps: int) -> dict:
    """Forward+backward of `attend` alone on the rig's batch shape, bf16."""
    from training.model.attention import attend, build_layout

    cfg, seg = rig.cfg, rig.data["segment_ids"]

    def leaf(heads: int) -> torch.Tensor:
        shape = (rig.batch, rig.seq_len, heads, cfg.head_dim)
        return torch.randn(shape, device=seg.device, dtype=torch.bfloat16, requires_grad=True)

    q, k, v = leaf(cfg.n_heads), leaf(cfg.n_kv_heads), leaf(cfg.n_kv_heads)
    layout = build_layout(seg, backend) if docs else build_layout(None, "doc_blocks")
    times = timed(lambda: attend(q, k, v, layout).sum().backward(), warmup, steps)
    return {"attn_ms": 1e3 * statistics.median(times)}


def measure_backend(rig: Rig, backend: str, args: argparse.Namespace, report: dict) -> dict:
    """A full training step and `attend` alone with one backend, on the rig's batch."""
    if backend == "flash_varlen" and not report["flash_attn"]["available"]:
        return {"error": "flash_attn not installed"}
    if backend == "sdpa" and rig.seq_len > DENSE_MAX_T:
        return {"error": f"skipped: dense T x T mask above T = {DENSE_MAX_T}"}
    docs = backend != NO_DOCS
    try:
        rig.set_backend(backend if docs else "doc_blocks")
        _reset_peak()
        times = timed(partial(rig.step, docs), args.warmup, args.steps)
        row = speed_row(rig, times, report["env"]["peak_flops_bf16"])
        return row | attention_only(rig, backend, docs, args.warmup, args.steps)
    except Exception as exc:  # recorded; the next backend still runs
        _free()
        return _error(exc)


def measure_length(args: argparse.Namespace, seq_len: int, mesh: Any, report: dict) -> None:
    """MFU at one window length, then (unless skipped) every backend on the same rig."""
    try:
        rig = build_rig(args, seq_len, mesh, report["configs_tried"])
    except Exception as exc:  # recorded; the next length still runs
        report["mfu"].append({"seq_len": seq_len, **_error(exc)})
        _free()
        return
    if rig is None:
        report["mfu"].append({"seq_len": seq_len, "error": "out of memory in every config"})
        return
    base = {"seq_len": seq_len, "batch": rig.batch, "ac": rig.ac, "compile": args.compile}
    base |= {"fsdp": rig.fsdp, "n_docs": rig.data["n_docs"]}
    try:
        _reset_peak()
        times = timed(rig.step, args.warmup, args.steps)
        row = speed_row(rig, times, report["env"]["peak_flops_bf16"])
        report["mfu"].append({**base, "backend": args.mfu_backend, **row})
    except Exception as exc:  # recorded
        report["mfu"].append({**base, **_error(exc)})
    if not args.quick or seq_len == args.seq_lens[0]:  # --quick: backends at one length
        for backend in args.backends:
            row = measure_backend(rig, backend, args, report)
            report["backends"].append({**base, "backend": backend, **row})
    del rig
    _free()


def markdown(report: dict) -> str:
    env = report["env"]
    lines = [
        f"# train_gpu ({env['date']})",
        "",
        f"{env['device_name']}, torch {env['torch']}, CUDA {env['cuda']}, bf16 dense peak "
        f"{_fmt(env['peak_flops_bf16'], 1e12, 'TFLOP/s') or 'unknown'}, flash-attn "
        f"{report['flash_attn'].get('version') or 'unavailable'}, preset "
        f"{env['preset']} (vocab {env['vocab']}), compile {env['compile']}",
        "",
    ]
    head = (
        "| seq_len | backend | batch | AC | tokens/s | MFU | MFU (causal) | step s "
        "| attn fwd+bwd ms | peak GiB | error |"
    )
    for title, rows in (
        ("MFU (training step)", report["mfu"]),
        ("Attention backends, same packed batch", report["backends"]),
    ):
        lines += [f"## {title}", "", head, "|" + "---|" * 11]
        for r in rows:
            lines.append(
                f"| {r['seq_len']} | {r.get('backend', '')} | {r.get('batch', '')} "
                f"| {r.get('ac', '')} | {_fmt(r.get('tokens_per_s'), 1, '')} "
                f"| {_pct(r.get('mfu'))} | {_pct(r.get('mfu_causal'))} "
                f"| {_fmt(r.get('step_s'), 1, '', 3)} | {_fmt(r.get('attn_ms'), 1, '')} "
                f"| {_fmt(r.get('peak_mem_gib'), 1, '')} | {r.get('error', '')[:80]} |"
            )
        lines.append("")
    return "\n".join(lines)


def _fmt(x: float | None, scale: float, unit: str, digits: int = 1) -> str:
    return "" if x is None else f"{x / scale:,.{digits}f} {unit}".strip()


def _pct(x: float | None) -> str:
    return "null" if x is None else f"{100 * x:.1f}%"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = require_cuda()
    os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")  # fewer OOMs
    from benchmarks.machine_info import machine_info
    from training.model.flops import peak_flops
    from training.parallel import init_distributed, shutdown

    args.out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}}
    report |= {"flash_attn": ensure_flash_attn(args.no_install)}
    report |= {"configs_tried": [], "mfu": [], "backends": []}
    peak = peak_flops(device, torch.bfloat16)  # None if the device is not in the table
    # What `auto` picks for bf16 on CUDA, unless flash-attn is present but broken.
    args.mfu_backend = "flash_varlen" if report["flash_attn"]["available"] else "doc_blocks"
    cuda = DEVICE == "cuda"
    mem = torch.cuda.get_device_properties(device).total_memory / 2**30 if cuda else None
    report["env"] = machine_info() | {
        "device_name": torch.cuda.get_device_name(device) if cuda else DEVICE, "gpu_mem_gib": mem,
        "torch": torch.__version__, "cuda": torch.version.cuda, "peak_flops_bf16": peak,
        "preset": args.preset, "vocab": args.vocab, "compile": args.compile,
    }  # fmt: skip
    env = init_distributed(DEVICE)
    try:
        for seq_len in args.seq_lens:
            measure_length(args, seq_len, env.mesh, report)
            (args.out / "train_gpu.json").write_text(json.dumps(report, indent=2))
    finally:
        shutdown()
    table = markdown(report)
    (args.out / "train_gpu.json").write_text(json.dumps(report, indent=2))
    (args.out / "train_gpu.md").write_text(table + "\n")
    print(json.dumps({k: report[k] for k in ("env", "flash_attn", "configs_tried")}, indent=2))
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
