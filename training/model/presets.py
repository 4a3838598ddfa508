"""Named model shapes, so a plan can say `model: {preset: 1b}` and a reader can compare sizes.

Where each number comes from:
- `tiny`: ours, the smallest shape that still has GQA (2 query heads per kv head) and two
  blocks; for tests.
- `demo`: ours, `training/recipes/demo.yaml`'s model (2.84M parameters at its 8192 vocab).
- `1b`: the shape of Llama 3.2 1B as published in its Hugging Face `config.json`
  (meta-llama/Llama-3.2-1B: hidden_size 2048, 16 layers, 32 heads, 8 kv heads,
  intermediate_size 8192, rope_theta 500000, rms_norm_eps 1e-5). Our head is untied, so
  at Llama 3's 128256 vocab it has 1.50B parameters; at a 32768 vocab it has 1.11B.
- `xgen-small-4b`, `xgen-small-9b`: the xGen-small technical report (Nijkamp et al.,
  Salesforce, 2025, arXiv:2505.06496) and its model cards publish the totals (4B and 9B
  parameters), a Transformer decoder, and a 128k-token context (`max_seq_len` 131072);
  that is all we take from them. The per-layer shapes (width, depth, heads, kv heads, SwiGLU
  width, vocabulary, rope_theta) are ASSUMPTIONS: Llama-3-style GQA shapes (head dim 128,
  8 kv heads, ~3.5x SwiGLU) that we sized to land on the published totals at a 128256
  vocabulary, because the released `config.json` (Salesforce/xgen-small-4B-base-r) was not
  readable from this offline build. Replace them with that file's `hidden_size`,
  `num_hidden_layers`, `num_attention_heads`, `num_key_value_heads`, `intermediate_size`,
  `vocab_size` and `rope_theta` before relying on them.

`python -m training.model.presets` prints the table with exact parameter counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from training.model.config import ModelSpec


@dataclass(frozen=True)
class Preset:
    spec: ModelSpec
    reference_vocab: int  # the vocabulary the table's parameter count assumes
    source: str


PRESETS: dict[str, Preset] = {
    "tiny": Preset(
        ModelSpec(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_hidden=128, max_seq_len=128),
        reference_vocab=512,
        source="ours (tests)",
    ),
    "demo": Preset(
        ModelSpec(dim=128, n_layers=4, n_heads=4, n_kv_heads=2, ffn_hidden=352, max_seq_len=512),
        reference_vocab=8192,
        source="training/recipes/demo.yaml",
    ),
    "1b": Preset(
        ModelSpec(
            dim=2048,
            n_layers=16,
            n_heads=32,
            n_kv_heads=8,
            ffn_hidden=8192,
            rope_theta=500_000.0,
            max_seq_len=8192,
        ),
        reference_vocab=32768,
        source="Llama 3.2 1B config.json shape; vocab ours",
    ),
    "xgen-small-4b": Preset(
        ModelSpec(
            dim=3072,
            n_layers=32,
            n_heads=24,
            n_kv_heads=8,
            ffn_hidden=8192,
            rope_theta=1_000_000.0,
            max_seq_len=131072,
        ),
        reference_vocab=128256,
        source="arXiv:2505.06496 total + 128k; shapes assumed",
    ),
    "xgen-small-9b": Preset(
        ModelSpec(
            dim=4096,
            n_layers=36,
            n_heads=32,
            n_kv_heads=8,
            ffn_hidden=14336,
            rope_theta=1_000_000.0,
            max_seq_len=131072,
        ),
        reference_vocab=128256,
        source="arXiv:2505.06496 total + 128k; shapes assumed",
    ),
}

# The totals the report publishes, for the tolerance test.
PUBLISHED_PARAMS = {"xgen-small-4b": 4e9, "xgen-small-9b": 9e9}


def get_preset(name: str) -> ModelSpec:
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name].spec.model_copy()


def expand_preset(raw: Any) -> Any:
    """`{preset: NAME, **overrides}` -> the preset's fields with the overrides applied.

    Anything else passes through unchanged, so this fits a pydantic `mode="before"`
    validator and the field errors keep their plan locations.
    """
    if not isinstance(raw, dict) or "preset" not in raw:
        return raw
    overrides = dict(raw)
    name = overrides.pop("preset")
    if not isinstance(name, str):
        raise ValueError(f"model.preset must be a preset name, got {name!r}")
    return {**get_preset(name).model_dump(), **overrides}


def resolve_model_spec(raw: dict[str, Any]) -> ModelSpec:
    """A plan's `model:` mapping, with or without `preset:`, as a validated ModelSpec."""
    return ModelSpec.model_validate(expand_preset(raw))


def param_count(spec: ModelSpec, vocab_size: int, *, embeddings: bool = True) -> int:
    """Exact parameter count of `training.model.llama.Transformer` for this shape.

    Untied input embedding and output head; no biases; two RMSNorm gains per block plus
    the final norm. `embeddings=False` leaves out the embedding and the head.
    """
    head_dim = spec.dim // spec.n_heads
    q_out, kv_out = spec.n_heads * head_dim, spec.n_kv_heads * head_dim
    attn = spec.dim * q_out + 2 * spec.dim * kv_out + q_out * spec.dim
    ffn = 3 * spec.dim * spec.ffn_hidden
    body = spec.n_layers * (attn + ffn + 2 * spec.dim) + spec.dim
    return body + (2 * vocab_size * spec.dim if embeddings else 0)


def format_table() -> str:
    head = (
        f"{'preset':<15}{'dim':>6}{'layers':>7}{'heads':>6}{'kv':>4}{'ffn':>7}"
        f"{'max_seq':>8}{'theta':>11}{'vocab':>8}{'params':>15}{'non-emb':>15}  source"
    )
    rows = [head]
    for name, p in PRESETS.items():
        s = p.spec
        rows.append(
            f"{name:<15}{s.dim:>6}{s.n_layers:>7}{s.n_heads:>6}{s.n_kv_heads:>4}"
            f"{s.ffn_hidden:>7}{s.max_seq_len:>8}{s.rope_theta:>11.0f}{p.reference_vocab:>8}"
            f"{param_count(s, p.reference_vocab):>15,}"
            f"{param_count(s, p.reference_vocab, embeddings=False):>15,}  {p.source}"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    print(format_table())
