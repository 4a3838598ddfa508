"""Batched sampling with a KV cache on the native model (GRPO rollouts, `sharpen eval`)."""

from training.generation.generate import (
    DecodeState,
    FinishReason,
    GenerationOutput,
    generate,
    prefill,
    step,
)
from training.generation.sampling import sample_tokens, token_logprobs, top_p_filter

__all__ = [
    "DecodeState",
    "FinishReason",
    "GenerationOutput",
    "generate",
    "prefill",
    "sample_tokens",
    "step",
    "token_logprobs",
    "top_p_filter",
]
