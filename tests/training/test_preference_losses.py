"""DPO, IPO and length-normalised DPO against a float64 NumPy reference written here from
the papers' formulas, with hand-derived gradients (no autograd on the reference side)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.objectives.preference_losses import preference_loss, sequence_logps

KINDS = ("sigmoid", "ipo", "length_normalized")


def _log_sigmoid(x: np.ndarray) -> np.ndarray:
    return -np.logaddexp(0.0, -x)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.exp(_log_sigmoid(x))


def reference(pc, pr, rc, rr, lc, lr, *, beta, kind, smoothing=0.0):
    """(losses, dL/dpc, dL/dpr, chosen rewards, rejected rewards), all float64 NumPy."""
    pc, pr, rc, rr = (np.asarray(a, dtype=np.float64) for a in (pc, pr, rc, rr))
    norm_c = np.asarray(lc, np.float64) if kind != "sigmoid" else np.ones_like(pc)
    norm_r = np.asarray(lr, np.float64) if kind != "sigmoid" else np.ones_like(pr)
    chosen, rejected = (pc - rc) / norm_c, (pr - rr) / norm_r
    h = chosen - rejected
    if kind == "ipo":
        losses = (h - 1.0 / (2.0 * beta)) ** 2
        dl_dh = 2.0 * (h - 1.0 / (2.0 * beta))
    else:  # -(1-e) log s(bh) - e log s(-bh); d/dh = -(1-e) b s(-bh) + e b s(bh)
        e, bh = smoothing, beta * h
        losses = -(1 - e) * _log_sigmoid(bh) - e * _log_sigmoid(-bh)
        dl_dh = -(1 - e) * beta * _sigmoid(-bh) + e * beta * _sigmoid(bh)
    return losses, dl_dh / norm_c, -dl_dh / norm_r, beta * chosen, beta * rejected


def _random_pairs(n: int, seed: int):
    rng = np.random.default_rng(seed)
    lc, lr = rng.integers(1, 400, n), rng.integers(1, 400, n)
    pc, pr = -lc * rng.uniform(0.2, 2.0, n), -lr * rng.uniform(0.2, 2.0, n)
    rc, rr = pc + rng.normal(0, 3, n), pr + rng.normal(0, 3, n)
    return pc, pr, rc, rr, lc, lr


def _ours(pc, pr, rc, rr, lc, lr, dtype, **kw):
    policy_c = torch.tensor(pc, dtype=dtype, requires_grad=True)
    policy_r = torch.tensor(pr, dtype=dtype, requires_grad=True)
    ref_c, ref_r = torch.tensor(rc, dtype=dtype), torch.tensor(rr, dtype=dtype)
    losses, ch, rej = preference_loss(
        policy_c, policy_r, ref_c, ref_r,
        chosen_lengths=torch.tensor(lc), rejected_lengths=torch.tensor(lr), **kw,
    )
    losses.sum().backward()
    return losses.detach(), policy_c.grad, policy_r.grad, ch, rej


@pytest.mark.parametrize(
    ("kind", "smoothing"),
    [("sigmoid", 0.0), ("sigmoid", 0.1), ("ipo", 0.0),
     ("length_normalized", 0.0), ("length_normalized", 0.1)],
)
@pytest.mark.parametrize("beta", [0.05, 0.1, 0.5])
def test_matches_float64_reference(kind: str, beta: float, smoothing: float) -> None:
    data = _random_pairs(64, seed=int(beta * 100) + len(kind))
    want = reference(*data, beta=beta, kind=kind, smoothing=smoothing)
    got = _ours(*data, torch.float64, beta=beta, kind=kind, label_smoothing=smoothing)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g.numpy(), w, rtol=1e-10, atol=1e-12)

    # float32: inputs rounded to float32, then compared with the float64 reference of those
    data32 = [np.asarray(a, np.float32).astype(np.float64) if i < 4 else a
              for i, a in enumerate(data)]
    want = reference(*data32, beta=beta, kind=kind, smoothing=smoothing)
    got = _ours(*data32, torch.float32, beta=beta, kind=kind, label_smoothing=smoothing)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g.double().numpy(), w, rtol=1e-5, atol=1e-6)


def test_rewards_are_detached_implicit_rewards() -> None:
    pc = torch.tensor([-10.0, -20.0], requires_grad=True)
    _, ch, rej = preference_loss(pc, torch.tensor([-12.0, -15.0]), torch.tensor([-11.0, -19.0]),
                                 torch.tensor([-12.0, -16.0]), beta=0.5)
    assert not ch.requires_grad and not rej.requires_grad
    torch.testing.assert_close(ch, torch.tensor([0.5, -0.5]))
    torch.testing.assert_close(rej, torch.tensor([0.0, 0.5]))


@pytest.mark.parametrize("kind", KINDS)
def test_loss_falls_as_the_chosen_margin_grows(kind: str) -> None:
    """Raising the chosen response's log-prob lowers the loss (IPO: until its target)."""
    beta = 0.1
    pc = torch.linspace(-30.0, -20.0, 50, dtype=torch.float64)  # h from -5 to 5 (-1/30 to 1/30)
    rest = torch.full_like(pc, -25.0)  # IPO's target 1/(2 beta) = 5 is not passed
    lengths = torch.full((len(pc),), 150)
    losses, _, _ = preference_loss(pc, rest, rest, rest, beta=beta, kind=kind,
                                   chosen_lengths=lengths, rejected_lengths=lengths)
    assert (losses.diff() < 0).all()


