"""Checkpoints leave the platform as Hugging Face Llama directories, and come back in.

`export_checkpoint` reads a DCP checkpoint in one process (no torchrun: DCP reassembles
the FSDP shards of any world size), renames and re-lays-out the weights for
`LlamaForCausalLM` (`hf_llama.py`), and writes `model.safetensors`, `config.json`,
`generation_config.json`, the tokenizer files and `sharpen_export.json` (provenance).
`transformers.AutoModelForCausalLM.from_pretrained(DIR)` then computes our logits.

The shape comes from the plan (the checkpoint stores weights and trainer state only), the
vocabulary from the checkpoint's own metadata, and RoPE's base and YaRN from the plan's
stage the checkpoint belongs to, since a later stage may have raised the one or switched on
the other (`config.json` then holds `rope_parameters` with `rope_type: yarn`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch

from training.checkpoint import (
    TRAINER_STATE,
    CheckpointError,
    latest_checkpoint,
    load_model_weights,
)
from training.interop.hf_llama import (
    from_hf_state_dict,
    hf_config,
    model_config_from_hf,
    rope_yarn_from_hf,
    to_hf_state_dict,
)
from training.model.config import ModelConfig
from training.model.llama import Transformer
from training.model.rope import YaRN
from training.model.rope_schedule import stage_rope_settings
from training.plan import TrainPlan, load_plan

log = logging.getLogger(__name__)

# Looked for beside the checkpoint, in checkpoints/ and in the run dir when not given.
PLAN_NAMES = ("plan.yaml", "plan.yml")
TOKENIZER_NAMES = ("tokenizer.json", "tokenizer/tokenizer.json")


def resolve_checkpoint(path: Path) -> Path:
    """A checkpoint directory, or a run directory / `checkpoints/` dir meaning its latest."""
    if (path / TRAINER_STATE).is_file():
        return path
    for root in (path / "checkpoints", path):
        found = latest_checkpoint(root)
        if found is not None:
            return found
    raise CheckpointError(f"{path}: neither a complete checkpoint nor a run with one")


def find_in_run(checkpoint: Path, names: tuple[str, ...]) -> Path | None:
    """A file saved with the run (`<run>/plan.yaml`, `<run>/tokenizer.json`), if any."""
    for directory in (checkpoint, checkpoint.parent, checkpoint.parent.parent):
        for name in names:
            if (directory / name).is_file():
                return directory / name
    return None


def checkpoint_vocab_size(checkpoint: Path) -> int:
    """The vocabulary the checkpoint was trained with, from DCP's metadata (no tensor read)."""
    from torch.distributed.checkpoint import FileSystemReader

    meta = FileSystemReader(str(checkpoint)).read_metadata().state_dict_metadata
    key = "model.tok_embeddings.weight"
    if key not in meta:
        raise CheckpointError(f"{checkpoint}: no {key} in the checkpoint")
    return int(meta[key].size[0])


def checkpoint_rope(plan: TrainPlan, trainer_state: dict[str, Any]) -> tuple[float, YaRN | None]:
    """RoPE base and YaRN in force for the checkpoint's stage (they hold until overridden)."""
    idx, name = trainer_state["stage_index"], trainer_state["stage"]
    if idx >= len(plan.stages) or plan.stages[idx].name != name:
        raise CheckpointError(f"checkpoint of stage {name!r} (#{idx}) does not fit the plan")
    return stage_rope_settings(plan)[idx]


