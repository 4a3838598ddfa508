"""Per-GPU memory of a training step, estimated from the model shape: the numbers behind
docs/long_context.md's plan for 128k-token windows.

Assumptions (each one a term below):
- FSDP2 shards fp32 master weights, fp32 gradients and AdamW's two moments over every
  rank of the `dp` x `cp` mesh: 16 bytes per parameter, divided by the ranks.
- bf16 compute: FSDP2 all-gathers one block's weights at a time, plus the next one
  (prefetch), plus the output head while the logits are computed.
- Context parallelism splits each window's tokens evenly over `cp` ranks.
- Activation checkpointing per block keeps each block's bf16 input; one block's
  intermediates (q, k, v, attention output, SwiGLU's three hidden tensors) are live
  during its recompute. Flash attention's own memory is O(tokens) and left out.
- The logits and their gradient are fp32 (the model returns fp32 logits) unless the
  cross entropy is chunked (`chunked_loss`: only one chunk is live; not implemented yet).
Allocator fragmentation, CUDA context (~0.5-1 GB) and communication buffers come on top.
"""

from __future__ import annotations

from dataclasses import dataclass

from training.model.config import ModelSpec
from training.model.flops import matmul_params

GIB = 1024**3


@dataclass(frozen=True)
class MemoryEstimate:
    states_gib: float  # sharded fp32 weights, gradients and AdamW moments
    gathered_weights_gib: float  # bf16 blocks being used and prefetched, plus the head
    checkpointed_inputs_gib: float  # one bf16 (tokens, dim) tensor per block
    block_recompute_gib: float  # one block's intermediates during its backward
    logits_gib: float  # fp32 logits and their gradient

    @property
    def total_gib(self) -> float:
        return (
            self.states_gib
            + self.gathered_weights_gib
            + self.checkpointed_inputs_gib
            + self.block_recompute_gib
            + self.logits_gib
        )


def estimate(
    spec: ModelSpec,
    vocab_size: int,
    *,
    seq_len: int,
    dp: int,
    cp: int,
    chunked_loss: bool = False,
    loss_chunk_tokens: int = 4096,
) -> MemoryEstimate:
    """One window per data-parallel rank (batch 1), its tokens split over `cp` ranks."""
    params = matmul_params(spec, vocab_size) + spec.dim * vocab_size  # + input embedding
    per_block = (matmul_params(spec, vocab_size) - spec.dim * vocab_size) / spec.n_layers
    tokens = seq_len / cp
    kv = spec.n_kv_heads * (spec.dim // spec.n_heads)
    block_live = tokens * (3 * spec.dim + 2 * kv + 3 * spec.ffn_hidden) * 2
    logit_tokens = min(tokens, loss_chunk_tokens) if chunked_loss else tokens
    return MemoryEstimate(
        states_gib=16 * params / (dp * cp) / GIB,
        gathered_weights_gib=(2 * per_block + spec.dim * vocab_size) * 2 / GIB,
        checkpointed_inputs_gib=spec.n_layers * tokens * spec.dim * 2 / GIB,
        block_recompute_gib=block_live / GIB,
        logits_gib=2 * logit_tokens * vocab_size * 4 / GIB,
    )


def main() -> None:
    """Print the table docs/long_context.md shows: the 4B shape at 128k on 8 GPUs."""
    from training.model.presets import PRESETS

    preset = PRESETS["xgen-small-4b"]
    print("preset xgen-small-4b, seq_len 131072, 8 GPUs; GiB per GPU")
    print(
        f"{'dp x cp':>8} {'chunked CE':>10} {'states':>7} {'weights':>8} {'AC in':>7} "
        f"{'block':>7} {'logits':>7} {'total':>7}"
    )
    for dp, cp in ((8, 1), (2, 4), (1, 8)):
        for chunked in (False, True):
            e = estimate(
                preset.spec,
                preset.reference_vocab,
                seq_len=131072,
                dp=dp,
                cp=cp,
                chunked_loss=chunked,
            )
            print(
                f"{dp:>3} x {cp:<2} {str(chunked):>10} {e.states_gib:7.1f} "
                f"{e.gathered_weights_gib:8.1f} {e.checkpointed_inputs_gib:7.1f} "
                f"{e.block_recompute_gib:7.1f} {e.logits_gib:7.1f} {e.total_gib:7.1f}"
            )


if __name__ == "__main__":
    main()
