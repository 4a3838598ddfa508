"""Metrics as JSON lines, one per optimizer step, written by rank 0 only.

The file is never truncated in place, because it is the only record of a run's curve:
- each line is appended and flushed, so a killed run keeps every finished step; a kill
  in the middle of a write leaves at most a torn last line, which readers drop;
- on resume, the lines past the checkpoint's step (steps that run again) are dropped by
  writing the kept lines to a temporary file and renaming it over the old one, so a kill
  during the rewrite leaves either the old file or the new one, never half of either;
- a fresh start over an existing file moves it aside to `metrics.jsonl.prev-N` instead of
  overwriting it (the previous run may have died before its first checkpoint).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import IO, Any

log = logging.getLogger(__name__)


class MetricsWriter:
    def __init__(self, path: Path, *, enabled: bool, keep_through_step: int | None = None) -> None:
        """keep_through_step: resume (keep lines with step <= it); None: start a fresh file."""
        self.path, self.enabled = path, enabled
        self._file: IO[str] | None = None
        if not enabled:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        if keep_through_step is None:
            move_aside(path)
        elif path.is_file():
            self._trim(keep_through_step)
        self._file = path.open("a", encoding="utf-8")

    def _trim(self, keep_through_step: int) -> None:
        """Drop the lines of steps that run again; rewrite atomically, only when needed."""
        text = self.path.read_text(encoding="utf-8")
        rows = read_metrics(self.path)
        kept = [r for r in rows if r["step"] <= keep_through_step]
        if len(kept) == len(rows) and (not text or text.endswith("\n")):
            return  # nothing to drop: keep appending to the same file
        if len(kept) < len(rows):
            log.info(
                "%s: dropping %d line(s) after step %d; those steps run again",
                self.path,
                len(rows) - len(kept),
                keep_through_step,
            )
        write_atomic(self.path, "".join(json.dumps(r) + "\n" for r in kept))

    def log(self, row: dict[str, Any]) -> None:
        if self._file is not None:
            self._file.write(json.dumps(row) + "\n")
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None


def move_aside(path: Path) -> Path | None:
    """Rename a non-empty `path` to the first free `<name>.prev-N`; returns the new path."""
    if not path.is_file() or path.stat().st_size == 0:
        return None
    n = 1
    while (aside := path.with_name(f"{path.name}.prev-{n}")).exists():
        n += 1
    os.replace(path, aside)
    log.info("%s: fresh start; kept the previous run's file as %s", path, aside.name)
    return aside


def write_atomic(path: Path, text: str) -> None:
    """Write a temporary file, fsync it, then rename it over `path`."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    try:  # make the rename itself durable; not every filesystem can open a directory
        fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """All rows; an unparsable *last* line without its newline (a killed write) is dropped."""
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")  # a complete file ends with "\n": the last item is ""
    rows = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            if n == len(lines):
                log.warning("%s:%d: dropping an incomplete last line (a killed write)", path, n)
                break
            raise ValueError(f"{path}:{n}: not a JSON line: {e}") from e
    return rows


def summarize(rows: list[dict[str, Any]], window: int = 10) -> dict[str, dict[str, Any]]:
    """{stage: {first_loss, last_loss, first_mean_loss, last_mean_loss, steps, tokens,
    skipped_steps, ...}} in stage order. The means over the first and last `window` steps
    say more than two single batches, whose losses swing with what each batch holds.
    `skipped_steps` counts the stage's steps skipped for a non-finite loss.

    Fields only present when the rows carry them (older metrics files do not):
    - stream_tokens: stream tokens the stage read (windows are seq_len + 1 tokens; what
      a token budget counts);
    - mean_tokens_per_s: the stage's tokens over its summed step times (a slow step
      weighs by the time it took, as it does in the wall clock);
    - mean_mfu: the mean of the rows' `mfu` (None values left out);
    - peak_mem_mib: the highest of the rows' peaks;
    - last_mean_loss_by_domain: {domain: mean of its last `window` losses}, skipped
      steps left out;
    - last_passkey: the last row's `passkey` dict (its accuracy and the rest);
    - mean_reward, last_mean_reward: a GRPO stage's rollout reward, over the stage and
      over its last `window` steps.
    Rows without a `loss` (an evaluation's own row) count only for those fields.
    """
    out: dict[str, dict[str, Any]] = {}
    losses: dict[str, list[float]] = {}
    for row in (r for r in rows if "loss" in r):
        s = out.setdefault(
            row["stage"],
            {"first_loss": row["loss"], "last_loss": row["loss"], "steps": 0, "tokens": 0},
        )
        s["skipped_steps"] = s.get("skipped_steps", 0) + int(bool(row.get("skipped", False)))
        s["last_loss"] = row["loss"]
        s["steps"] += 1
        s["tokens"] += row["tokens"]
        losses.setdefault(row["stage"], []).append(row["loss"])
    for stage, ls in losses.items():
        out[stage]["first_mean_loss"] = sum(ls[:window]) / len(ls[:window])
        out[stage]["last_mean_loss"] = sum(ls[-window:]) / len(ls[-window:])
        out[stage].update(_observability(rows, stage, window))
    return out


def _observability(rows: list[dict[str, Any]], stage: str, window: int) -> dict[str, Any]:
    """The stage's throughput, memory, per-domain loss and passkey fields (see summarize)."""
    mine = [r for r in rows if r["stage"] == stage]
    out: dict[str, Any] = {}
    if mine and "stage_tokens" in mine[-1]:
        out["stream_tokens"] = mine[-1]["stage_tokens"]
    timed = [r for r in mine if r.get("tokens_per_s") and r.get("tokens")]
    if timed:
        seconds = sum(r["tokens"] / r["tokens_per_s"] for r in timed)
        out["mean_tokens_per_s"] = sum(r["tokens"] for r in timed) / seconds
    mfus = [r["mfu"] for r in mine if isinstance(r.get("mfu"), (int, float))]
    if mfus:
        out["mean_mfu"] = sum(mfus) / len(mfus)
    peaks = [r["peak_mem_mib"] for r in mine if r.get("peak_mem_mib") is not None]
    if peaks:
        out["peak_mem_mib"] = max(peaks)
    by_domain: dict[str, list[float]] = {}
    for r in mine:
        if not r.get("skipped") and isinstance(r.get("loss_by_domain"), dict):
            for domain, loss in r["loss_by_domain"].items():
                if isinstance(loss, (int, float)):
                    by_domain.setdefault(domain, []).append(loss)
    if by_domain:
        out["last_mean_loss_by_domain"] = {
            d: sum(ls[-window:]) / len(ls[-window:]) for d, ls in sorted(by_domain.items())
        }
    rewards = [r["reward_mean"] for r in mine if isinstance(r.get("reward_mean"), (int, float))]
    if rewards:  # a GRPO stage: the rollouts' verifiable reward
        out["mean_reward"] = sum(rewards) / len(rewards)
        out["last_mean_reward"] = sum(rewards[-window:]) / len(rewards[-window:])
    passkeys = [r["passkey"] for r in mine if isinstance(r.get("passkey"), dict)]
    if passkeys:
        out["last_passkey"] = passkeys[-1]
    return out
