"""Our Transformer and transformers' LlamaForCausalLM compute the same logits, both ways.

Parity is checked in fp32 within 1e-5 on random tokens, with RMSNorm gains, RoPE base and
norm eps away from their defaults so that a dropped setting or a wrong RoPE layout shows.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch
import yaml
from pydantic import ValidationError

from training.checkpoint import save_checkpoint
from training.interop import export_cli
from training.interop.export import import_hf
from training.interop.hf_llama import (
    halves_to_interleaved,
    hf_config,
    interleaved_to_halves,
    model_config_from_hf,
    to_hf_state_dict,
)
from training.model.config import ModelConfig
from training.model.llama import Transformer
from training.model.presets import (
    PRESETS,
    PUBLISHED_PARAMS,
    get_preset,
    param_count,
    resolve_model_spec,
)

transformers = pytest.importorskip("transformers")

TOL = 1e-5
SPEC = get_preset("tiny").model_copy(update={"norm_eps": 1e-6, "rope_theta": 50_000.0})
CFG = ModelConfig(**SPEC.model_dump(), vocab_size=300)


def random_tokens(vocab: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, vocab, (2, 32), generator=torch.Generator().manual_seed(seed))


def our_model(cfg: ModelConfig = CFG, seed: int = 0) -> Transformer:
    torch.manual_seed(seed)
    model = Transformer(cfg)
    with torch.no_grad():  # gains away from 1, so a norm mapped to the wrong place shows
        for p in model.parameters():
            if p.ndim == 1:
                p.add_(0.1 * torch.randn_like(p))
    return model.eval()


def test_rope_permutation_round_trips():
    w = torch.randn(4 * 16, 64)
    assert torch.equal(halves_to_interleaved(interleaved_to_halves(w, 4), 4), w)
    head = interleaved_to_halves(torch.arange(16.0).unsqueeze(1), 1).flatten()
    assert head.tolist() == [0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15]


@torch.no_grad()
def test_export_state_dict_gives_the_same_logits_in_transformers():
    ours = our_model()
    hf = transformers.LlamaForCausalLM(hf_config(CFG)).eval()
    hf.load_state_dict(to_hf_state_dict(ours.state_dict(), CFG), strict=True)
    tokens = random_tokens(CFG.vocab_size)
    diff = (ours(tokens) - hf(input_ids=tokens).logits).abs().max().item()
    assert diff < TOL, diff


@torch.no_grad()
def test_import_of_a_transformers_llama_gives_the_same_logits(tmp_path: Path):
    torch.manual_seed(3)
    config = hf_config(CFG)
    hf = transformers.LlamaForCausalLM(config).eval()
    for p in hf.parameters():
        if p.ndim == 1:
            p.add_(0.1 * torch.randn_like(p))
    tokens = random_tokens(CFG.vocab_size, seed=2)
    expected = hf(input_ids=tokens).logits
    hf.save_pretrained(tmp_path)
    for source, cfg_arg in ((hf.state_dict(), config), (tmp_path, None)):
        cfg, state = import_hf(source, cfg_arg)
        assert cfg == CFG
        ours = Transformer(cfg).eval()
        ours.load_state_dict(state, strict=True)
        diff = (ours(tokens) - expected).abs().max().item()
        assert diff < TOL, diff


def test_import_reads_a_transformers_4_config_and_refuses_what_we_cannot_compute():
    v4 = {
        "model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 128,
        "rms_norm_eps": 1e-6, "rope_theta": 50_000.0, "rope_scaling": None,
        "max_position_embeddings": 128, "vocab_size": 300,
    }  # fmt: skip
    assert model_config_from_hf(v4) == CFG
    with pytest.raises(ValueError, match="rope_type 'llama3'"):
        model_config_from_hf({**v4, "rope_scaling": {"rope_type": "llama3", "factor": 8.0}})
    with pytest.raises(ValueError, match="biases"):
        model_config_from_hf({**v4, "attention_bias": True})


def write_run(root: Path) -> tuple[Path, Transformer]:
    """A run dir as `sharpen train` leaves it: plan.yaml and a DCP checkpoint of stage 2,
    whose plan raises RoPE's base (the export must carry the raised value)."""
    from mixtures.tokenizer import save_tokenizer, train_bpe

    texts = [f"document {i}: the quick brown fox jumps over {i % 7} lazy dogs." for i in range(200)]
    tok = train_bpe(texts, vocab_size=300, min_frequency=1)
    save_tokenizer(tok, root / "mix" / "tokenizer" / "tokenizer.json")
    cfg = CFG.model_copy(update={"vocab_size": tok.get_vocab_size()})
    stage = {"data": "broad", "steps": 4, "seq_len": 32, "batch_size": 2, "lr": 1e-3}
    plan = {
        "model": {"preset": "tiny", "norm_eps": 1e-6, "rope_theta": 50_000.0},
        "stages": [{"name": "pretrain", **stage}, {"name": "long", **stage, "rope_theta": 4e5}],
    }
    run = root / "run"
    run.mkdir()
    plan["model"] = resolve_model_spec(plan["model"]).model_dump()  # until plans take presets
    (run / "plan.yaml").write_text(yaml.safe_dump(plan), encoding="utf-8")
    model = our_model(cfg)
    model.rope_theta = 4e5
    optimizer = torch.optim.AdamW(model.parameters())
    state = {"stage": "long", "stage_index": 1, "stage_step": 4, "global_step": 8, "loader": {}}
    save_checkpoint(run / "checkpoints" / "long", model, optimizer, state, is_main=True)
    return run, model


