"""DPO-family losses on per-sequence log-probabilities, as pure functions.

Inputs are the summed log-probabilities of each response's tokens (prompt tokens excluded)
under the policy and the frozen reference, one entry per preference pair; `sequence_logps`
computes them from logits. Each loss returns one value per pair: a DPO objective sums them
and counts pairs as its `n_valid`, so the step's global mean is the mean over pairs
(`training/train_step.py`). With h = (pc - rc) - (pr - rr), the chosen log-ratio minus the
rejected one:

* `sigmoid` (DPO, Rafailov et al. 2023, eq. 7): -log sigmoid(beta h). `label_smoothing` e
  is conservative DPO (cDPO, Mitchell 2023), the labels taken as flipped with probability
  e: -(1 - e) log sigmoid(beta h) - e log sigmoid(-beta h), as TRL's `loss_type="sigmoid"`.
* `ipo` (Azar et al. 2023, eq. 17): (h - 1/(2 beta))^2, with every log-probability divided
  by its response's token count first. The paper writes h with sequence log-probs; TRL
  averages over tokens for IPO after the paper's authors pointed out that with sums the
  constant target 1/(2 beta) means something different at every length (huggingface/trl
  PR #1265; huggingface.co/blog/pref-tuning). We follow TRL, so `ipo` needs the lengths.
* `length_normalized` (LN-DPO, Ahrabian et al. 2024, "The Hitchhiker's Guide to Human
  Alignment with *PO"): the sigmoid loss (label smoothing included) on
  h = (pc - rc) / |y_c| - (pr - rr) / |y_r|, i.e. each response's log-ratio averaged over
  its tokens, so a long response does not win by its length alone. SimPO (Meng et al.
  2024) uses the same averaged policy log-prob without a reference and with a margin.

Rewards (returned, detached) are the implicit rewards beta * log-ratio, averaged per token
for the two normalised kinds: the usual metrics are their mean, their margin and the
fraction of pairs with chosen > rejected.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from training.objectives.base import IGNORE_INDEX

PreferenceKind = Literal["sigmoid", "ipo", "length_normalized"]
KINDS: tuple[str, ...] = ("sigmoid", "ipo", "length_normalized")


def sequence_logps(
    logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = IGNORE_INDEX
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row: (sum of log p(label) over labels != ignore_index, number of such labels).

    `logits` (B, T, V) and `labels` (B, T) are aligned as in `CausalLM`: labels[:, t] is the
    target of logits[:, t]. Computed in float32 at least, through cross entropy, so no
    (B, T, V) log-softmax is kept for the backward beyond what cross entropy keeps.
    """
    dtype = torch.promote_types(logits.dtype, torch.float32)
    token_nll = F.cross_entropy(
        logits.flatten(0, 1).to(dtype),
        labels.flatten(),
        ignore_index=ignore_index,
        reduction="none",
    ).view_as(labels)  # 0 at ignored labels
    return -token_nll.sum(-1), (labels != ignore_index).sum(-1)


def preference_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    *,
    beta: float,
    kind: PreferenceKind = "sigmoid",
    chosen_lengths: torch.Tensor | None = None,
    rejected_lengths: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss per pair, chosen rewards, rejected rewards), each shaped like the inputs.

    The log-probs are per-sequence sums; `chosen_lengths` / `rejected_lengths` (response
    token counts) are required by `ipo` and `length_normalized` and ignored by `sigmoid`.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown preference loss {kind!r}; known: {list(KINDS)}")
    if beta <= 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    if not 0.0 <= label_smoothing < 0.5:
        raise ValueError(f"label_smoothing must be in [0, 0.5), got {label_smoothing}")
    if kind == "ipo" and label_smoothing:
        raise ValueError("label_smoothing applies to the sigmoid losses, not to ipo")

    chosen_ratio = policy_chosen_logps - ref_chosen_logps
    rejected_ratio = policy_rejected_logps - ref_rejected_logps
    if kind != "sigmoid":
        if chosen_lengths is None or rejected_lengths is None:
            raise ValueError(f"{kind!r} averages over tokens: pass chosen/rejected_lengths")
        chosen_ratio = chosen_ratio / _lengths(chosen_lengths, chosen_ratio)
        rejected_ratio = rejected_ratio / _lengths(rejected_lengths, rejected_ratio)
    h = chosen_ratio - rejected_ratio

    if kind == "ipo":
        losses = (h - 1.0 / (2.0 * beta)) ** 2
    else:
        losses = -F.logsigmoid(beta * h) * (1.0 - label_smoothing)
        if label_smoothing:
            losses = losses - F.logsigmoid(-beta * h) * label_smoothing
    return losses, beta * chosen_ratio.detach(), beta * rejected_ratio.detach()


def _lengths(lengths: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Token counts as `like`'s dtype; an empty response counts as one token, not a NaN."""
    return torch.as_tensor(lengths, device=like.device).to(like.dtype).clamp(min=1)
