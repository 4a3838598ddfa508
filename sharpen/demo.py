"""`sharpen demo`: the whole platform on the bundled sample corpus, at small scale.

models (fastText quality + language ID, KenLM; trained from data/quality once) ->
curate (Spark, local) -> mix (tokenizer + two stages of Arrow shards) -> train (two
pre-training stages, FSDP2 under torchrun, 2 CPU ranks) -> post-train (SFT, DPO, GRPO
on the bundled chat, preference and arithmetic sets, from the pre-training checkpoint)
-> every stage's checkpoint exported to transformers format and checked -> summary
printed and written to `runs/demo/summary.json`.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parent.parent


def register(sub) -> None:
    p = sub.add_parser("demo", help="run curate -> mix -> train on data/sample")
    p.add_argument("--input", default=str(ROOT / "data" / "sample"), help="raw corpus")
    p.add_argument("--output", default="runs/demo", help="where every stage writes")
    p.add_argument("--recipe", default=str(ROOT / "mixtures" / "recipes" / "demo.yaml"))
    p.add_argument("--plan", default=str(ROOT / "training" / "recipes" / "demo.yaml"))
    p.add_argument("--post-plan", default=str(ROOT / "training" / "recipes" / "demo_post.yaml"),
                   help="post-training stages (SFT, DPO, GRPO); 'none' to stop after pre-training")
    p.add_argument("--nproc", type=int, default=2, help="torchrun ranks")
    p.add_argument("--master", help="Spark master URL (default local[*])")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    post = None if args.post_plan == "none" else args.post_plan
    summary = run_demo(args.input, args.output, args.recipe, args.plan, args.nproc, args.master,
                       post_plan=post)
    print(format_summary(summary))
    return 0


def run_demo(input_path: str, output: str, recipe: str, plan: str, nproc: int = 2,
             master: str | None = None, post_plan: str | None = None) -> dict:
    from curation.config import CurationConfig
    from curation.pipeline import run_curation
    from curation.quality.bundled_models import ensure_models, with_models
    from mixtures.materialize import run_mix
    from training.cli import run_training

    out = Path(output).resolve()
    out.mkdir(parents=True, exist_ok=True)
    timings = {}
    t = time.perf_counter()
    # the platform's own quality, KenLM and language-ID models, trained from data/quality
    # on the first run (~15 s) and reused while their recipes and data are unchanged
    models = ensure_models(out / "models", log=log.info)
    cfg = with_models(CurationConfig(), models)
    timings["models_s"] = round(time.perf_counter() - t, 1)
    t = time.perf_counter()
    stats = run_curation([str(Path(input_path).resolve())], str(out / "curate"), cfg, master)
    timings["curate_s"] = round(time.perf_counter() - t, 1)
    _stop_spark()
    t = time.perf_counter()
    mix = run_mix(str(out / "curate"), recipe, str(out / "mix"))
    timings["mix_s"] = round(time.perf_counter() - t, 1)
    t = time.perf_counter()
    # a rerun (or a killed demo) continues from the latest checkpoint rather than being
    # refused: same data, same plan, so resuming is what the user wants here
    _start_over_if_data_changed(out / "train", out / "mix", plan)
    if (out / "train" / "checkpoints" / "latest.json").is_file():
        log.info("%s holds checkpoints: resuming from the latest", out / "train")
    train = run_training(plan, str(out / "mix"), str(out / "train"), nproc=nproc, resume=True)
    timings["train_s"] = round(time.perf_counter() - t, 1)
    post = {}
    if post_plan is not None:
        t = time.perf_counter()
        post = run_post_training(out, post_plan, nproc)
        timings["post_train_s"] = round(time.perf_counter() - t, 1)
        t = time.perf_counter()
        post["exports"] = export_every_stage(out)
        timings["export_s"] = round(time.perf_counter() - t, 1)
    summary = {
        "documents": stats["counts"],
        "quarantined_by_reason": stats["quarantined_by_reason"],
        "removed": {"filters": sum(stats["removed_by_filter"].values()),
                    "exact_dup": stats["removed_exact_dup"], "near_dup": stats["removed_near_dup"]},
        "quality_buckets_by_domain": stats.get("quality", {}).get("docs_by_domain_and_bucket", {}),
        "models": {k: {"path": v["path"], "heldout_metrics": v["heldout_metrics"]}
                   for k, v in stats.get("models", {}).items()},
        "docs_by_lang": stats.get("docs_by_lang", {}),
        "tokens_by_domain": {name: st.get("tokens_by_domain", {})
                             for name, st in mix.get("stages", {}).items()},
        "loss": train.get("stages", train),
        "post_training": post,
        "outputs": {"curated": str(out / "curate" / "curated"),
                    "stats": str(out / "curate" / "stats.json"),
                    "shards": str(out / "mix"), "train": str(out / "train"),
                    "metrics": str(out / "train" / "metrics.jsonl")},
        "seconds": timings,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def run_post_training(out: Path, post_plan: str, nproc: int) -> dict:
    """Mix the bundled post-training sets beside the pre-training stages (same tokenizer),
    then train SFT -> DPO -> GRPO from the pre-training run's final checkpoint."""
    import yaml

    from mixtures.chat_stages import mix_preferences, mix_sft, mix_tasks
    from training.cli import run_training

    data = ROOT / "data" / "post_training"
    tokenizer = out / "mix" / "tokenizer" / "tokenizer.json"
    for stage, mix, source in (("sft", mix_sft, "sft.jsonl"),
                               ("preferences", mix_preferences, "preferences.jsonl"),
                               ("tasks", mix_tasks, "arithmetic_rl.jsonl")):
        # deterministic: a rerun keeps the stage (and DPO's stored reference log-probs)
        if not (out / "mix" / stage / "manifest.json").is_file():
            mix([data / source], tokenizer, out / "mix", stage=stage, max_tokens=480)
    plan = yaml.safe_load(Path(post_plan).read_text(encoding="utf-8"))
    plan["stages"][0]["init_from"] = str(out / "train" / "checkpoints" / "anneal")
    written = out / "post_plan.yaml"
    written.write_text(yaml.safe_dump(plan, sort_keys=False), encoding="utf-8")
    _start_over_if_data_changed(out / "post", out / "mix", str(written))
    return run_training(written, str(out / "mix"), str(out / "post"), nproc=nproc, resume=True)


