"""Probes run on the model being trained (stage-end checks that land in the metrics)."""

from training.eval.passkey import (
    passkey_accuracy,
    passkey_completions,
    passkey_prompts,
    score_completion,
)

__all__ = ["passkey_accuracy", "passkey_completions", "passkey_prompts", "score_completion"]
