"""YaRN and the RoPE base: our angles and logits equal transformers' for the same config.

transformers' `rope_type: yarn` (`_compute_yarn_parameters`) is the reference: the exported
model must compute our logits, so the per-frequency values, the truncated correction range
and the attention factor must all agree. Settings keep the YaRN ramp strictly inside the
head (low > 0, high < head_dim / 2) so that both the kept and the stretched ends show.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import yaml
from pydantic import ValidationError

from training.checkpoint import save_checkpoint
from training.interop.export import checkpoint_rope, export_checkpoint, import_hf, import_hf_model
from training.interop.hf_llama import (
    hf_config,
    hf_rope_parameters,
    model_config_from_hf,
    rope_yarn_from_hf,
    to_hf_state_dict,
)
from training.model.config import ModelConfig
from training.model.llama import Transformer
from training.model.presets import get_preset
from training.model.rope import YaRN, rope_angles
from training.model.rope_schedule import stage_rope_settings
from training.plan import StageSpec, TrainPlan

transformers = pytest.importorskip("transformers")
from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding  # noqa: E402

TOL = 1e-5
SPEC = get_preset("tiny").model_copy(update={"norm_eps": 1e-6, "rope_theta": 10_000.0})
CFG = ModelConfig(**SPEC.model_dump(), vocab_size=300)  # head_dim 16
YARN = YaRN(factor=4.0, original_max_seq_len=4096)  # ramp over pairs 2..6 of 8 at theta 1e4

CASES = [  # (head_dim, theta, yarn)
    (16, 10_000.0, YARN),
    (64, 500_000.0, YaRN(factor=8.0, original_max_seq_len=8192)),
    (128, 1e6, YaRN(factor=2.5, original_max_seq_len=2048, beta_fast=16, beta_slow=2)),
    (128, 10_000.0, YaRN(factor=16.0, original_max_seq_len=4096, attention_factor=1.25)),
]


def plain_angles(position_ids: torch.Tensor, head_dim: int, theta: float):
    """The RoPE angles as computed before YaRN existed."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    freqs = position_ids.float().unsqueeze(-1) * inv_freq
    return freqs.cos(), freqs.sin()


def hf_rotary(head_dim: int, theta: float, yarn: YaRN | None) -> LlamaRotaryEmbedding:
    config = transformers.LlamaConfig(
        hidden_size=4 * head_dim,
        num_attention_heads=4,
        head_dim=head_dim,
        max_position_embeddings=yarn.original_max_seq_len * 4 if yarn else 4096,
        rope_parameters=hf_rope_parameters(theta, yarn),
    )
    return LlamaRotaryEmbedding(config)


def test_without_yarn_the_angles_are_exactly_the_old_ones():
    pos = torch.arange(0, 40_000, 10).view(2, -1)
    for head_dim, theta in ((16, 10_000.0), (128, 500_000.0)):
        ours, old = rope_angles(pos, head_dim, theta), plain_angles(pos, head_dim, theta)
        assert all(torch.equal(a, b) for a, b in zip(ours, old, strict=True))
        ours = rope_angles(pos, head_dim, theta, None)
        assert all(torch.equal(a, b) for a, b in zip(ours, old, strict=True))
    assert Transformer(CFG).rope_yarn is None


@pytest.mark.parametrize(("head_dim", "theta", "yarn"), CASES)
def test_yarn_cos_sin_match_transformers_rotary_embedding(head_dim, theta, yarn):
    rotary = hf_rotary(head_dim, theta, yarn)
    pos = torch.arange(0, 4 * yarn.original_max_seq_len, 3).view(1, -1)
    hf_cos, hf_sin = rotary(torch.zeros(1, pos.shape[1], head_dim), pos)
    cos, sin = rope_angles(pos, head_dim, theta, yarn)
    half = head_dim // 2  # HF repeats the frequencies over both halves
    assert (cos - hf_cos[..., :half]).abs().max().item() < 1e-6
    assert (sin - hf_sin[..., :half]).abs().max().item() < 1e-6
    assert torch.equal(hf_cos[..., :half], hf_cos[..., half:])
    assert rotary.attention_scaling == pytest.approx(yarn.mscale, abs=0)