@pytest.mark.filterwarnings("ignore:torch.distributed is disabled")  # one-process DCP save
def test_sharpen_export_writes_a_directory_transformers_loads_offline(tmp_path: Path):
    run, ours = write_run(tmp_path)
    out = tmp_path / "hf"
    parser = argparse.ArgumentParser()
    export_cli.register(parser.add_subparsers())
    args = parser.parse_args(
        ["export", str(run), "--output", str(out), "--tokenizer", str(tmp_path / "mix"), "--verify"]
    )
    assert args.func(args) == 0
    names = {p.name for p in out.iterdir()}
    assert {"model.safetensors", "config.json", "generation_config.json", "tokenizer.json"} <= names
    config = json.loads((out / "config.json").read_text())
    assert config["rope_parameters"]["rope_theta"] == 4e5  # the stage's, not the plan model's
    assert config["tie_word_embeddings"] is False and config["eos_token_id"] == 1

    hf = transformers.AutoModelForCausalLM.from_pretrained(out, local_files_only=True).eval()
    tokens = random_tokens(ours.cfg.vocab_size, seed=4)
    with torch.no_grad():
        diff = (ours(tokens) - hf(input_ids=tokens).logits).abs().max().item()
    assert diff < TOL, diff

    from mixtures.tokenizer import load_tokenizer

    hf_tok = transformers.AutoTokenizer.from_pretrained(out, local_files_only=True)
    text = "the quick brown fox, document 12"
    ours_ids = load_tokenizer(tmp_path / "mix" / "tokenizer" / "tokenizer.json").encode(text).ids
    assert hf_tok(text, add_special_tokens=False)["input_ids"] == ours_ids
    assert hf_tok.eos_token == "<|eos|>" and hf_tok.eos_token_id == 1

    with pytest.raises(FileExistsError):  # a second export does not silently replace the first
        args.func(args)


@pytest.mark.parametrize("name", ["tiny", "demo"])
def test_param_count_is_exact(name: str):
    cfg = ModelConfig(**get_preset(name).model_dump(), vocab_size=PRESETS[name].reference_vocab)
    with torch.device("meta"):
        built = sum(p.numel() for p in Transformer(cfg).parameters())
    assert param_count(cfg, cfg.vocab_size) == built


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS))
def test_xgen_small_shapes_land_within_10_percent_of_the_published_totals(name: str):
    preset = PRESETS[name]
    count = param_count(preset.spec, preset.reference_vocab)  # shapes only: nothing is built
    assert abs(count / PUBLISHED_PARAMS[name] - 1) < 0.10, count
    assert preset.spec.max_seq_len == 131072  # 128k context, as published


def test_a_plan_model_may_name_a_preset_and_override_fields():
    spec = resolve_model_spec({"preset": "demo", "max_seq_len": 1024})
    assert spec.dim == 128 and spec.max_seq_len == 1024
    assert resolve_model_spec(SPEC.model_dump()) == SPEC  # no preset: taken as written
    with pytest.raises(ValueError, match="unknown model preset 'huge'"):
        resolve_model_spec({"preset": "huge"})
    with pytest.raises(ValidationError, match="n_heads"):
        resolve_model_spec({"preset": "tiny", "n_heads": 3})
