"""The MFU helper: FLOPs per token against an explicit count, device peaks, the env override."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from training.model import ModelConfig, Transformer
from training.model.flops import (
    PEAK_ENV,
    chip_key,
    flops_per_token,
    matmul_params,
    mfu,
    peak_flops,
    peak_flops_for_name,
)
from training.model.presets import get_preset, param_count

TINY = ModelConfig(**get_preset("tiny").model_dump(), vocab_size=512)


def test_matmul_params_are_the_models_linear_weights():
    model = Transformer(TINY)
    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear))
    assert matmul_params(TINY, TINY.vocab_size) == linear
    # everything but the embedding table and the norm gains
    gains = sum(p.numel() for n, p in model.named_parameters() if p.ndim == 1)
    embedding = model.tok_embeddings.weight.numel()
    assert linear == param_count(TINY, TINY.vocab_size) - embedding - gains


def test_flops_per_token_is_six_n_plus_the_palm_attention_term():
    n = matmul_params(TINY, TINY.vocab_size)
    attention = 12 * TINY.n_layers * TINY.n_heads * TINY.head_dim * 128
    assert flops_per_token(TINY, 128) == 6 * n + attention
    assert flops_per_token(TINY, 128, causal=True) == 6 * n + attention / 2
    spec = get_preset("tiny")  # a spec without a vocabulary needs one given
    assert flops_per_token(spec, 128, vocab_size=512) == flops_per_token(TINY, 128)
    with pytest.raises(ValueError, match="vocabulary"):
        flops_per_token(spec, 128)


def test_one_b_preset_attention_dominates_at_32k():
    spec = get_preset("1b")
    short, long = (flops_per_token(spec, t, vocab_size=32768) for t in (4096, 32768))
    six_n = 6 * matmul_params(spec, 32768)
    assert long - six_n > 2 * six_n  # the window length matters at long context
    assert short < long


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("NVIDIA H100 80GB HBM3", "h100-sxm"),
        ("NVIDIA H100 PCIe", "h100-pcie"),
        ("NVIDIA H100 NVL", "h100-nvl"),
        ("NVIDIA H200", "h200"),
        ("NVIDIA H200 NVL", "h200-nvl"),
        ("NVIDIA GH200 480GB", "h100-sxm"),
        ("NVIDIA A100-SXM4-80GB", "a100"),
        ("NVIDIA A10G", "a10"),
        ("NVIDIA L4", "l4"),
        ("NVIDIA L40S", "l40s"),
        ("NVIDIA GeForce RTX 4090", "rtx-4090"),
        ("Tesla T4", "t4"),
        ("Some Future GPU", None),
    ],
)
def test_device_names_map_to_the_right_row(name: str, key: str | None):
    assert chip_key(name) == key


def test_peaks_by_dtype():
    h100 = "NVIDIA H100 80GB HBM3"
    assert peak_flops_for_name(h100, torch.bfloat16, tf32=False) == pytest.approx(989.4e12)
    assert peak_flops_for_name(h100, torch.float32, tf32=False) == pytest.approx(66.9e12)
    assert peak_flops_for_name(h100, torch.float32, tf32=True) == pytest.approx(494.7e12)
    assert peak_flops_for_name("Tesla T4", torch.bfloat16, tf32=False) is None
    assert peak_flops_for_name("Tesla T4", torch.float16, tf32=False) == pytest.approx(65e12)
    assert peak_flops_for_name("Some Future GPU", torch.bfloat16, tf32=False) is None


def test_cpu_has_no_peak_so_mfu_is_null(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(PEAK_ENV, raising=False)
    peak = peak_flops(torch.device("cpu"), torch.float32)
    assert peak is None
    assert mfu(1e4, 1e9, peak) is None


def test_env_override_wins(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(PEAK_ENV, "2e12")
    assert peak_flops(torch.device("cpu"), torch.float32) == 2e12
    assert mfu(1000.0, 1e9, 2e12) == pytest.approx(0.5)
    monkeypatch.setenv(PEAK_ENV, "fast")
    with pytest.raises(ValueError, match=PEAK_ENV):
        peak_flops(torch.device("cpu"), torch.float32)