def find_tokenizer(path: Path) -> Path:
    """tokenizer.json itself, a directory holding it, or a mixture output (`tokenizer/`)."""
    for candidate in (path, path / "tokenizer.json", path / "tokenizer" / "tokenizer.json"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{path}: no tokenizer.json there (nor in tokenizer/)")


def load_checkpoint_model(checkpoint: Path, plan: TrainPlan) -> tuple[Transformer, dict]:
    """Our unsharded fp32 model holding the checkpoint's weights, with its stage's RoPE."""
    cfg = ModelConfig(**plan.model.model_dump(), vocab_size=checkpoint_vocab_size(checkpoint))
    with torch.device("meta"):  # no random init: every tensor is overwritten by the load
        model = Transformer(cfg)
    model.to_empty(device="cpu")
    state = load_model_weights(checkpoint, model)
    model.rope_theta, model.rope_yarn = checkpoint_rope(plan, state)
    return model.eval(), state


def export_checkpoint(
    checkpoint: str | Path,
    output: str | Path,
    tokenizer: str | Path | None = None,
    *,
    plan: TrainPlan | str | Path | None = None,
    dtype: torch.dtype = torch.float32,
    verify: bool = False,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write a `from_pretrained`-loadable directory; returns what was written (and, with
    `verify`, the max abs logit difference against our model on random tokens).

    `plan` and `tokenizer` default to the copies saved with the run, when there are any.
    """
    from safetensors.torch import save_file
    from transformers import GenerationConfig

    from mixtures.tokenizer import load_tokenizer, sha256_file, special_token_ids, special_tokens

    ckpt, out = resolve_checkpoint(Path(checkpoint)), Path(output)
    if plan is None:
        plan = find_in_run(ckpt, PLAN_NAMES)
        if plan is None:
            raise ValueError(f"{ckpt}: no plan.yaml beside the run; pass the run's plan (--plan)")
    if not isinstance(plan, TrainPlan):
        plan = load_plan(plan)
    if (out / "model.safetensors").exists() and not overwrite:
        raise FileExistsError(f"{out}: already holds an export (overwrite to replace it)")
    model, trainer_state = load_checkpoint_model(ckpt, plan)
    cfg = model.cfg
    ids: dict[str, int | None] = {}
    names: dict[str, str | None] = {}
    tok_path = find_tokenizer(Path(tokenizer)) if tokenizer else find_in_run(ckpt, TOKENIZER_NAMES)
    if tok_path is None:
        log.warning("%s: no tokenizer given or saved with the run; exporting weights only", ckpt)
    else:
        tok = load_tokenizer(tok_path)
        if tok.get_vocab_size() > cfg.vocab_size:
            raise ValueError(
                f"{tok_path}: {tok.get_vocab_size()} tokens but the checkpoint embeds "
                f"{cfg.vocab_size}: not the run's tokenizer"
            )
        ids, names = special_token_ids(tok), special_tokens(tok)
    config = hf_config(
        cfg,
        rope_theta=model.rope_theta,
        rope_yarn=model.rope_yarn,
        bos_token_id=ids.get("bos"),
        eos_token_id=ids.get("eos"),
        pad_token_id=ids.get("pad"),
        dtype=dtype,
    )
    hf_state = {k: v.to(dtype) for k, v in to_hf_state_dict(model.state_dict(), cfg).items()}
    out.mkdir(parents=True, exist_ok=True)
    save_file(hf_state, str(out / "model.safetensors"), metadata={"format": "pt"})
    config.save_pretrained(out)
    GenerationConfig(
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
    ).save_pretrained(out)
    if tok_path is not None:
        _save_hf_tokenizer(tok_path, out, cfg.max_seq_len, names)
    summary: dict[str, Any] = {
        "checkpoint": str(ckpt),
        "stage": trainer_state["stage"],
        "stage_step": trainer_state["stage_step"],
        "global_step": trainer_state["global_step"],
        "vocab_size": cfg.vocab_size,
        "rope_theta": model.rope_theta,
        "rope_yarn": model.rope_yarn.model_dump() if model.rope_yarn else None,
        "dtype": str(dtype).removeprefix("torch."),
        "parameters": sum(t.numel() for t in hf_state.values()),
        "tokenizer_sha256": sha256_file(tok_path) if tok_path else None,
    }
    (out / "sharpen_export.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    if verify:
        summary["max_abs_logit_diff"] = compare_with_hf(model, out)
    log.info("exported %s -> %s", ckpt, out)
    return summary


def _save_hf_tokenizer(
    tok_path: Path, out: Path, max_len: int, names: dict[str, str | None]
) -> None:
    """tokenizer.json plus tokenizer_config.json naming its special tokens (`names`: role ->
    token string, as `mixtures.tokenizer.special_tokens` resolved them)."""
    from transformers import PreTrainedTokenizerFast

    hf_tok = PreTrainedTokenizerFast(
        tokenizer_file=str(tok_path),
        bos_token=names["bos"],
        eos_token=names["eos"],
        pad_token=names["pad"],
        model_max_length=max_len,
    )
    hf_tok.save_pretrained(out)


@torch.no_grad()
def compare_with_hf(model: Transformer, hf_dir: Path, seq_len: int = 32, seed: int = 0) -> float:
    """Max abs difference of fp32 logits, ours vs `from_pretrained(hf_dir)`, random tokens."""
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(hf_dir, local_files_only=True, dtype=torch.float32)
    gen = torch.Generator().manual_seed(seed)
    seq_len = min(seq_len, model.cfg.max_seq_len)
    tokens = torch.randint(0, model.cfg.vocab_size, (2, seq_len), generator=gen)
    ours = model.float()(tokens)
    theirs = hf.eval()(input_ids=tokens).logits.float()
    return (ours - theirs).abs().max().item()


def read_hf_dir(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """config.json and the weights (one safetensors file, a sharded index, or a .bin)."""
    from safetensors.torch import load_file

    config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    index = path / "model.safetensors.index.json"
    if index.is_file():
        files = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        state: dict[str, torch.Tensor] = {}
        for name in files:
            state.update(load_file(str(path / name)))
    elif (path / "model.safetensors").is_file():
        state = load_file(str(path / "model.safetensors"))
    elif (path / "pytorch_model.bin").is_file():
        state = torch.load(path / "pytorch_model.bin", map_location="cpu", weights_only=True)
    else:
        raise FileNotFoundError(f"{path}: no model.safetensors(.index.json) or pytorch_model.bin")
    return config, state


def _read_source(
    source: str | Path | dict[str, torch.Tensor], config: Any
) -> tuple[Any, dict[str, torch.Tensor]]:
    if isinstance(source, dict):
        if config is None:
            raise ValueError("importing a state dict needs its LlamaConfig (or config dict)")
        return config, source
    return read_hf_dir(Path(source))


def import_hf(
    source: str | Path | dict[str, torch.Tensor], config: Any = None
) -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    """An HF Llama (directory, or state dict plus its config) -> our config and state dict.

    `Transformer(cfg).load_state_dict(state)` then computes the HF model's logits. A YaRN
    model is refused here, since the pair cannot carry YaRN: use `import_hf_model`.
    """
    config, hf_state = _read_source(source, config)
    cfg = model_config_from_hf(config)
    if rope_yarn_from_hf(config) is not None:
        raise ValueError("HF config uses rope_type yarn: import it with import_hf_model")
    return cfg, from_hf_state_dict(hf_state, cfg)


def import_hf_model(
    source: str | Path | dict[str, torch.Tensor], config: Any = None
) -> Transformer:
    """An HF Llama -> our Transformer (fp32, eval mode) holding its weights and its RoPE
    (`rope_theta`, and YaRN as `rope_yarn` when the config has `rope_type: yarn`)."""
    config, hf_state = _read_source(source, config)
    cfg = model_config_from_hf(config)
    with torch.device("meta"):  # no random init: every tensor comes from the checkpoint
        model = Transformer(cfg)
    model.load_state_dict(from_hf_state_dict(hf_state, cfg), strict=True, assign=True)
    model.rope_yarn = rope_yarn_from_hf(config)
    return model.float().eval()