def _start_over_if_data_changed(run: Path, data_root: Path, plan: str) -> None:
    """The demo resumes its runs on purpose, but never onto other data: a re-mixed stage
    (new code, a new tokenizer) moves the old run aside and trains afresh."""
    from training.checkpoint import latest_checkpoint
    from training.plan import load_plan
    from training.run_state import changed_data, data_fingerprints

    ckpt = latest_checkpoint(run / "checkpoints") if (run / "checkpoints").is_dir() else None
    if ckpt is None:
        return
    data = data_fingerprints(data_root, (s.data for s in load_plan(plan).stages))
    if changed_data(ckpt, data):
        n = 1
        while (aside := run.with_name(f"{run.name}.prev-{n}")).exists():
            n += 1
        run.rename(aside)
        log.warning("%s trained on other data than %s now holds: moved to %s, starting afresh",
                    run, data_root, aside)


def export_every_stage(out: Path) -> dict:
    """Each stage's final checkpoint as a transformers directory, its logits checked."""
    from training.interop.export import export_checkpoint

    exported = {}
    for run, stages in (("train", ("pretrain", "anneal")), ("post", ("sft", "dpo", "grpo"))):
        for stage in stages:
            ckpt = out / run / "checkpoints" / stage
            if not ckpt.is_dir():
                continue
            info = export_checkpoint(ckpt, out / "hf" / stage, verify=True, overwrite=True)
            exported[stage] = {"path": str(out / "hf" / stage),
                               "max_logit_diff": info.get("max_abs_logit_diff")}
    return exported


