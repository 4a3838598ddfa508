"""GRPO's advantages and clipped token loss against a float64 NumPy reference written here,
with hand-derived gradients (no autograd on the reference side)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.objectives.grpo_loss import group_advantages, grpo_token_loss


def reference(logp, old, adv, mask, *, eps_low, eps_high, ref=None, beta=0.0):
    """(loss sum, d loss_sum / d logp, n_valid, clip fraction, mean ratio, mean k3), float64."""
    logp, old = np.asarray(logp, np.float64), np.asarray(old, np.float64)
    a = np.asarray(adv, np.float64)[:, None]
    m = np.asarray(mask, bool)
    r = np.exp(logp - old)
    surrogate = np.minimum(r * a, np.clip(r, 1 - eps_low, 1 + eps_high) * a)
    clipped = ((r > 1 + eps_high) & (a > 0)) | ((r < 1 - eps_low) & (a < 0))
    grad = np.where(clipped, 0.0, -a * r)  # d(-r A)/d logp = -r A where the clip is not active
    loss = -surrogate
    k3 = np.zeros_like(r)
    if ref is not None:
        d = np.asarray(ref, np.float64) - logp
        k3 = np.exp(d) - d - 1
        loss = loss + beta * k3
        grad = grad + beta * (1 - np.exp(d))  # d/dlogp of e^d - d - 1 with d = ref - logp
    n = m.sum()
    return ((loss * m).sum(), grad * m, n, (clipped & m).sum() / n, (r * m).sum() / n,
            (k3 * m).sum() / n)


def _batch(seed: int, b: int = 6, t: int = 9, spread: float = 0.3):
    rng = np.random.default_rng(seed)
    old = -rng.uniform(0.05, 4.0, (b, t))
    logp = old + rng.normal(0, spread, (b, t))  # ratios from ~0.4 to ~2.5: both clips hit
    ref = old + rng.normal(0, spread, (b, t))
    adv = rng.normal(0, 1, b)
    lengths = rng.integers(1, t + 1, b)
    mask = np.arange(t)[None, :] < lengths[:, None]
    return logp, old, adv, mask, ref


def _ours(logp, old, adv, mask, ref, dtype, **kw):
    x = torch.tensor(logp, dtype=dtype, requires_grad=True)
    loss, n, stats = grpo_token_loss(
        x, torch.tensor(old, dtype=dtype), torch.tensor(adv, dtype=dtype), torch.tensor(mask),
        ref_logps=None if ref is None else torch.tensor(ref, dtype=dtype), **kw,
    )
    loss.backward()
    return loss, x.grad, n, stats


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize(("eps_low", "eps_high"), [(0.2, None), (0.2, 0.28)])
@pytest.mark.parametrize("kl_beta", [0.0, 0.04])
def test_matches_float64_reference(seed: int, eps_low: float, eps_high: float | None,
                                   kl_beta: float) -> None:
    batch = _batch(seed)
    for dtype, rtol, atol in ((torch.float64, 1e-10, 1e-12), (torch.float32, 1e-5, 1e-6)):
        # the reference is taken on the inputs as rounded to `dtype`
        np_dtype = np.float64 if dtype == torch.float64 else np.float32
        logp, old, adv, mask, ref = [a if a.dtype == bool else a.astype(np_dtype).astype(float)
                                     for a in batch]
        want = reference(logp, old, adv, mask, eps_low=eps_low, eps_high=eps_high or eps_low,
                         ref=ref, beta=kl_beta)
        loss, grad, n, stats = _ours(logp, old, adv, mask, ref, dtype, clip_eps=eps_low,
                                     clip_eps_high=eps_high, kl_beta=kl_beta)
        np.testing.assert_allclose(loss.item(), want[0], rtol=rtol, atol=atol)
        np.testing.assert_allclose(grad.double().numpy(), want[1], rtol=rtol, atol=atol)
        assert n.item() == want[2]
        np.testing.assert_allclose(stats["clip_fraction"].item(), want[3], rtol=rtol)
        np.testing.assert_allclose(stats["mean_ratio"].item(), want[4], rtol=rtol)
        np.testing.assert_allclose(stats["mean_kl"].item(), want[5], rtol=rtol, atol=atol)
    assert 0 < want[3] < 1  # the batch does exercise the clip


def _one_token_grad(ratio: float, adv: float, **kw) -> float:
    x = torch.tensor([[np.log(ratio)]], dtype=torch.float64, requires_grad=True)
    loss, _, _ = grpo_token_loss(x, torch.zeros(1, 1, dtype=torch.float64),
                                 torch.tensor([adv], dtype=torch.float64),
                                 torch.ones(1, 1, dtype=torch.bool), **kw)
    loss.backward()
    return x.grad.item()


def test_clip_removes_the_gradient_only_where_it_should() -> None:
    # beyond 1 + eps with A > 0, below 1 - eps with A < 0: clipped, no gradient
    assert _one_token_grad(1.5, +1.0) == 0.0
    assert _one_token_grad(0.5, -1.0) == 0.0
    # the pessimistic side keeps its gradient: r A is the smaller term
    assert _one_token_grad(1.5, -1.0) == pytest.approx(1.5)
    assert _one_token_grad(0.5, +1.0) == pytest.approx(-0.5)
    # inside the trust region the gradient is -r A
    assert _one_token_grad(1.1, 2.0) == pytest.approx(-2.2)
    # clip-higher: 1.25 is inside [0.8, 1.28] for A > 0
    assert _one_token_grad(1.25, 1.0, clip_eps_high=0.28) == pytest.approx(-1.25)
    assert _one_token_grad(1.25, 1.0) == 0.0


def test_on_policy_step_is_the_policy_gradient() -> None:
    """old == logps (first update after sampling): ratio 1, gradient -A per valid token."""
    logp, _, adv, mask, _ = _batch(7)
    x = torch.tensor(logp, requires_grad=True)
    loss, n, stats = grpo_token_loss(x, x.detach(), torch.tensor(adv), torch.tensor(mask))
    loss.backward()
    expected = -adv[:, None] * mask
    np.testing.assert_allclose(x.grad.numpy(), expected, rtol=1e-12, atol=0)
    assert loss.item() == pytest.approx(expected.sum())
    assert stats["mean_ratio"].item() == 1.0 and stats["clip_fraction"].item() == 0.0


def test_padding_may_hold_anything() -> None:
    logp, old, adv, mask, ref = _batch(3)
    want = reference(logp, old, adv, mask, eps_low=0.2, eps_high=0.2, ref=ref, beta=0.1)
    for a in (logp, old, ref):
        a[~mask] = -np.inf
    loss, grad, _, stats = _ours(logp, old, adv, mask, ref, torch.float64, kl_beta=0.1)
    assert torch.isfinite(grad).all() and all(torch.isfinite(v) for v in stats.values())
    np.testing.assert_allclose(loss.item(), want[0], rtol=1e-12)
    np.testing.assert_allclose(grad.numpy(), want[1], rtol=1e-12, atol=1e-15)


def test_token_level_normalisation_across_micro_batches() -> None:
    """Sum of micro-batch sums over the global count == the loss of the whole batch, so a
    long completion's tokens count as much as a short one's (DAPO)."""
    logp, old, adv, mask, _ = _batch(5, b=8)
    t = lambda a: torch.tensor(a)  # noqa: E731
    whole, n_whole, _ = grpo_token_loss(t(logp), t(old), t(adv), t(mask))
    parts = [grpo_token_loss(t(logp[s]), t(old[s]), t(adv[s]), t(mask[s]))
             for s in (slice(0, 3), slice(3, 8))]
    n = sum(p[1] for p in parts)
    assert n == n_whole
    torch.testing.assert_close(sum(p[0] for p in parts) / n, whole / n_whole)


def test_kl_needs_a_reference_and_shapes_are_checked() -> None:
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="ref_logps"):
        grpo_token_loss(x, x, torch.zeros(2), x.bool(), kl_beta=0.1)
    with pytest.raises(ValueError, match="shapes"):
        grpo_token_loss(x, x, torch.zeros(3), x.bool())


def test_group_advantages_match_numpy() -> None:
    rng = np.random.default_rng(0)
    rewards = rng.integers(0, 2, 4 * 8).astype(np.float64)
    rewards[:8] = 1.0  # a group that all solved it
    g = rewards.reshape(4, 8)
    centred = g - g.mean(1, keepdims=True)
    want_std = (centred / (g.std(1, ddof=1, keepdims=True) + 1e-6)).ravel()
    got = group_advantages(torch.tensor(rewards), 8)
    np.testing.assert_allclose(got.numpy(), want_std, rtol=1e-12, atol=1e-12)
    got_none = group_advantages(torch.tensor(rewards), 8, scale="none")
    np.testing.assert_allclose(got_none.numpy(), centred.ravel(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("scale", ["std", "none"])
def test_group_advantages_zero_mean_and_identical_groups(scale: str) -> None:
    rewards = torch.tensor([0.0, 1.0, 1.0, 0.5, 3.0, 3.0, 3.0, 3.0, 0, 0, 0, 0])
    adv = group_advantages(rewards, 4, scale=scale)  # type: ignore[arg-type]
    assert torch.isfinite(adv).all()
    torch.testing.assert_close(adv.view(3, 4).mean(1), torch.zeros(3), atol=1e-6, rtol=0)
    assert (adv[4:] == 0).all()  # identical rewards: nothing to learn, no NaN
    if scale == "std":
        assert adv[:4].std().item() == pytest.approx(1.0, rel=1e-5)


def test_group_advantages_integer_rewards_and_bad_shapes() -> None:
    adv = group_advantages(torch.tensor([0, 1, 1, 1]), 2)
    assert adv.dtype == torch.float32
    with pytest.raises(ValueError, match="groups of 3"):
        group_advantages(torch.zeros(4), 3)
    with pytest.raises(ValueError, match="group_size >= 2"):
        group_advantages(torch.zeros(4), 1)
