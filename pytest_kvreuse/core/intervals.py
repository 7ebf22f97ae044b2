"""Reuse intervals: tokens streamed between consecutive cross-request occurrences of a key."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import numpy as np

from .blocks import BlockStream, SlotLayout, packed_positions

# Block positions fit int32 below this many blocks: half the memory of the index arrays.
_INT32_POSITIONS = 2**31 - 1
# Temporaries of the packed pass are built this many elements at a time, so they cost a
# chunk, not a whole stream's worth of int64 (the pass's peak memory is per block).
_CHUNK = 1 << 22


def _neighbours(packed: np.ndarray, shift: int) -> tuple[int, np.ndarray, np.ndarray]:
    """For sorted packed ``(key << shift) | position``: how many neighbours ``i, i + 1``
    share a key, and the positions of the two entries of each such pair."""
    n = packed.shape[0]
    index_dtype = np.int32 if n <= _INT32_POSITIONS else np.int64
    pos_mask = (1 << shift) - 1
    # Room for n - 1 pairs; only the pages written are ever touched.
    prev = np.empty(max(n - 1, 0), dtype=index_dtype)
    nxt = np.empty_like(prev)
    pairs = 0
    for lo in range(0, n - 1, _CHUNK):
        part = packed[lo:min(lo + _CHUNK, n - 1) + 1]
        key = part >> shift
        equal = key[1:] == key[:-1]
        positions = (part & pos_mask).astype(index_dtype)
        end = pairs + int(np.count_nonzero(equal))
        np.compress(equal, positions[:-1], out=prev[pairs:end])
        np.compress(equal, positions[1:], out=nxt[pairs:end])
        pairs = end
    return pairs, prev[:pairs], nxt[:pairs]


@dataclass(frozen=True, eq=False)
class ReusePairs:
    """Every pair of consecutive occurrences ``a < b`` of a key, same request or not, as the
    requests holding them: ``first[i]`` holds ``a``, ``second[i]`` holds ``b``, and entry
    ``i`` stands for ``repeats[i]`` such pairs (None: one each).

    In no particular order (not aligned with the sorted intervals), and not cut by warm-up:
    a consumer wanting the interval pairs (docs/definitions.md §2) keeps
    ``first != second`` and, with a warm-up of ``w`` requests, ``second >= w``.
    """

    first: np.ndarray
    second: np.ndarray
    repeats: np.ndarray | None = None

    @property
    def count(self) -> int:
        """Number of pairs, repeats included."""
        if self.repeats is None:
            return int(self.first.shape[0])
        return int(self.repeats.sum())


def interval_dtype(stream: BlockStream) -> type:
    """int32 while every interval fits (one is less than the stream's tokens): half the
    memory of the result, the biggest array this pass makes."""
    return np.int32 if stream.total_tokens < 2**31 else np.int64


def reuse_intervals(stream: BlockStream, *,
                    counted_from: int = 0) -> tuple[np.ndarray, int]:
    """Sorted reuse intervals (tokens) of ``stream`` and its number of unique keys.

    One sort by (key, position) puts every key's occurrences side by side in stream order,
    so consecutive occurrences are neighbours: no per-block Python loop.
    With ``counted_from`` (a block index; warm-up), only intervals whose second occurrence
    is at or after that block are kept: earlier blocks still serve as first occurrences.
    """
    intervals, unique, _ = _reuse_pass(stream, counted_from, want_pairs=False)
    return intervals, unique


def reuse_intervals_and_pairs(stream: BlockStream, *, counted_from: int = 0
                              ) -> tuple[np.ndarray, int, ReusePairs]:
    """:func:`reuse_intervals` plus the :class:`ReusePairs` found by the same sort, for the
    figures that need the requests of each pair (reuse times in seconds, TTL caches).
    ``counted_from`` cuts the intervals only, never the pairs."""
    intervals, unique, pairs = _reuse_pass(stream, counted_from, want_pairs=True)
    return intervals, unique, cast(ReusePairs, pairs)


def _reuse_pass(stream: BlockStream, counted_from: int, want_pairs: bool
                ) -> tuple[np.ndarray, int, ReusePairs | None]:
    if stream.layout is not None:
        found = _slot_intervals(stream, stream.layout, counted_from, want_pairs)
        if found is not None:
            return found
    keys = stream.keys
    n = int(keys.size)
    if n == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, 0, (ReusePairs(empty, empty) if want_pairs else None)
    shift = n.bit_length()
    # Big temporaries cost page faults on every fresh allocation: work in place where the
    # numbers allow, it halves the time of this pass.
    if int(keys.max()).bit_length() + shift <= 62:
        # Pack (key, position) into one int64 and sort values, not indices: several times
        # faster than a stable argsort, and equal keys stay in stream order.
        packed = packed_positions(keys, shift)
        packed.sort()
        pairs, prev, nxt = _neighbours(packed, shift)
        del packed
    else:
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        same = np.flatnonzero(sorted_keys[1:] == sorted_keys[:-1])
        prev = order[same]
        nxt = order[same + 1]
        pairs = int(same.size)
        del same, order, sorted_keys
    unique = n - pairs
    request = stream.request
    found = None
    if want_pairs:
        # The gathers the cross test makes anyway, kept: the pairs cost no extra pass.
        first, second = request[prev], request[nxt]
        cross = first != second
        found = ReusePairs(first, second)
        del first, second
    else:
        cross = request[prev] != request[nxt]
    if counted_from > 0:
        cross &= nxt >= counted_from
    if stream.positions is not None:
        # A sample's blocks keep their places in the whole stream (docs/sampling.md).
        nxt = stream.positions[nxt].astype(np.int64) - stream.positions[prev]
    else:
        nxt -= prev
    del prev
    # Sorted as block gaps, in the positions' dtype (half the bytes to sort while they fit
    # int32), then made tokens: (gap - 1) * B keeps the order. The tokens may need int64
    # even when positions do not.
    gaps = nxt[cross]
    del nxt, cross
    gaps.sort()
    intervals = np.empty(gaps.shape[0], dtype=interval_dtype(stream))
    np.subtract(gaps, 1, out=intervals, dtype=intervals.dtype)
    intervals *= stream.block_size
    return intervals, unique, found


# Walking back past more partial slots than this, the block-by-block pass is cheaper.
_MAX_WALK = 32


def _slot_intervals(stream: BlockStream, layout: SlotLayout, counted_from: int,
                    want_pairs: bool = False
                    ) -> tuple[np.ndarray, int, ReusePairs | None] | None:
    """The same intervals from the slots of a hash-id stream, without touching its blocks;
    None when the slots are too ragged for it to pay.

    Sub-block ``s`` of two occurrences of one hash id lies ``s`` blocks into each slot,
    so every sub-block present in both gives the same interval: one pair of slots stands
    for up to ``per_slot`` intervals. A request's last slot may hold fewer sub-blocks;
    sub-block ``s`` then chains back to the nearest earlier slot holding more than ``s``.
    """
    n = int(layout.key.size)
    if n == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, 0, (ReusePairs(empty, empty) if want_pairs else None)
    shift = n.bit_length()
    packed = packed_positions(layout.key, shift)
    packed.sort()
    slot_keys = packed >> shift
    order = packed & ((1 << shift) - 1)
    del packed
    count = layout.count[order]
    start = layout.start[order]
    request = layout.request[order]
    groups = np.flatnonzero(np.r_[True, slot_keys[1:] != slot_keys[:-1]])
    unique = int(np.maximum.reduceat(count, groups).sum())

    later = np.flatnonzero(slot_keys[1:] == slot_keys[:-1]) + 1
    earlier = later - 1
    # Sub-blocks below both counts chain to the slot just before.
    done = np.minimum(count[earlier], count[later])
    pairs = [(earlier, later, done)]
    # Sub-blocks of ``later`` above the earlier slot's count chain further back, to the
    # nearest slot holding them: walk back while any remain.
    need = np.flatnonzero(done < count[later])
    later, level, earlier = later[need], done[need], earlier[need] - 1
    for _ in range(_MAX_WALK):
        if later.size == 0:
            break
        alive = (earlier >= 0) & (slot_keys[np.maximum(earlier, 0)] == slot_keys[later])
        later, level, earlier = later[alive], level[alive], earlier[alive]
        reach = np.minimum(count[earlier], count[later])
        pairs.append((earlier, later, np.maximum(reach - level, 0)))
        level = np.maximum(level, count[earlier])
        more = level < count[later]
        later, level, earlier = later[more], level[more], earlier[more] - 1
    else:
        if later.size:
            return None

    first = np.concatenate([p[0] for p in pairs])
    second = np.concatenate([p[1] for p in pairs])
    times = np.concatenate([p[2] for p in pairs])
    del pairs, slot_keys, count
    found = None
    if want_pairs:
        # A slot pair stands for ``times`` block pairs between the same two requests.
        present = np.flatnonzero(times > 0)
        found = ReusePairs(request[first[present]], request[second[present]],
                           times[present])
        del present
    keep = (times > 0) & (request[first] != request[second])
    if counted_from > 0:
        keep &= start[second] >= counted_from
    # Sort (distance, multiplicity) packed in one integer: a value sort, not an argsort;
    # in place, since on a big trace each of these is tens of millions of pairs.
    width = int(layout.per_slot).bit_length()
    packed = start[second[keep]].astype(np.int64)
    packed -= start[first[keep]]
    packed -= 1
    packed <<= width
    packed |= times[keep]
    del first, second, times, keep
    packed.sort()
    repeats = (packed & ((1 << width) - 1)).astype(np.int32)
    packed >>= width
    packed *= stream.block_size
    tokens_apart = packed.astype(interval_dtype(stream))
    del packed
    intervals = np.repeat(tokens_apart, repeats)
    return intervals, unique, found


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
