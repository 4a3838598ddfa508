"""The platform's own small models, trained from the bundled reference data on demand.

`sharpen demo` and the quality benchmark need a fastText quality classifier, a KenLM
model and a language-ID model. They are trained here from the bundled recipes
(`curation/recipes/train_*.yaml`, reading `data/quality/`) into one models directory,
and retrained only when the recipe or its input files change: `trained.json` there
records a digest of each recipe and the bytes of every file it reads. Training all three
takes about 20 s on two cores.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RECIPES = ROOT / "curation" / "recipes"
# name -> (recipe, curation config field it fills)
MODELS = {"quality-fasttext": ("train_quality.yaml", "quality.fasttext_model"),
          "quality-kenlm": ("kenlm_reference.yaml", "quality.kenlm_model"),
          "langid-fasttext": ("train_langid.yaml", "language.model"),
          "domain-fasttext": ("train_domain.yaml", "domain_classifier.model")}


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


def ensure_models(models_dir: str | Path, names: tuple[str, ...] = ("quality-fasttext",
                  "quality-kenlm", "langid-fasttext"),
                  log: Callable[[str], None] = lambda s: None) -> dict[str, str]:
    """Train (or reuse) the named bundled models under `models_dir`; returns
    {curation config field: model directory}."""
    out = Path(models_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    stamp = out / "trained.json"
    trained = json.loads(stamp.read_text()) if stamp.is_file() else {}
    fields = {}
    for name in names:
        recipe_name, field = MODELS[name]
        load, train = _trainer(name)
        recipe = RECIPES / recipe_name
        cfg = _absolute(load(recipe))
        digest = _digest(recipe, cfg)
        target = out / name
        if trained.get(name) != digest or not (target / "provenance.json").is_file():
            log(f"training {name} from {recipe.relative_to(ROOT)}")
            train(cfg.model_copy(update={"output": str(target)}), log=log)
            trained[name] = digest
            stamp.write_text(json.dumps(trained, indent=2, sort_keys=True) + "\n")
        else:
            log(f"{name}: up to date in {target}")
        fields[field] = str(target)
    return fields


def with_models(cfg, fields: dict[str, str]):
    """A CurationConfig with the model directories of `ensure_models` filled in."""
    update: dict[str, dict] = {}
    for field, path in fields.items():
        sec, name = field.split(".")
        update.setdefault(sec, {})[name] = path
    return cfg.model_copy(update={sec: getattr(cfg, sec).model_copy(update=u)
                                  for sec, u in update.items()})
