"""Documents' tokens as Arrow binary values (uint32 little-endian), one per document.

Spark has no unsigned list type, and a binary value moves through a shuffle as one blob;
both engines keep a document's tokens this way until a shard is written, and cut and copy
them with the same Arrow kernels, so they cannot disagree on a truncated document.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def to_binary(values: np.ndarray, offsets: np.ndarray, large: bool = False) -> pa.Array:
    """(uint32 values, int64 token offsets) -> binary array, built from the buffers."""
    kind, width = (pa.large_binary(), np.int64) if large else (pa.binary(), np.int32)
    byte_offsets = (np.asarray(offsets, dtype=np.int64) * 4).astype(width)
    data = np.ascontiguousarray(values, dtype="<u4").tobytes()
    return pa.Array.from_buffers(kind, len(offsets) - 1,
                                 [None, pa.py_buffer(byte_offsets), pa.py_buffer(data)])


def to_token_lists(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    """binary token values -> list<uint32> (the shard column)."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    width = np.int64 if pa.types.is_large_binary(arr.type) else np.int32
    byte_offsets = np.frombuffer(arr.buffers()[1], dtype=width)[
        arr.offset:arr.offset + len(arr) + 1].astype(np.int64)
    data = arr.buffers()[2]
    start, stop = int(byte_offsets[0]), int(byte_offsets[-1])
    values = (np.frombuffer(data, dtype="<u4", count=(stop - start) // 4, offset=start)
              if data is not None and stop > start else np.zeros(0, np.uint32))
    return pa.ListArray.from_arrays(pa.array(((byte_offsets - start) // 4).astype(np.int32)),
                                    pa.array(values, pa.uint32()))


def truncate(tokens: pa.Array, lengths: np.ndarray, max_tokens: int | None,
             eos: int) -> tuple[pa.Array, np.ndarray]:
    """Cut documents longer than max_tokens to their first max_tokens - 1 tokens plus EOS;
    returns the tokens and the new lengths."""
    lengths = np.asarray(lengths, dtype=np.int64)
    if max_tokens is None or lengths.max(initial=0) <= max_tokens:
        return tokens, lengths
    eos_bytes = pa.scalar(np.array([eos], dtype="<u4").tobytes(), tokens.type)
    cut = pc.binary_join_element_wise(pc.binary_slice(tokens, 0, 4 * (max_tokens - 1)),
                                      eos_bytes, pa.scalar(b"", tokens.type))
    return (pc.if_else(pa.array(lengths > max_tokens), cut, tokens),
            np.minimum(lengths, max_tokens))
