import pytest
import torch

from training.model import ModelConfig, Transformer
from training.model.attention import build_layout
from training.model.rope import apply_rope, rope_angles

CFG = ModelConfig(
    dim=32,
    n_layers=2,
    n_heads=4,
    n_kv_heads=2,
    ffn_hidden=64,
    max_seq_len=32,
    vocab_size=50,
    attn_backend="sdpa",
)


def model() -> Transformer:
    torch.manual_seed(0)
    return Transformer(CFG).eval()


def test_shapes_and_grouped_query_heads():
    m = model()
    assert m(torch.randint(0, 50, (3, 10))).shape == (3, 10, 50)
    attn = m.blocks[0].attn
    assert attn.wq.weight.shape == (32, 32)
    assert attn.wk.weight.shape == attn.wv.weight.shape == (16, 32)  # 2 kv heads x head_dim 8


def test_future_tokens_do_not_change_past_logits():
    m = model()
    a = torch.randint(0, 50, (1, 12))
    b = a.clone()
    b[0, 8:] = (b[0, 8:] + 7) % 50
    with torch.no_grad():
        la, lb = m(a), m(b)
    assert torch.allclose(la[:, :8], lb[:, :8], atol=1e-6)
    assert not torch.allclose(la[:, 8:], lb[:, 8:])


def test_document_mask_isolates_packed_documents():
    """Doc 2 packed after doc 1 gives the same logits as doc 2 alone, whatever doc 1 holds."""
    m = model()
    doc1, doc2 = torch.randint(0, 50, (5,)), torch.randint(0, 50, (7,))
    other1 = (doc1 + 3) % 50
    seg = torch.tensor([[0] * 5 + [1] * 7])
    pos = torch.cat([torch.arange(5), torch.arange(7)]).unsqueeze(0)
    with torch.no_grad():
        packed = m(torch.cat([doc1, doc2]).unsqueeze(0), pos, seg)
        packed_other = m(torch.cat([other1, doc2]).unsqueeze(0), pos, seg)
        alone = m(doc2.unsqueeze(0))
        unmasked = m(torch.cat([doc1, doc2]).unsqueeze(0), pos)  # no segment ids: plain causal
    assert torch.allclose(packed[:, 5:], alone, atol=1e-5)
    assert torch.allclose(packed[:, 5:], packed_other[:, 5:], atol=1e-6)
    assert not torch.allclose(unmasked[:, 5:], alone, atol=1e-3)


def test_block_diagonal_mask_layout():
    mask = build_layout(torch.tensor([[0, 0, 1, 1, 1]]), "sdpa").sdpa_mask[0, 0]
    expected = torch.tensor(
        [[1, 0, 0, 0, 0], [1, 1, 0, 0, 0], [0, 0, 1, 0, 0], [0, 0, 1, 1, 0], [0, 0, 1, 1, 1]],
        dtype=torch.bool,
    )
    assert torch.equal(mask, expected)


def test_rope_is_a_rotation_that_depends_on_relative_position():
    torch.manual_seed(1)
    q, k = torch.randn(1, 1, 1, 16), torch.randn(1, 1, 1, 16)

    def rotated(x: torch.Tensor, pos: int) -> torch.Tensor:
        cos, sin = rope_angles(torch.tensor([[pos]]), 16, 10_000.0)
        return apply_rope(x, cos, sin)

    assert torch.allclose(rotated(q, 0), q)
    assert torch.allclose(rotated(q, 9).norm(), q.norm(), atol=1e-5)
    dot = [(rotated(q, m) * rotated(k, m - 3)).sum() for m in (3, 10, 25)]
    assert torch.allclose(torch.stack(dot), dot[0].expand(3), atol=1e-4)
    cos_a, _ = rope_angles(torch.tensor([[5]]), 16, 10_000.0)
    cos_b, _ = rope_angles(torch.tensor([[5]]), 16, 500_000.0)
    assert not torch.allclose(cos_a, cos_b)  # a larger base slows the low frequencies


def test_invalid_architecture_is_rejected():
    with pytest.raises(ValueError, match="n_kv_heads"):
        ModelConfig(
            dim=32, n_layers=1, n_heads=4, n_kv_heads=3, ffn_hidden=8, max_seq_len=8, vocab_size=10
        )
    with pytest.raises(ValueError, match="max_seq_len"):
        model()(torch.zeros(1, 33, dtype=torch.long))


def test_varlen_layout_cuts_documents_and_rows():
    """cu_seqlens for flash-attn varlen: a boundary at every document and every row start."""
    layout = build_layout(torch.tensor([[0, 0, 1, 1], [0, 1, 1, 1]]), "flash_varlen")
    assert layout.cu_seqlens.tolist() == [0, 2, 4, 5, 8]
    assert layout.max_seqlen == 3