def test_beta_effect() -> None:
    """sigmoid: a larger beta lowers the loss of a pair already ranked right, raises it for
    one ranked wrong, and scales the gradient at h = 0 (beta/2). IPO: target 1/(2 beta)."""
    def sig(h: float, beta: float) -> tuple[float, float]:
        pc = torch.tensor([h], dtype=torch.float64, requires_grad=True)
        zero = torch.zeros(1, dtype=torch.float64)
        loss, _, _ = preference_loss(pc, zero, zero, zero, beta=beta)
        loss.sum().backward()
        return loss.item(), pc.grad.item()

    assert sig(2.0, 0.5)[0] < sig(2.0, 0.1)[0]
    assert sig(-2.0, 0.5)[0] > sig(-2.0, 0.1)[0]
    for beta in (0.1, 0.5):
        assert sig(0.0, beta)[1] == pytest.approx(-beta / 2, rel=1e-12)
    for beta in (0.1, 0.25):
        target = torch.tensor([1.0 / (2 * beta)], dtype=torch.float64)
        zero, one = torch.zeros(1, dtype=torch.float64), torch.ones(1)
        loss, _, _ = preference_loss(target, zero, zero, zero, beta=beta, kind="ipo",
                                     chosen_lengths=one, rejected_lengths=one)
        assert loss.item() == 0.0


def test_label_smoothing_bounds_the_push() -> None:
    """cDPO: with e > 0 the loss has a minimum at finite h, so a huge margin costs again."""
    h = torch.tensor([0.0, 10.0, 100.0, 1000.0], dtype=torch.float64)
    zero = torch.zeros(4, dtype=torch.float64)
    plain, _, _ = preference_loss(h, zero, zero, zero, beta=0.1)
    smooth, _, _ = preference_loss(h, zero, zero, zero, beta=0.1, label_smoothing=0.1)
    assert (plain.diff() < 0).all()
    assert smooth[3] > smooth[2]


def test_length_normalisation_ignores_repetition() -> None:
    """A response twice as long with twice the log-ratio has the same LN-DPO loss."""
    args = [torch.tensor([v]) for v in (-40.0, -60.0, -44.0, -58.0)]
    one, _, _ = preference_loss(*args, beta=0.1, kind="length_normalized",
                                chosen_lengths=torch.tensor([20]),
                                rejected_lengths=torch.tensor([30]))
    two, _, _ = preference_loss(*(2 * a for a in args), beta=0.1, kind="length_normalized",
                                chosen_lengths=torch.tensor([40]),
                                rejected_lengths=torch.tensor([60]))
    torch.testing.assert_close(one, two)


def test_rejects_bad_arguments() -> None:
    x = torch.zeros(2)
    with pytest.raises(ValueError, match="unknown"):
        preference_loss(x, x, x, x, beta=0.1, kind="hinge")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="lengths"):
        preference_loss(x, x, x, x, beta=0.1, kind="ipo")
    with pytest.raises(ValueError, match="label_smoothing"):
        preference_loss(x, x, x, x, beta=0.1, kind="ipo", label_smoothing=0.1,
                        chosen_lengths=x + 1, rejected_lengths=x + 1)
    with pytest.raises(ValueError, match="beta"):
        preference_loss(x, x, x, x, beta=0.0)


def test_sequence_logps_matches_numpy() -> None:
    rng = np.random.default_rng(0)
    b, t, v = 3, 7, 11
    logits = rng.normal(0, 2, (b, t, v))
    labels = rng.integers(0, v, (b, t))
    labels[0, :3] = -100  # a prompt
    labels[2, :] = -100  # nothing to score
    log_softmax = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    valid = labels != -100
    token = np.take_along_axis(log_softmax, np.where(valid, labels, 0)[..., None], -1)[..., 0]
    sums, counts = sequence_logps(torch.tensor(logits), torch.tensor(labels))
    np.testing.assert_allclose(sums.numpy(), (token * valid).sum(-1), rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(counts.numpy(), valid.sum(-1))
    assert sums.dtype == torch.float64

    sums32, _ = sequence_logps(torch.tensor(logits, dtype=torch.bfloat16), torch.tensor(labels))
    assert sums32.dtype == torch.float32  # low-precision logits are scored in float32
