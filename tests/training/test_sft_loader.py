"""SFT batches: conversations packed back to back with document masking, and labels that
hold IGNORE_INDEX everywhere but on assistant tokens (the bundled chat set, real model)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from chat_fixtures import write_chat_mixture

from mixtures.shards import StageShards
from mixtures.tokenizer import END, chat_token_ids
from training.data import PackedLoader
from training.model import ModelConfig, Transformer
from training.model.presets import get_preset
from training.objectives import IGNORE_INDEX, CausalLM


@pytest.fixture(scope="module")
def chat(tmp_path_factory):
    root, tok = write_chat_mixture(tmp_path_factory.mktemp("chat"))
    return StageShards.open(root / "sft"), tok


def conversations(shards: StageShards) -> list[tuple[np.ndarray, np.ndarray]]:
    """(tokens, loss mask) of every conversation, in stream order."""
    out = []
    for i in range(shards.num_shards):
        (values, offsets), mask = shards.tokens(i), shards.loss_mask(i)
        out += [(values[a:b], mask[a:b]) for a, b in zip(offsets[:-1], offsets[1:], strict=True)]
    return out


def reference_windows(convs, width: int, n: int, pad: int) -> tuple[list, int, int]:
    """n windows of whole conversations (tokens, mask, opens-a-conversation), the rest of a
    window padded when the next conversation does not fit it but fits a window; with the
    conversation tokens read and how many conversations were read whole."""
    windows, i, off, read = [], 0, 0, 0
    while len(windows) < n:
        toks, mask, opens = [], [], []
        while len(toks) < width:
            room, (t, m) = width - len(toks), convs[i]
            if off == 0 and room < min(len(t), width):
                toks, mask, opens = toks + [pad] * room, mask + [0] * room, opens + [True] * room
                break
            take = min(len(t) - off, room)
            toks += t[off : off + take].tolist()
            mask += m[off : off + take].tolist()
            opens += [off == 0] + [False] * (take - 1)
            off, read = off + take, read + take
            if off == len(t):
                i, off = i + 1, 0
        windows.append((toks, mask, opens))
    return windows, read, i


@pytest.mark.parametrize("seq_len", [127, 287])  # 287: the longest conversation fits
def test_labels_are_exactly_the_assistant_tokens_of_whole_conversations(chat, seq_len):
    shards, tok = chat
    convs = conversations(shards)
    pad = shards.manifest["chat_template"]["pad_id"]
    loader = PackedLoader(shards, seq_len=seq_len, batch_size=2)
    batches = [loader.next_batch() for _ in range(40)]
    expected, read, whole = reference_windows(convs, seq_len + 1, 80, pad)
    assert loader.tokens_consumed == read and loader.state_dict()["epoch"] == 0
    for k, (toks, mask, opens) in enumerate(expected):
        b, row = batches[k // 2], k % 2
        keep = (np.array(mask[1:]) == 1) & (np.cumsum(opens)[1:] > 0)
        assert b.labels[row].tolist() == np.where(keep, toks[1:], IGNORE_INDEX).tolist()
        assert b.inputs[row].tolist() == toks[:-1]
    split = sum(not opens[0] for _, _, opens in expected)  # rows opening mid-conversation
    assert (split > 0) == (seq_len == 127)  # only conversations longer than a window split
    trained = sum(int((b.labels != IGNORE_INDEX).sum()) for b in batches)
    if seq_len == 287:  # every conversation read trains on every assistant token
        assert trained == sum(int(m.sum()) for _, m in convs[:whole])
    assert trained > 2000


def test_a_whole_conversation_trains_on_its_assistant_replies_only(chat):
    shards, tok = chat
    end = chat_token_ids(tok)[END]
    b = PackedLoader(shards, seq_len=511, batch_size=1).next_batch()
    seg = b.segment_ids[0]
    first = (seg == 0).nonzero().flatten()  # the row opens with conversation 0 of shard 0
    values, offsets = shards.tokens(0)
    conv = values[offsets[0] : offsets[1]]
    assert b.inputs[0, : len(first)].tolist() == conv[: len(first)].tolist()
    labels = b.labels[0, : len(conv) - 1]
    replies = labels[labels != IGNORE_INDEX].tolist()
    doc_id = shards.shard(0).column("doc_id")[0].as_py()
    record = next(
        r for r in _bundled("sft.jsonl") if r["id"] == doc_id
    )  # the same conversation in the JSONL
    assistant = [m["content"] for m in record["messages"] if m["role"] == "assistant"]
    pieces = tok.decode(replies, skip_special_tokens=False).split("<|end|>")
    assert pieces[:-1] == assistant and pieces[-1] == "" and replies.count(end) == len(assistant)


def _bundled(name: str) -> list[dict]:
    import json

    from chat_fixtures import DATA

    return [json.loads(line) for line in (DATA / name).read_text().splitlines()]


@pytest.mark.parametrize("backend", ["doc_blocks", "sdpa"])
def test_packed_conversations_never_see_each_other_in_the_real_model(chat, backend):
    shards, tok = chat
    b = PackedLoader(shards, seq_len=127, batch_size=8).next_batch()
    roles = {chat_token_ids(tok)[t] for t in ("<|system|>", "<|user|>")}
    second = [(b.segment_ids[r] == 1).nonzero().flatten() for r in range(8)]
    row = next(r for r in range(8) if len(second[r]) and int(b.inputs[r, second[r][0]]) in roles)
    inputs, pos, seg = (t[row : row + 1] for t in (b.inputs, b.position_ids, b.segment_ids))
    cfg = ModelConfig(
        **{**get_preset("tiny").model_dump(), "attn_backend": backend},
        vocab_size=tok.get_vocab_size(),
    )
    torch.manual_seed(0)
    model = Transformer(cfg).eval()
    first, later = seg[0] == 0, seg[0] >= 1
    changed = inputs.clone()
    changed[0, first] = (inputs[0, first] * 7 + 11) % cfg.vocab_size  # another first conversation
    with torch.no_grad():
        base, other = model(inputs, pos, seg), model(changed, pos, seg)
        base_flat, other_flat = model(inputs, pos), model(changed, pos)  # no document mask
    assert torch.allclose(base[0, later], other[0, later], atol=1e-5, rtol=0)
    assert not torch.allclose(base[0, first], other[0, first], atol=1e-3)
    assert not torch.allclose(base_flat[0, later], other_flat[0, later], atol=1e-3)  # control


def test_the_causal_lm_loss_counts_only_assistant_labels(chat):
    shards, tok = chat
    b = PackedLoader(shards, seq_len=127, batch_size=2).next_batch()
    cfg = ModelConfig(**get_preset("tiny").model_dump(), vocab_size=tok.get_vocab_size())
    torch.manual_seed(0)
    loss_sum, n_valid = CausalLM().loss(Transformer(cfg), b)
    assert 0 < int(n_valid) == int((b.labels != IGNORE_INDEX).sum()) < b.labels.numel() // 2
    assert torch.isfinite(loss_sum)


def test_sft_state_resumes_the_same_masked_stream(chat):
    shards, _ = chat
    full = PackedLoader(shards, seq_len=63, batch_size=2, seed=3)
    expected = [full.next_batch().labels for _ in range(8)]
    head = PackedLoader(shards, seq_len=63, batch_size=2, seed=3)
    [head.next_batch() for _ in range(3)]
    tail = PackedLoader(shards, seq_len=63, batch_size=2, seed=3)
    tail.load_state_dict(head.state_dict())
    assert all(torch.equal(tail.next_batch().labels, e) for e in expected[3:])


def test_sft_ranks_and_accumulation_split_windows_like_one_rank(chat):
    shards, _ = chat
    one = PackedLoader(shards, seq_len=127, batch_size=4)
    ranks = [PackedLoader(shards, seq_len=127, batch_size=2, rank=r, world_size=2) for r in (0, 1)]
    accum = PackedLoader(shards, seq_len=127, batch_size=2, grad_accum=2)
    for _ in range(12):
        big = one.next_batch()
        parts = [ld.next_batches()[0] for ld in ranks]
        micro = accum.next_batches()
        for field in ("inputs", "labels", "segment_ids", "position_ids"):
            want = getattr(big, field)
            assert torch.equal(want, torch.cat([getattr(b, field) for b in parts]))
            assert torch.equal(want, torch.cat([getattr(b, field) for b in micro]))
    assert one.tokens_consumed == ranks[1].tokens_consumed == accum.tokens_consumed