def test_yarn_keeps_fast_frequencies_and_stretches_slow_ones():
    low, high = YARN.correction_range(16, 10_000.0)
    assert (low, high) == (2, 6)  # floor(2.62), ceil(5.63): truncated as transformers does
    plain = 1.0 / (10_000.0 ** (torch.arange(0, 16, 2, dtype=torch.float32) / 16))
    yarn = YARN.inv_freq(16, 10_000.0, torch.device("cpu"))
    assert torch.equal(yarn[:low], plain[:low])
    torch.testing.assert_close(yarn[high:], plain[high:] / YARN.factor, rtol=1e-6, atol=0)
    between = yarn[low:high] / plain[low:high]
    assert ((between < 1) & (between > 1 / YARN.factor)).any()
    assert YARN.mscale == pytest.approx(0.1 * math.log(4.0) + 1)


def test_yarn_fields_are_validated():
    with pytest.raises(ValidationError, match="factor"):
        YaRN(factor=1.0, original_max_seq_len=128)
    with pytest.raises(ValidationError, match="original_max_seq_len"):
        YaRN(factor=2.0, original_max_seq_len=0)
    with pytest.raises(ValidationError, match="beta_fast"):
        YaRN(factor=2.0, original_max_seq_len=128, beta_fast=1, beta_slow=2)
    with pytest.raises(ValidationError, match="extra"):
        YaRN(factor=2.0, original_max_seq_len=128, mscale=1.0)


def our_model(cfg: ModelConfig = CFG, seed: int = 0) -> Transformer:
    torch.manual_seed(seed)
    model = Transformer(cfg)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 1:
                p.add_(0.1 * torch.randn_like(p))
    return model.eval()


