"""Model architecture settings, typed and validated once at plan load."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class ModelSpec(BaseModel):
    """Architecture as written in a plan YAML; the vocabulary comes from the shard manifest."""

    model_config = ConfigDict(extra="forbid")

    dim: int = Field(gt=0, description="Residual stream width (hidden size).")
    n_layers: int = Field(gt=0, description="Number of transformer blocks.")
    n_heads: int = Field(gt=0, description="Query heads per attention layer.")
    n_kv_heads: int = Field(
        gt=0, description="Key/value heads (grouped-query attention); divides n_heads."
    )
    ffn_hidden: int = Field(gt=0, description="SwiGLU inner width.")
    norm_eps: float = Field(default=1e-5, gt=0, description="RMSNorm epsilon.")
    rope_theta: float = Field(default=10_000.0, gt=0, description="RoPE base frequency.")
    max_seq_len: int = Field(gt=0, description="Longest window any stage may train on.")
    attn_backend: Literal["auto", "doc_blocks", "flex", "flash_varlen", "sdpa"] = Field(
        default="auto",
        description="Document-masked attention. auto: flash_varlen on CUDA with flash_attn in "
        "bf16/fp16, else doc_blocks. doc_blocks: causal SDPA per document, linear memory. "
        "flex: compiled flex_attention with a document BlockMask (slow first compile). "
        "flash_varlen: flash-attn varlen, CUDA and bf16/fp16 only. sdpa: dense T x T mask, "
        "quadratic memory, a test reference.",
    )

    @model_validator(mode="after")
    def _check_heads(self) -> ModelSpec:
        if self.dim % self.n_heads:
            raise ValueError(f"model.dim={self.dim} is not divisible by n_heads={self.n_heads}")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(
                f"model.n_heads={self.n_heads} is not divisible by n_kv_heads={self.n_kv_heads}"
            )
        if (self.dim // self.n_heads) % 2:
            raise ValueError("model head dim (dim / n_heads) must be even for RoPE")
        return self


class ModelConfig(ModelSpec):
    """A buildable model: the plan's architecture plus the tokenizer's vocabulary size."""

    vocab_size: int = Field(gt=0, description="Tokenizer vocabulary size (from the manifest).")

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads
