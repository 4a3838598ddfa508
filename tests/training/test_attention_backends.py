"""Document-masked attention: every linear-memory backend matches the dense-mask reference.

The dense `sdpa` backend builds the (T x T) mask explicitly, so it is the ground truth for
packed rows; the others must agree on outputs and gradients, never leak across documents,
and never hold a T x T tensor.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from training.data.packing import pack_windows
from training.model import ModelConfig, Transformer
from training.model import attention as attention_mod
from training.model.attention import attend, build_layout, resolve_backend
from training.model.attention_backends import positions_from_segments

CPU_BACKENDS = ["doc_blocks"]


def segments(*rows: list[int]) -> torch.Tensor:
    """Document lengths per row -> (B, T) segment ids 0, 1, ... per row."""
    return torch.stack(
        [torch.repeat_interleave(torch.arange(len(r)), torch.tensor(r)) for r in rows]
    )


# Length-1 documents, a long one, equal lengths across rows, and a row that is one document.
PACKED = segments([1, 7, 1, 12, 3, 1, 7, 8], [40], [7, 7, 3, 20, 3])
SINGLE_DOC_ROWS = segments([40], [40], [40])


def qkv(seg: torch.Tensor, n_heads: int = 4, n_kv: int = 2, head_dim: int = 16) -> list:
    gen = torch.Generator().manual_seed(0)
    bsz, seqlen = seg.shape
    shapes = [(bsz, seqlen, n_heads, head_dim)] + [(bsz, seqlen, n_kv, head_dim)] * 2
    return [torch.randn(s, generator=gen, dtype=torch.float64).float() for s in shapes]


def run(backend: str, seg: torch.Tensor | None, tensors: list) -> tuple[torch.Tensor, list]:
    leaves = [t.clone().requires_grad_() for t in tensors]
    out = attend(*leaves, build_layout(seg, backend))
    # A loss that mixes every output, so each gradient entry is checked.
    weights = torch.linspace(-1, 1, out.numel(), device=out.device).view_as(out)
    (out * weights).sum().backward()
    return out.detach(), [t.grad for t in leaves]


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("seg", [PACKED, SINGLE_DOC_ROWS, None], ids=["packed", "rows", "none"])
@pytest.mark.parametrize("n_kv", [4, 2, 1], ids=["mha", "gqa", "mqa"])
def test_backend_matches_dense_reference(backend: str, seg: torch.Tensor | None, n_kv: int):
    tensors = qkv(PACKED, n_kv=n_kv)
    ref_out, ref_grads = run("sdpa", seg, tensors)
    out, grads = run(backend, seg, tensors)
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=1e-5)
    for name, g, ref in zip("qkv", grads, ref_grads, strict=True):
        torch.testing.assert_close(g, ref, atol=1e-5, rtol=1e-5, msg=f"d{name} differs")


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_bf16_matches_reference_within_bf16_precision(backend: str):
    tensors = [t.bfloat16() for t in qkv(PACKED)]
    ref_out, _ = run("sdpa", PACKED, tensors)
    out, _ = run(backend, PACKED, tensors)
    torch.testing.assert_close(out.float(), ref_out.float(), atol=2e-2, rtol=2e-2)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_no_state_quadratic_in_length(backend: str):
    seqlen = PACKED.shape[1]
    layout = build_layout(PACKED, backend)
    for value in vars(layout).values():
        if isinstance(value, torch.Tensor):
            assert value.numel() <= PACKED.numel(), f"{value.shape} grows like T x T"
    assert build_layout(SINGLE_DOC_ROWS, backend).doc_perm is None  # plain causal fast path
    assert seqlen**2 > PACKED.numel()


def small_model(backend: str) -> Transformer:
    torch.manual_seed(0)
    cfg = ModelConfig(
        dim=32,
        n_layers=2,
        n_heads=4,
        n_kv_heads=2,
        ffn_hidden=64,
        max_seq_len=64,
        vocab_size=50,
        attn_backend=backend,
    )
    return Transformer(cfg)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_model_forward_and_backward_match_reference(backend: str):
    tokens = torch.randint(0, 50, PACKED.shape, generator=torch.Generator().manual_seed(1))
    pos = positions_from_segments(PACKED)
    results = []
    for name in ("sdpa", backend):
        model = small_model(name)
        logits = model(tokens, pos, PACKED)
        logits.logsumexp(-1).sum().backward()
        grads = [p.grad for p in model.parameters()]
        results.append((logits.detach(), grads))
    (ref, ref_grads), (out, grads) = results
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    for g, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("backend", [*CPU_BACKENDS, "sdpa"])
def test_documents_do_not_leak_and_positions_restart(backend: str):
    """Changing document A leaves document B's logits untouched; B packed equals B alone."""
    model = small_model(backend).eval()
    seg = segments([9, 1, 14, 8])
    tokens = torch.randint(0, 50, seg.shape, generator=torch.Generator().manual_seed(2))
    other = tokens.clone()
    other[seg == 0] = (other[seg == 0] + 5) % 50  # rewrite document A (the first)
    with torch.no_grad():
        packed, packed_other = model(tokens, segment_ids=seg), model(other, segment_ids=seg)
        alone = model(tokens[seg == 2].unsqueeze(0))
    assert not torch.allclose(packed[seg == 0], packed_other[seg == 0], atol=1e-3)
    torch.testing.assert_close(packed[seg != 0], packed_other[seg != 0], atol=1e-6, rtol=0)
    torch.testing.assert_close(packed[seg == 2], alone[0], atol=1e-5, rtol=1e-5)