def tokens(seed: int = 1, seq: int = 96) -> torch.Tensor:
    return torch.randint(0, CFG.vocab_size, (2, seq), generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def hf_logits(model: Transformer, x: torch.Tensor) -> torch.Tensor:
    config = hf_config(model.cfg, rope_theta=model.rope_theta, rope_yarn=model.rope_yarn)
    hf = transformers.LlamaForCausalLM(config).eval()
    hf.load_state_dict(to_hf_state_dict(model.state_dict(), model.cfg), strict=True)
    return hf(input_ids=x).logits


@torch.no_grad()
def test_logits_with_yarn_match_transformers_llama():
    model, x = our_model(), tokens()
    plain = model(x)
    model.rope_yarn = YARN
    ours = model(x)
    diff = (ours - hf_logits(model, x)).abs().max().item()
    assert diff < TOL, diff
    assert (ours - plain).abs().max().item() > 100 * TOL  # YaRN did change the function


@torch.no_grad()
def test_the_rope_base_changes_the_logits_and_each_base_matches_transformers():
    model, x = our_model(), tokens(seed=2)
    logits = {}
    for theta in (1e4, 1e6):
        model.rope_theta = theta
        logits[theta] = model(x)
        diff = (logits[theta] - hf_logits(model, x)).abs().max().item()
        assert diff < TOL, (theta, diff)
    assert (logits[1e4] - logits[1e6]).abs().max().item() > 100 * TOL


@torch.no_grad()
def test_import_of_a_yarn_llama_sets_rope_yarn(tmp_path: Path):
    torch.manual_seed(3)
    config = hf_config(CFG, rope_theta=50_000.0, rope_yarn=YARN)
    hf = transformers.LlamaForCausalLM(config).eval()
    hf.save_pretrained(tmp_path)
    x = tokens(seed=3)
    expected = hf(input_ids=x).logits
    for source, cfg_arg in ((hf.state_dict(), config), (tmp_path, None)):
        ours = import_hf_model(source, cfg_arg)
        assert ours.rope_yarn == YARN and ours.rope_theta == 50_000.0
        diff = (ours(x) - expected).abs().max().item()
        assert diff < TOL, diff
        with pytest.raises(ValueError, match="import_hf_model"):  # the pair would drop YaRN
            import_hf(source, cfg_arg)


def test_yarn_configs_in_transformers_4_form_map_back():
    v4 = {
        "model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 128,
        "rms_norm_eps": 1e-6, "rope_theta": 10_000.0, "max_position_embeddings": 128,
        "vocab_size": 300,
        "rope_scaling": {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 4096},
    }  # fmt: skip
    assert model_config_from_hf(v4) == CFG
    assert rope_yarn_from_hf(v4) == YARN
    assert rope_yarn_from_hf({**v4, "rope_scaling": None}) is None
    no_truncation = {**v4["rope_scaling"], "truncate": False}
    with pytest.raises(ValueError, match="truncate"):
        model_config_from_hf({**v4, "rope_scaling": no_truncation})


def plan_with_yarn_stage() -> TrainPlan:
    stage = {"data": "broad", "steps": 4, "seq_len": 32, "batch_size": 2, "lr": 1e-3}
    return TrainPlan.model_validate(
        {
            "model": {**SPEC.model_dump(), "rope_theta": 20_000.0},
            "stages": [
                {"name": "pretrain", **stage},
                {"name": "long", **stage, "rope_theta": 4e5, "yarn": YARN.model_dump()},
                {"name": "anneal", **stage, "lr": None},
            ],
        }
    )


needs_stage_yarn = pytest.mark.skipif(
    "yarn" not in StageSpec.model_fields, reason="training.plan.StageSpec has no yarn field yet"
)


def test_stage_rope_settings_carry_the_base_forward():
    stage = {"data": "broad", "steps": 4, "seq_len": 32, "batch_size": 2, "lr": 1e-3}
    plan = TrainPlan.model_validate(
        {
            "model": SPEC.model_dump(),
            "stages": [
                {"name": "a", **stage},
                {"name": "b", **stage, "rope_theta": 5e5},
                {"name": "c", **stage},
            ],
        }
    )
    assert stage_rope_settings(plan) == [(1e4, None), (5e5, None), (5e5, None)]


@needs_stage_yarn
def test_stage_rope_settings_carry_yarn_forward():
    plan = plan_with_yarn_stage()
    assert stage_rope_settings(plan) == [(20_000.0, None), (4e5, YARN), (4e5, YARN)]
    state = {"stage": "anneal", "stage_index": 2}
    assert checkpoint_rope(plan, state) == (4e5, YARN)


@needs_stage_yarn
@pytest.mark.filterwarnings("ignore:torch.distributed is disabled")  # one-process DCP save
def test_export_of_a_yarn_stage_checkpoint_loads_in_transformers(tmp_path: Path):
    plan = plan_with_yarn_stage()
    run = tmp_path / "run"
    run.mkdir()
    (run / "plan.yaml").write_text(yaml.safe_dump(plan.model_dump(mode="json")), encoding="utf-8")
    model = our_model()
    model.rope_theta, model.rope_yarn = 4e5, YARN  # what the trainer runs stage 3 with
    state = {"stage": "anneal", "stage_index": 2, "stage_step": 4, "global_step": 12, "loader": {}}
    optimizer = torch.optim.AdamW(model.parameters())
    save_checkpoint(run / "checkpoints" / "anneal", model, optimizer, state, is_main=True)

    out = tmp_path / "hf"
    summary = export_checkpoint(run, out, verify=True)
    assert summary["max_abs_logit_diff"] < TOL
    assert summary["rope_yarn"] == YARN.model_dump()
    rope = json.loads((out / "config.json").read_text())["rope_parameters"]
    assert rope["rope_type"] == "yarn" and rope["rope_theta"] == 4e5
    assert rope["factor"] == 4.0 and rope["original_max_position_embeddings"] == 4096
    hf = transformers.AutoModelForCausalLM.from_pretrained(out, local_files_only=True).eval()
    x = tokens(seed=5)
    with torch.no_grad():
        diff = (model(x) - hf(input_ids=x).logits).abs().max().item()
    assert diff < TOL, diff
    assert import_hf_model(out).rope_yarn == YARN
