"""Distributed setup: process group, explicit device mesh, FSDP2 per block."""

from training.parallel.activation_checkpointing import apply_activation_checkpointing
from training.parallel.compile import compile_blocks
from training.parallel.fsdp2 import DistEnv, init_distributed, shard_model, shutdown

__all__ = [
    "DistEnv",
    "apply_activation_checkpointing",
    "compile_blocks",
    "init_distributed",
    "shard_model",
    "shutdown",
]
