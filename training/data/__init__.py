"""Shard loader: pack documents into windows, shard by rank, resume exactly; and preference
pairs for DPO."""

from training.data.loader import LoaderStateError, PackedLoader
from training.data.packing import PackedBatch, pack_windows
from training.data.preferences import (
    PreferenceBatch,
    PreferenceLoader,
    collate_pairs,
    iter_pairs,
)

__all__ = [
    "LoaderStateError",
    "PackedBatch",
    "PackedLoader",
    "PreferenceBatch",
    "PreferenceLoader",
    "collate_pairs",
    "iter_pairs",
    "pack_windows",
]
