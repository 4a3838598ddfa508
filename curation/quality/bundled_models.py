"""The platform's own small models, trained from the bundled reference data on demand.

`sharpen demo` and the quality benchmark need a fastText quality classifier, a KenLM
model and a language-ID model. They are trained here from the bundled recipes
(`curation/recipes/train_*.yaml`, reading `data/quality/`) into one models directory,
and retrained only when the recipe or its input files change: `trained.json` there
records a digest of each recipe and the bytes of every file it reads. They train side by
side, one process each.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path

from curation.side_by_side import side_by_side

ROOT = Path(__file__).resolve().parents[2]
RECIPES = ROOT / "curation" / "recipes"
# name -> (recipe, curation config field it fills)
MODELS = {"quality-fasttext": ("train_quality.yaml", "quality.fasttext_model"),
          "quality-kenlm": ("kenlm_reference.yaml", "quality.kenlm_model"),
          "langid-fasttext": ("train_langid.yaml", "language.model"),
          "domain-fasttext": ("train_domain.yaml", "domain_classifier.model")}
# Training side by side starts the longest first (seconds on one core of the project
# machine: language ID ~30, KenLM ~10, quality ~4, domains ~2), so the others fit beside it.
LONGEST_FIRST = ("langid-fasttext", "quality-kenlm", "quality-fasttext", "domain-fasttext")


def _trainer(name: str) -> tuple[Callable, Callable]:
    """(load config, train) of a bundled model."""
    if name == "quality-kenlm":
        from curation.quality.kenlm_train import KenLMTrainConfig, train_kenlm
        return KenLMTrainConfig.load, train_kenlm
    if name == "quality-fasttext":
        from curation.quality.train_quality import QualityTrainConfig, train_quality
        return QualityTrainConfig.load, train_quality
    if name == "langid-fasttext":
        from curation.quality.train_langid import LangIdTrainConfig, train_langid
        return LangIdTrainConfig.load, train_langid
    from curation.quality.train_domain import DomainTrainConfig, train_domain
    return DomainTrainConfig.load, train_domain


_LIST_KEYS = ("positive", "negative", "reference", "data")  # input patterns of the recipes


def _patterns(cfg) -> list[str]:
    """Every input path or glob a training config reads."""
    return [p for key in _LIST_KEYS for p in (getattr(cfg, key, None) or [])] + [
        p for ps in (getattr(cfg, "data_by_label", None) or {}).values() for p in ps]


def _digest(recipe: Path, cfg) -> str:
    """Recipe bytes + every input file's path and bytes (relative to the repository);
    `cfg` has absolute paths (`_absolute`)."""
    from curation.quality.reference_sets import expand

    h = hashlib.sha256(recipe.read_bytes())
    for f in expand(_patterns(cfg), recipe.name):
        h.update(str(f.relative_to(ROOT) if f.is_relative_to(ROOT) else f).encode())
        h.update(hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()


def _absolute(cfg):
    """Recipe paths are relative to the repository root, whatever the working directory."""
    def absolute(ps: list[str]) -> list[str]:
        return [str(ROOT / p) if not Path(p).is_absolute() else p for p in ps]

    update: dict = {key: absolute(getattr(cfg, key)) for key in _LIST_KEYS
                    if getattr(cfg, key, None)}
    if getattr(cfg, "data_by_label", None):
        update["data_by_label"] = {k: absolute(v) for k, v in cfg.data_by_label.items()}
    return cfg.model_copy(update=update)


def _recipe_config(name: str):
    """(recipe path, its training config with absolute input paths) of a bundled model."""
    recipe = RECIPES / MODELS[name][0]
    return recipe, _absolute(_trainer(name)[0](recipe))


def _train_in_child(name: str, target: Path) -> list[str]:
    """Train one bundled model in a fresh Python process (`main` below); returns its log
    lines. A process, not a thread: the trainers prepare their data in Python (one GIL),
    and fastText's zero-filled allocations (see `fasttext_train`) are a process-wide
    setting. Not `multiprocessing` either: its spawn re-runs the caller's main module."""
    r = subprocess.run([sys.executable, "-m", __name__, name, str(target)], cwd=ROOT,
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"training {name} failed (exit {r.returncode}): "
                           f"{r.stderr.strip()[-2000:]}")
    return r.stdout.splitlines()


def ensure_models(models_dir: str | Path, names: tuple[str, ...] = ("quality-fasttext",
                  "quality-kenlm", "langid-fasttext"),
                  log: Callable[[str], None] = lambda s: None,
                  workers: int | None = None) -> dict[str, str]:
    """Train (or reuse) the named bundled models under `models_dir`; returns
    {curation config field: model directory}.

    Models to train are trained side by side, one fresh process each, up to `workers`
    at once (default: the usable cores), the longest first. Each trainer is
    single-threaded (fastText with `thread=1` for determinism), so two cores train two
    at once, with the same bytes as one after the other. A failure is raised after the
    others finish; the models that did train are recorded and not trained again."""
    out = Path(models_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    stamp = out / "trained.json"
    trained = json.loads(stamp.read_text()) if stamp.is_file() else {}
    fields, todo = {}, {}
    for name in names:
        recipe, cfg = _recipe_config(name)
        digest = _digest(recipe, cfg)
        target = out / name
        if trained.get(name) != digest or not (target / "provenance.json").is_file():
            log(f"training {name} from {recipe.relative_to(ROOT)}")
            todo[name] = (cfg.model_copy(update={"output": str(target)}), digest)
        else:
            log(f"{name}: up to date in {target}")
        fields[MODELS[name][1]] = str(target)

    def done(name: str) -> None:
        trained[name] = todo[name][1]
        stamp.write_text(json.dumps(trained, indent=2, sort_keys=True) + "\n")

    cores = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")  # not on macOS
             else os.cpu_count() or 1)
    width = min(len(todo), workers or cores)
    if width <= 1:
        for name, (cfg, _) in todo.items():
            _trainer(name)[1](cfg, log=log)
            done(name)
        return fields
    lock = threading.Lock()

    def train_beside(name: str) -> None:
        lines = _train_in_child(name, out / name)
        with lock:  # one model's lines together, and one writer of the stamp
            for line in lines:
                log(f"{name}: {line}")
            done(name)

    side_by_side(*(partial(train_beside, name) for name in sorted(todo, key=LONGEST_FIRST.index)),
                 at_once=width)
    return fields


def with_models(cfg, fields: dict[str, str]):
    """A CurationConfig with the model directories of `ensure_models` filled in."""
    update: dict[str, dict] = {}
    for field, path in fields.items():
        sec, name = field.split(".")
        update.setdefault(sec, {})[name] = path
    return cfg.model_copy(update={sec: getattr(cfg, sec).model_copy(update=u)
                                  for sec, u in update.items()})


def main(argv: list[str] | None = None) -> int:
    """`python -m curation.quality.bundled_models NAME TARGET`: train one bundled model into
    TARGET, printing its log lines (what `ensure_models` runs side by side)."""
    name, target = argv if argv is not None else sys.argv[1:]
    _, cfg = _recipe_config(name)
    try:
        _trainer(name)[1](cfg.model_copy(update={"output": target}), log=print)
    except (ValueError, OSError) as e:  # the trainers' own one-line errors
        print(e, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
