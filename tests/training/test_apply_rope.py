"""apply_rope's eager complex-product form and its compiled 2x2 form equal the pairwise
rotation written out, values and gradients."""

from __future__ import annotations

import pytest
import torch

from training.model.rope import apply_rope, rope_angles, rotate_pairs


def reference(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate (x[2j], x[2j+1]) by angle j, written out (the pre-complex implementation)."""
    xf = x.float().unflatten(-1, (-1, 2))
    x0, x1 = xf[..., 0], xf[..., 1]
    c, s = cos.unsqueeze(2), sin.unsqueeze(2)
    return torch.stack((x0 * c - x1 * s, x0 * s + x1 * c), dim=-1).flatten(-2).type_as(x)


@pytest.mark.parametrize("rope", [apply_rope, rotate_pairs], ids=["eager", "compiled_form"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("angle_dtype", [torch.float32, torch.bfloat16])
def test_matches_the_pairwise_rotation_with_gradients(rope, dtype: torch.dtype, angle_dtype):
    torch.manual_seed(0)
    cos, sin = rope_angles(torch.randint(0, 40_000, (2, 24)), 32, 500_000.0)
    cos, sin = cos.to(angle_dtype), sin.to(angle_dtype)  # FSDP2 casts block inputs to bf16
    x = torch.randn(2, 24, 3, 32).to(dtype).requires_grad_()
    ref_x = x.detach().clone().requires_grad_()
    out, ref = rope(x, cos, sin), reference(ref_x, cos, sin)
    assert out.dtype == dtype
    grad = torch.randn_like(out)
    out.backward(grad)
    ref.backward(grad)
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(x.grad, ref_x.grad, atol=1e-6, rtol=1e-6)


def test_non_contiguous_input():
    cos, sin = rope_angles(torch.arange(16).expand(2, 16), 8, 10_000.0)
    x = torch.randn(2, 4, 16, 8).transpose(1, 2)  # (B, T, H, D) view, not contiguous
    torch.testing.assert_close(apply_rope(x, cos, sin), reference(x, cos, sin))
