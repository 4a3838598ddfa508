"""Shard loader: pack documents into windows, shard by rank, resume exactly."""

from training.data.loader import LoaderStateError, PackedLoader
from training.data.packing import PackedBatch, pack_windows

__all__ = ["LoaderStateError", "PackedBatch", "PackedLoader", "pack_windows"]
