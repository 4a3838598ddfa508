"""Llama-style decoder (RMSNorm, SwiGLU, RoPE, grouped-query attention, document masking)."""

from training.model.config import ModelConfig, ModelSpec
from training.model.llama import Transformer, cross_entropy_loss

__all__ = ["ModelConfig", "ModelSpec", "Transformer", "cross_entropy_loss"]