def _stop_spark() -> None:
    """Free the JVM's memory and cores before training starts."""
    from pyspark.sql import SparkSession

    s = SparkSession.getActiveSession()
    if s is not None:
        s.stop()


def format_summary(s: dict) -> str:
    c = s["documents"]
    lines = ["", "sharpen demo summary", "=" * 20,
             f"documents: in {c['input']}  kept {c['kept']}  removed {c['removed']}  "
             f"quarantined {c['quarantined']}",
             f"removed: {s['removed']}"]
    buckets = s.get("quality_buckets_by_domain", {})
    if buckets:
        top = max(int(b) for by in buckets.values() for b in by)
        lines.append("quality buckets (0 = worst) per domain: " + "; ".join(
            f"{d} " + "/".join(str(by.get(str(b), 0)) for b in range(top + 1))
            for d, by in sorted(buckets.items())))
    for name, m in s.get("models", {}).items():
        lines.append(f"model {name}: {_metric_line(m.get('heldout_metrics') or {})}")
    if s.get("docs_by_lang"):
        lines.append("languages (annotated docs): " + ", ".join(
            f"{k} {v}" for k, v in sorted(s["docs_by_lang"].items(), key=lambda kv: -kv[1])))
    for stage, doms in s["tokens_by_domain"].items():
        lines.append(f"stage {stage} tokens: " + ", ".join(f"{d} {n:,}" for d, n in sorted(doms.items())))
    for stage, info in s["loss"].items():
        if isinstance(info, dict) and "first_loss" in info:
            mean = (f" (mean of the first/last 10 steps {info['first_mean_loss']:.3f} -> "
                    f"{info['last_mean_loss']:.3f})" if "last_mean_loss" in info else "")
            lines.append(f"stage {stage} loss: {info['first_loss']:.3f} -> "
                         f"{info['last_loss']:.3f}{mean}")
            if "stream_tokens" in info and "budget_tokens" in info:
                lines.append(f"stage {stage} trained on {info['stream_tokens']:,} of "
                             f"{info['budget_tokens']:,} planned tokens")
            if info.get("last_mean_loss_by_domain"):
                lines.append(f"stage {stage} loss by domain (last 10 steps): " + ", ".join(
                    f"{d} {v:.3f}" for d, v in info["last_mean_loss_by_domain"].items()))
            if info.get("last_passkey"):
                pk = info["last_passkey"]
                lines.append(f"stage {stage} passkey at {pk['seq_len']} tokens: accuracy "
                             f"{pk['accuracy']:.2f} ({pk['n']} prompts)")
    for stage, info in (s.get("post_training") or {}).items():
        if stage == "exports" or not isinstance(info, dict) or "first_loss" not in info:
            continue
        reward = (f", mean reward {info['mean_reward']:.3f}" if "mean_reward" in info else "")
        lines.append(f"post-training {stage}: loss {info['first_loss']:.3f} -> "
                     f"{info['last_loss']:.3f} over {info['steps']} steps{reward}")
    for stage, e in ((s.get("post_training") or {}).get("exports") or {}).items():
        lines.append(f"export {stage}: {e['path']} (transformers logits within "
                     f"{e['max_logit_diff']:.1e})")
    lines.append("outputs: " + ", ".join(f"{k}={v}" for k, v in s["outputs"].items()))
    lines.append(f"seconds: {s['seconds']}")
    return "\n".join(lines)


def _metric_line(m: dict) -> str:
    """The headline held-out numbers of a model's provenance metrics."""
    keys = ("roc_auc", "precision", "recall", "accuracy", "macro_f1", "ppl_p5", "ppl_p50", "ppl_p95")
    flat = {k: v for k, v in m.items() if isinstance(v, (int, float))}
    shown = [f"{k} {flat[k]:.3g}" for k in keys if k in flat] or \
        [f"{k} {v:.3g}" for k, v in list(flat.items())[:4]]
    return "held-out " + ", ".join(shown) if shown else "no held-out metrics"