def test_positions_from_segments_match_the_loader():
    gen = np.random.default_rng(3)
    seq_len, rows = 24, 3
    tokens = gen.integers(0, 50, rows * (seq_len + 1))
    doc_start = gen.random(tokens.size) < 0.2
    batch = pack_windows(tokens, doc_start, seq_len)
    assert torch.equal(positions_from_segments(batch.segment_ids), batch.position_ids)


def test_auto_picks_linear_backend_and_never_flash_in_fp32(monkeypatch: pytest.MonkeyPatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    for dtype in (torch.float32, torch.bfloat16):
        assert resolve_backend("auto", cpu, dtype) == "doc_blocks"
    real_find_spec = importlib.util.find_spec

    def fake_find_spec(name: str, *args: object) -> object:
        return object() if name == "flash_attn" else real_find_spec(name, *args)

    monkeypatch.setattr(attention_mod.importlib.util, "find_spec", fake_find_spec)
    assert resolve_backend("auto", cuda, torch.float32) == "doc_blocks"
    assert resolve_backend("auto", cuda, torch.bfloat16) == "flash_varlen"
    assert resolve_backend("auto", cuda, torch.float16) == "flash_varlen"
    with pytest.raises(ValueError, match="bfloat16/float16 only"):
        resolve_backend("flash_varlen", cuda, torch.float32)


def test_flash_varlen_without_cuda_is_a_clear_error():
    with pytest.raises(ValueError, match="needs CUDA and the flash_attn package"):
        resolve_backend("flash_varlen", torch.device("cpu"), torch.bfloat16)
    with pytest.raises(ValueError, match="needs CUDA"):
        small_model("flash_varlen")(torch.zeros(1, 8, dtype=torch.long))


def test_varlen_layout_matches_documents():
    layout = build_layout(PACKED, "flash_varlen")
    lengths = (layout.cu_seqlens[1:] - layout.cu_seqlens[:-1]).tolist()
    assert lengths == [1, 7, 1, 12, 3, 1, 7, 8, 40, 7, 7, 3, 20, 3]
    assert layout.max_seqlen == 40 and layout.cu_seqlens.dtype == torch.int32


@pytest.mark.slow
@pytest.mark.parametrize(("n_kv", "head_dim"), [(2, 16), (4, 8)], ids=["gqa-16", "mha-8"])
def test_flex_forward_matches_reference_and_has_no_cpu_backward(n_kv: int, head_dim: int):
    """Compiled flex runs forward on CPU (evaluation); torch 2.13 has no CPU flex backward.

    Narrow heads and a T (40) that is not a multiple of 16: torch's compiled CPU kernel got
    these wrong on an AVX2 machine until heads were padded (FLEX_MIN_HEAD_DIM).
    """
    tensors = qkv(PACKED, n_kv=n_kv, head_dim=head_dim)
    ref_out, _ = run("sdpa", PACKED, tensors)
    layout = build_layout(PACKED, "flex")
    with torch.no_grad():
        out = attend(*tensors, layout)
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=1e-5)
    with pytest.raises(NotImplementedError, match="backward on CPU"):
        attend(*[t.clone().requires_grad_() for t in tensors], layout)


HAS_FLASH = torch.cuda.is_available() and importlib.util.find_spec("flash_attn") is not None


@pytest.mark.skipif(not HAS_FLASH, reason="needs CUDA and flash_attn")
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_flash_varlen_matches_doc_blocks_on_cuda(dtype: torch.dtype):
    seg = PACKED.cuda()
    tensors = [t.cuda().to(dtype) for t in qkv(PACKED, head_dim=64)]
    ref_out, ref_grads = run("doc_blocks", seg, tensors)
    out, grads = run(resolve_backend("auto", seg.device, dtype), seg, tensors)
    torch.testing.assert_close(out.float(), ref_out.float(), atol=2e-2, rtol=2e-2)
    for g, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g.float(), r.float(), atol=5e-2, rtol=5e-2)
