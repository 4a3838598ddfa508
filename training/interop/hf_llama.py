"""Our Transformer <-> Hugging Face `LlamaForCausalLM`: the same function, renamed weights.

Both are pre-norm Llama blocks (RMSNorm in fp32 then the gain, eps from the config; GQA
attention without biases scaled by 1/sqrt(head_dim); SwiGLU `down(silu(gate) * up)`; a
final RMSNorm; an untied head). Two things differ:
- names: `blocks.{i}.attn.wq` is `model.layers.{i}.self_attn.q_proj`, `ffn.w1/w3/w2` are
  `mlp.gate_proj/up_proj/down_proj`, and so on (`_NAMES`);
- RoPE layout: we rotate interleaved pairs (dims 2j, 2j+1 share frequency j); HF's
  `rotate_half` pairs dim j with dim j + head_dim/2. Reordering the rows of every q and k
  head from (0, 1, 2, 3, ...) to (0, 2, 4, ..., 1, 3, 5, ...) turns one into the other
  exactly: q.k is unchanged by a permutation applied to both, and v/o are untouched.
  This is the inverse of the `permute` in HF's `convert_llama_weights_to_hf.py`.
RoPE's settings travel in the config: the base as `rope_theta`, YaRN (a stage may switch it
on) as `rope_type: yarn` with its factor, original length and betas; both sides compute the
same per-frequency values (`training/model/rope.py`).

transformers is imported inside the functions that need it, so `sharpen train` never pays
for it.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any

import torch

from training.model.config import ModelConfig
from training.model.rope import YaRN

if TYPE_CHECKING:
    from transformers import LlamaConfig

# (ours, HF) name templates inside block {i}.
_NAMES = (
    ("attn_norm.weight", "input_layernorm.weight"),
    ("attn.wq.weight", "self_attn.q_proj.weight"),
    ("attn.wk.weight", "self_attn.k_proj.weight"),
    ("attn.wv.weight", "self_attn.v_proj.weight"),
    ("attn.wo.weight", "self_attn.o_proj.weight"),
    ("ffn_norm.weight", "post_attention_layernorm.weight"),
    ("ffn.w1.weight", "mlp.gate_proj.weight"),
    ("ffn.w3.weight", "mlp.up_proj.weight"),
    ("ffn.w2.weight", "mlp.down_proj.weight"),
)
_TOP = (
    ("tok_embeddings.weight", "model.embed_tokens.weight"),
    ("norm.weight", "model.norm.weight"),
    ("output.weight", "lm_head.weight"),
)
_OURS_TO_HF = dict(_TOP) | {f"blocks.{{i}}.{a}": f"model.layers.{{i}}.{b}" for a, b in _NAMES}
_HF_TO_OURS = {b: a for a, b in _OURS_TO_HF.items()}
_LAYER = re.compile(r"^(blocks|model\.layers)\.(\d+)\.(.+)$")


def interleaved_to_halves(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Reorder each head's output rows from interleaved RoPE pairs to HF's halves."""
    rows, cols = w.shape
    return w.view(n_heads, rows // n_heads // 2, 2, cols).transpose(1, 2).reshape(rows, cols)


def halves_to_interleaved(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """The inverse of `interleaved_to_halves`."""
    rows, cols = w.shape
    return w.view(n_heads, 2, rows // n_heads // 2, cols).transpose(1, 2).reshape(rows, cols)


def _rename(name: str, table: dict[str, str]) -> str:
    m = _LAYER.match(name)
    key = name if m is None else f"{m[1]}.{{i}}.{m[3]}"
    if key not in table:
        raise KeyError(f"no counterpart for weight {name!r}")
    return table[key].replace("{i}", m[2]) if m else table[key]


def to_hf_state_dict(state: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """Our state dict -> `LlamaForCausalLM` state dict (unpermuted tensors share memory)."""
    out = {}
    for name, t in state.items():
        if name.endswith("attn.wq.weight"):
            t = interleaved_to_halves(t, cfg.n_heads)
        elif name.endswith("attn.wk.weight"):
            t = interleaved_to_halves(t, cfg.n_kv_heads)
        out[_rename(name, _OURS_TO_HF)] = t.detach().contiguous()
    return out


def from_hf_state_dict(
    hf_state: dict[str, torch.Tensor], cfg: ModelConfig
) -> dict[str, torch.Tensor]:
    """`LlamaForCausalLM` state dict -> ours. A tied checkpoint gets a copy as our head."""
    hf_state = {k: v for k, v in hf_state.items() if not k.endswith("rotary_emb.inv_freq")}
    if "lm_head.weight" not in hf_state:
        hf_state["lm_head.weight"] = hf_state["model.embed_tokens.weight"]
    out = {}
    for name, t in hf_state.items():
        if name.endswith("self_attn.q_proj.weight"):
            t = halves_to_interleaved(t, cfg.n_heads)
        elif name.endswith("self_attn.k_proj.weight"):
            t = halves_to_interleaved(t, cfg.n_kv_heads)
        out[_rename(name, _HF_TO_OURS)] = t.detach().contiguous()
    return out


def hf_config(
    cfg: ModelConfig,
    *,
    rope_theta: float | None = None,
    rope_yarn: YaRN | None = None,
    bos_token_id: int | None = None,
    eos_token_id: int | None = None,
    pad_token_id: int | None = None,
    dtype: torch.dtype = torch.float32,
) -> LlamaConfig:
    """The `LlamaConfig` whose model computes our function. `rope_theta` overrides the
    plan's base and `rope_yarn` switches YaRN on (a later stage may have done either)."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.dim,
        intermediate_size=cfg.ffn_hidden,
        num_hidden_layers=cfg.n_layers,
        num_attention_heads=cfg.n_heads,
        num_key_value_heads=cfg.n_kv_heads,
        head_dim=cfg.head_dim,
        hidden_act="silu",
        max_position_embeddings=cfg.max_seq_len,
        rms_norm_eps=cfg.norm_eps,
        rope_parameters=hf_rope_parameters(rope_theta or cfg.rope_theta, rope_yarn),
        tie_word_embeddings=False,
        attention_bias=False,
        mlp_bias=False,
        attention_dropout=0.0,
        bos_token_id=bos_token_id,
        eos_token_id=eos_token_id,
        pad_token_id=pad_token_id,
        architectures=["LlamaForCausalLM"],
        dtype=dtype,
    )


def hf_rope_parameters(theta: float, yarn: YaRN | None = None) -> dict[str, Any]:
    """transformers' `rope_parameters` (v4: `rope_scaling` plus `rope_theta`) for our RoPE."""
    if yarn is None:
        return {"rope_type": "default", "rope_theta": theta}
    params: dict[str, Any] = {
        "rope_type": "yarn",
        "rope_theta": theta,
        "factor": yarn.factor,
        "original_max_position_embeddings": yarn.original_max_seq_len,
        "beta_fast": yarn.beta_fast,
        "beta_slow": yarn.beta_slow,
    }
    if yarn.attention_factor is not None:
        params["attention_factor"] = yarn.attention_factor
    return params


def _hf_rope(c: dict[str, Any]) -> tuple[dict[str, Any], str]:
    rope = c.get("rope_parameters") or c.get("rope_scaling") or {}
    return rope, rope.get("rope_type", rope.get("type", "default"))


def rope_yarn_from_hf(config: LlamaConfig | dict[str, Any]) -> YaRN | None:
    """Our YaRN for an HF config with `rope_type: yarn` (None for plain RoPE); refuses the
    variants our rope_angles does not compute (no truncation, partial rotary)."""
    c = config if isinstance(config, dict) else config.to_dict()
    rope, rope_type = _hf_rope(c)
    if rope_type != "yarn":
        return None
    if rope.get("truncate", True) is False or rope.get("partial_rotary_factor", 1.0) != 1.0:
        raise ValueError(
            "HF Llama config not importable: yarn with truncate=false or partial_rotary_factor"
        )
    original = rope.get("original_max_position_embeddings") or c["max_position_embeddings"]
    factor = rope.get("factor") or c["max_position_embeddings"] / original
    attention_factor = rope.get("attention_factor")
    mscale, mscale_all_dim = rope.get("mscale"), rope.get("mscale_all_dim")
    if attention_factor is None and mscale and mscale_all_dim:  # DeepSeek's form, as HF reads it
        attention_factor = (0.1 * mscale * math.log(factor) + 1.0) / (
            0.1 * mscale_all_dim * math.log(factor) + 1.0
        )
    return YaRN(
        factor=factor,
        original_max_seq_len=original,
        beta_fast=rope.get("beta_fast") or 32.0,
        beta_slow=rope.get("beta_slow") or 1.0,
        attention_factor=attention_factor,
    )


def model_config_from_hf(config: LlamaConfig | dict[str, Any]) -> ModelConfig:
    """Our ModelConfig for an HF Llama config; refuses what our model cannot compute.

    A `rope_type: yarn` config is accepted: its YaRN is `rope_yarn_from_hf(config)`, to be set
    as the model's `rope_yarn` (`export.import_hf_model` does both).
    """
    c = config if isinstance(config, dict) else config.to_dict()
    rope, rope_type = _hf_rope(c)
    problems = []
    if c.get("model_type", "llama") != "llama":
        problems.append(f"model_type {c.get('model_type')!r}")
    if c.get("hidden_act", "silu") != "silu":
        problems.append(f"hidden_act {c.get('hidden_act')!r}")
    if c.get("attention_bias") or c.get("mlp_bias"):
        problems.append("biases")
    if rope_type not in ("default", "yarn"):
        problems.append(f"rope_type {rope_type!r}")
    head_dim = c.get("head_dim") or c["hidden_size"] // c["num_attention_heads"]
    if head_dim * c["num_attention_heads"] != c["hidden_size"]:
        problems.append(f"head_dim {head_dim} x heads != hidden_size")
    if problems:
        raise ValueError(f"HF Llama config not importable: {', '.join(problems)}")
    rope_yarn_from_hf(c)  # refuses the YaRN variants we do not compute
    return ModelConfig(
        dim=c["hidden_size"],
        n_layers=c["num_hidden_layers"],
        n_heads=c["num_attention_heads"],
        n_kv_heads=c.get("num_key_value_heads") or c["num_attention_heads"],
        ffn_hidden=c["intermediate_size"],
        norm_eps=c.get("rms_norm_eps", 1e-6),
        rope_theta=rope.get("rope_theta", c.get("rope_theta", 10_000.0)),
        max_seq_len=c.get("max_position_embeddings", 2048),
        vocab_size=c["vocab_size"],
    )
