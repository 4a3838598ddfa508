"""Next-token choice from a batch of logits: greedy, temperature, top-p (nucleus).

Draws go through an optional `torch.Generator` (on the logits' device), so a seeded
generator makes sampling reproducible: each call draws one number per row whatever the
rows hold, so the stream advances the same way in every run of the same batch.
"""

from __future__ import annotations

import torch


def top_p_filter(probs: torch.Tensor, top_p: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Probabilities sorted high to low with the tail beyond the nucleus zeroed, and the order.

    A token is kept while the mass strictly ahead of it is below `top_p`, so the most
    likely token always survives and a tiny `top_p` is greedy. The sort is stable, so
    among equal probabilities the lowest id comes first, as `argmax` picks it.
    """
    sorted_p, order = probs.sort(dim=-1, descending=True, stable=True)
    ahead = sorted_p.cumsum(dim=-1) - sorted_p
    return sorted_p.masked_fill(ahead >= top_p, 0.0), order


def sample_tokens(
    logits: torch.Tensor,
    *,
    temperature: float = 1.0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """(B, V) logits -> (B,) token ids. Temperature 0 is greedy (top_p then plays no part)."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p >= 1.0:
        return torch.multinomial(probs, 1, generator=generator).squeeze(1)
    kept, order = top_p_filter(probs, top_p)
    picked = torch.multinomial(kept, 1, generator=generator)  # multinomial renormalises
    return order.gather(-1, picked).squeeze(1)


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """log p(token) under the raw model (temperature 1, no top-p): (B, V), (B,) -> (B,) fp32."""
    return torch.log_softmax(logits.float(), dim=-1).gather(-1, tokens.unsqueeze(1)).squeeze(1)
