"""Process group, device mesh and FSDP2 wrapping.

gloo on CPU, nccl on CUDA; the mesh is always built explicitly (FSDP2 on CPU needs it)
and its dimensions are named, `("dp", "cp")`: data parallel (FSDP2 shards over `dp`) and
context parallel (ranks that split one sequence; size 1 until it is implemented, see
docs/long_context.md). Context parallelism is then a new mesh dimension that FSDP2
shards over together with `dp` (torchtitan flattens them to `dp_cp`), not a rewrite of
how the mesh is built or passed around. Each transformer
block is its own FSDP unit (parameters all-gathered just before the block runs and
freed after), then the root wraps the embeddings, final norm and head.

Gradients are summed over ranks, not averaged: the objective's loss is already divided
by the global count of valid targets (`training/train_step.py`), so a sum gives the
global mean whatever the world size.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh
from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistEnv:
    rank: int
    local_rank: int
    world_size: int
    device: torch.device
    mesh: DeviceMesh

    @property
    def is_main(self) -> bool:
        return self.rank == 0


MESH_DIMS = ("dp", "cp")


def init_distributed(device_type: str | None = None, context_parallel: int = 1) -> DistEnv:
    """Join the torchrun process group (env:// rendezvous) and build the named mesh.

    Without torchrun's env (RANK/WORLD_SIZE) a world of one is started on a free local
    port, so the same code path runs in a notebook.
    """
    if device_type is None:
        device_type = "cuda" if torch.cuda.is_available() else "cpu"
    if "RANK" not in os.environ:
        os.environ.update(
            {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1"}
        )
        os.environ.setdefault("MASTER_PORT", str(_free_port()))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device_type == "cuda":
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    world = dist.get_world_size()
    if world % context_parallel:
        raise ValueError(
            f"world size {world} is not divisible by context_parallel={context_parallel}"
        )
    shape = (world // context_parallel, context_parallel)
    mesh = init_device_mesh(device_type, shape, mesh_dim_names=MESH_DIMS)
    env = DistEnv(dist.get_rank(), local_rank, world, device, mesh)
    log.debug("rank %d/%d on %s", env.rank, world, device)
    return env


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def shard_model(model: nn.Module, mesh: DeviceMesh, param_dtype: torch.dtype) -> nn.Module:
    """fully_shard every block, then the root. Gradients are summed in fp32."""
    mp = MixedPrecisionPolicy(
        param_dtype=None if param_dtype == torch.float32 else param_dtype,
        reduce_dtype=torch.float32,
    )
    blocks = model.blocks  # type: ignore[attr-defined]
    for i, block in enumerate(blocks):
        # The last block's params are needed again at once by the root's backward: keep them.
        fully_shard(block, mesh=mesh, mp_policy=mp, reshard_after_forward=i < len(blocks) - 1)
    fully_shard(model, mesh=mesh, mp_policy=mp)
    for module in model.modules():
        if isinstance(module, FSDPModule):
            module.set_gradient_divide_factor(1.0)
            module.set_force_sum_reduction_for_comms(True)  # plain SUM: gloo has no PREMUL_SUM
    return model


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
