"""Post-training stages for loader tests: the bundled chat sets (data/post_training/)
mixed with the real `sharpen mix sft` / `mix preferences` code and a byte-level BPE
trained on their own text."""

from __future__ import annotations

import json
from pathlib import Path

from mixtures.chat_stages import mix_preferences, mix_sft
from mixtures.tokenizer import load_tokenizer, save_tokenizer, train_bpe

DATA = Path(__file__).parents[2] / "data" / "post_training"


def chat_texts() -> list[str]:
    texts = []
    for name in ("sft.jsonl", "preferences.jsonl"):
        for line in (DATA / name).read_text(encoding="utf-8").splitlines():
            r = json.loads(line)
            texts += [m["content"] for m in r.get("messages", [])]
            texts += [r[k] for k in ("prompt", "chosen", "rejected") if isinstance(r.get(k), str)]
    return texts


def write_chat_mixture(root: Path, rows_per_shard: int = 64) -> tuple[Path, object]:
    """root/sft and root/preferences beside root/tokenizer/tokenizer.json; returns (root, tok)."""
    tok_path = save_tokenizer(train_bpe(chat_texts(), 512, 2), root / "src" / "tokenizer.json")
    mix_sft([DATA / "sft.jsonl"], tok_path, root, rows_per_shard=rows_per_shard)
    mix_preferences([DATA / "preferences.jsonl"], tok_path, root, rows_per_shard=rows_per_shard)
    return root, load_tokenizer(tok_path)
