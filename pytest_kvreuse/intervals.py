"""Reuse intervals: tokens streamed between consecutive cross-request occurrences of a key."""

from __future__ import annotations

import numpy as np

from .blocks import BlockStream


def reuse_intervals(stream: BlockStream) -> tuple[np.ndarray, int]:
    """Sorted reuse intervals (tokens) of ``stream`` and its number of unique keys.

    One sort by (key, position) puts every key's occurrences side by side in stream order,
    so consecutive occurrences are neighbours: no per-block Python loop.
    """
    keys = stream.keys
    n = int(keys.size)
    if n == 0:
        return np.zeros(0, dtype=np.int64), 0
    shift = n.bit_length()
    # Big temporaries cost page faults on every fresh allocation: work in place where the
    # numbers allow, it halves the time of this pass.
    if int(keys.max()).bit_length() + shift <= 62:
        # Pack (key, position) into one int64 and sort values, not indices: several times
        # faster than a stable argsort, and equal keys stay in stream order.
        packed = keys.astype(np.int64)
        packed <<= shift
        packed += np.arange(n, dtype=np.int64)
        packed.sort()
        sorted_keys = packed >> shift
        same = np.flatnonzero(sorted_keys[1:] == sorted_keys[:-1])
        del sorted_keys
        mask = (1 << shift) - 1
        prev = packed[same]
        prev &= mask
        same += 1
        nxt = packed[same]
        nxt &= mask
        del packed
    else:
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        same = np.flatnonzero(sorted_keys[1:] == sorted_keys[:-1])
        prev = order[same]
        nxt = order[same + 1]
    unique = n - int(same.size)
    del same
    request = stream.request
    cross = request[prev] != request[nxt]
    nxt -= prev
    del prev
    intervals = nxt[cross]
    intervals -= 1
    intervals *= stream.block_size
    intervals.sort()
    return intervals, unique


def tokens_beyond(intervals: np.ndarray, gpu_cache_tokens: float, block_size: int) -> int:
    """Tokens whose reuse interval exceeds ``gpu_cache_tokens`` (``intervals`` sorted)."""
    return int(intervals.size - np.searchsorted(intervals, gpu_cache_tokens, side="right")) \
        * block_size


def interval_ccdf(intervals: np.ndarray, block_size: int,
                  total_tokens: int) -> tuple[np.ndarray, np.ndarray]:
    """``F(x)`` at every distinct interval x: share of all tokens with an interval > x."""
    if intervals.size == 0 or total_tokens == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
    x, first = np.unique(intervals, return_index=True)
    above = intervals.size - np.append(first[1:], intervals.size)
    return x, above * block_size / total_tokens
