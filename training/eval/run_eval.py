"""`run_eval`: every evaluation of one checkpoint, in one process, as rows of JSON.

The checkpoint is loaded unsharded (DCP reassembles any world size's shards) with the
model shape from the run's plan and the RoPE base / YaRN of the checkpoint's stage, as
`sharpen export` does (`interop/export.py`); plan.yaml and tokenizer.json are found in
the run directory unless given. Parts run only when asked, except passkey, which runs at
the checkpoint stage's seq_len unless `passkey_lengths=()`:

* perplexity per domain on the given (held-out) stages' shards (`perplexity.py`),
* passkey retrieval accuracy at each length (`passkey.py`),
* exact match on math problems with the math verifier (`math_eval.py`),
* pass@k on code problems with the sandbox (`code_eval.py`).

Every row has `eval`, `subset`, `metric`, `value`, `n` (what the value averages over),
part-specific fields, and the checkpoint's path, stage and global step, so rows appended
to one `eval.jsonl` from several checkpoints stay apart. Seeded: the same call gives the
same values on the same device.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from training.interop.export import (
    PLAN_NAMES,
    TOKENIZER_NAMES,
    find_in_run,
    find_tokenizer,
    load_checkpoint_model,
    resolve_checkpoint,
)
from training.model.llama import Transformer
from training.plan import TrainPlan, load_plan

log = logging.getLogger(__name__)


@dataclass
class LoadedCheckpoint:
    """The model under evaluation and what was found beside it."""

    model: Transformer
    checkpoint: Path
    run_dir: Path
    state: dict[str, Any]
    plan: TrainPlan
    tokenizer: Any | None
    tokenizer_path: Path | None

    @property
    def stage_seq_len(self) -> int:
        return self.plan.stages[self.state["stage_index"]].seq_len


def resolve_device(device: str | torch.device) -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_for_eval(
    checkpoint: str | Path,
    *,
    plan: TrainPlan | str | Path | None = None,
    tokenizer: str | Path | None = None,
    device: str | torch.device = "auto",
) -> LoadedCheckpoint:
    """The checkpoint's fp32 model on `device`, with its plan and tokenizer (None if the
    run saved none and none was given)."""
    from mixtures.tokenizer import load_tokenizer

    ckpt = resolve_checkpoint(Path(checkpoint))
    if plan is None:
        plan = find_in_run(ckpt, PLAN_NAMES)
        if plan is None:
            raise ValueError(f"{ckpt}: no plan.yaml beside the run; pass the run's plan (--plan)")
    if not isinstance(plan, TrainPlan):
        plan = load_plan(plan)
    model, state = load_checkpoint_model(ckpt, plan)
    tok_path = find_tokenizer(Path(tokenizer)) if tokenizer else find_in_run(ckpt, TOKENIZER_NAMES)
    tok = load_tokenizer(tok_path) if tok_path else None
    if tok is not None and tok.get_vocab_size() > model.cfg.vocab_size:
        raise ValueError(
            f"{tok_path}: {tok.get_vocab_size()} tokens but the checkpoint embeds "
            f"{model.cfg.vocab_size}: not the run's tokenizer"
        )
    model.to(resolve_device(device))
    return LoadedCheckpoint(model, ckpt, run_dir_of(ckpt), state, plan, tok, tok_path)


def run_dir_of(checkpoint: Path) -> Path:
    """RUN for RUN/checkpoints/STAGE (where eval.jsonl goes by default)."""
    return (
        checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent
    )


def _row(part: str, subset: str, row: dict[str, Any], common: dict[str, Any]) -> dict[str, Any]:
    """`eval`, `subset`, `metric`, `value`, `n` first, then the rest."""
    head = {k: row[k] for k in ("metric", "value", "n")}
    return {"eval": part, "subset": subset, **head, **row, **common}


def _needs_tokenizer(loaded: LoadedCheckpoint, what: str) -> Any:
    if loaded.tokenizer is None:
        raise ValueError(f"{loaded.checkpoint}: {what} needs the run's tokenizer (--tokenizer)")
    return loaded.tokenizer


def _perplexity(
    loaded: LoadedCheckpoint, stage_dir: Path, seq_len: int, max_tokens: int, batch_size: int
) -> list[dict[str, Any]]:
    from mixtures.shards import StageShards
    from mixtures.tokenizer import sha256_file
    from training.eval.perplexity import domain_perplexity

    shards = StageShards.open(stage_dir, verify="on_read")
    want = shards.manifest["tokenizer"]["sha256"]
    if loaded.tokenizer_path is not None and sha256_file(loaded.tokenizer_path) != want:
        raise ValueError(
            f"{stage_dir} was tokenised with another tokenizer than {loaded.tokenizer_path}: "
            "its perplexity would mean nothing"
        )
    rows = domain_perplexity(
        loaded.model, shards, seq_len=seq_len, max_tokens=max_tokens, batch_size=batch_size
    )
    for r in rows:
        r.update(metric="ppl", n=r["tokens"], data=str(stage_dir), seq_len=seq_len)
    return rows


def run_eval(
    checkpoint: str | Path,
    *,
    shards: Sequence[str | Path] = (),
    seq_len: int | None = None,
    max_tokens: int = 1_000_000,
    passkey_lengths: Sequence[int] | None = None,
    passkey_samples: int = 8,
    math: str | Path | None = None,
    code: str | Path | None = None,
    ks: Sequence[int] = (1, 5),
    samples: int = 10,
    max_new_tokens: int = 256,
    temperature: float = 0.8,
    top_p: float = 0.95,
    batch_size: int = 8,
    prompt_format: str = "auto",
    plan: TrainPlan | str | Path | None = None,
    tokenizer: str | Path | None = None,
    output: str | Path | None = None,
    write: bool = True,
    completions: str | Path | None = None,
    seed: int = 0,
    device: str | torch.device = "auto",
) -> list[dict[str, Any]]:
    """Evaluate a checkpoint (or a run's latest); returns the rows, and with `write`
    appends them to `output` (default `<run>/eval.jsonl`). `seq_len` (perplexity windows)
    and `passkey_lengths` default to the checkpoint stage's seq_len; `completions` writes
    every math/code completion with its score."""
    from training.eval.code_eval import code_eval
    from training.eval.completions import Prompter
    from training.eval.math_eval import math_eval
    from training.eval.passkey import passkey_accuracy

    if code is not None and not all(1 <= k <= samples for k in ks):
        raise ValueError(f"k {list(ks)} must lie in [1, samples={samples}]: raise --samples")
    for path in (math, code):  # before minutes of perplexity, not after
        if path is not None and not Path(path).is_file():
            raise FileNotFoundError(f"{path}: no such problem file")
    torch.manual_seed(seed)
    loaded = load_for_eval(checkpoint, plan=plan, tokenizer=tokenizer, device=device)
    model, window = loaded.model, loaded.model.cfg.max_seq_len
    common = {
        "checkpoint": str(loaded.checkpoint),
        "stage": loaded.state["stage"],
        "step": loaded.state["global_step"],
        "seed": seed,
    }
    rows: list[dict[str, Any]] = []
    records: list[dict[str, Any]] = []
    started = time.perf_counter()

    for stage_dir in map(Path, shards):
        for r in _perplexity(
            loaded, stage_dir, seq_len or loaded.stage_seq_len, max_tokens, batch_size
        ):
            rows.append(_row("perplexity", f"{stage_dir.name}/{r['domain']}", r, common))
        log.info("perplexity on %s done (%.1f s)", stage_dir, time.perf_counter() - started)

    lengths = passkey_lengths
    if lengths is None:
        lengths = [loaded.stage_seq_len] if loaded.tokenizer is not None else []
        if loaded.tokenizer is None:
            log.warning("%s: no tokenizer saved with the run: passkey skipped", loaded.checkpoint)
    for length in lengths:
        if length > window:
            raise ValueError(f"passkey length {length} > model.max_seq_len={window}")
        r = passkey_accuracy(
            model,
            _needs_tokenizer(loaded, "passkey"),
            length,
            n_samples=passkey_samples,
            seed=seed,
            batch_size=batch_size,
        )
        r["metric"], r["value"] = "accuracy", r.pop("accuracy")
        rows.append(_row("passkey", f"len {length}", r, common))
        log.info("passkey at %d: %.3f (%.1f s)", length, r["value"], time.perf_counter() - started)

    if math is not None or code is not None:
        tok = _needs_tokenizer(loaded, "math and code evaluation")
        prompter = Prompter.create(tok, prompt_format)
    if math is not None:
        r, done = math_eval(
            model, prompter, math, max_new_tokens=max_new_tokens, batch_size=batch_size
        )
        rows.append(_row("math", Path(math).name, {**r, "file": str(math)}, common))
        records += [{"eval": "math", **d} for d in done]
        log.info("math: exact match %.3f (%.1f s)", r["value"], time.perf_counter() - started)
    if code is not None:
        part_rows, done = code_eval(
            model,
            prompter,
            code,
            ks=ks,
            samples=samples,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_p=top_p,
            batch_size=batch_size,
            seed=seed,
        )
        rows += [_row("code", Path(code).name, {**r, "file": str(code)}, common) for r in part_rows]
        records += [{"eval": "code", **d} for d in done]
        scores = ", ".join(f"{r['metric']} {r['value']:.3f}" for r in part_rows)
        log.info("code: %s (%.1f s)", scores, time.perf_counter() - started)

    if write and rows:
        out = Path(output) if output is not None else loaded.run_dir / "eval.jsonl"
        _write_jsonl(out, rows, append=True)
        log.info("appended %d rows to %s", len(rows), out)
    if completions is not None:
        _write_jsonl(Path(completions), [{**r, **common} for r in records], append=False)
    return rows


def _write_jsonl(path: Path, rows: list[dict[str, Any]], *, append: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a" if append else "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """The rows as an aligned text table: eval, subset, metric, value, n."""
    head = ("eval", "subset", "metric", "value", "n")
    cells = [head] + [
        (r["eval"], r["subset"], r["metric"], _number(r["value"]), str(r["n"])) for r in rows
    ]
    widths = [max(len(c[i]) for c in cells) for i in range(len(head))]
    lines = []
    for c in cells:
        left = [c[i].ljust(widths[i]) for i in range(3)]
        right = [c[i].rjust(widths[i]) for i in range(3, 5)]
        lines.append("  ".join(left + right).rstrip())
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _number(value: float) -> str:
    return f"{value:.4f}" if abs(value) < 1000 else f"{value:.1f}"
