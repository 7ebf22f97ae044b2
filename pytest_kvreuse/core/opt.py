"""Belady-optimal (demand OPT) hits at every cache size from one pass over the touches.

Same tail-first touch stream as the LRU pass (docs/definitions.md §3, docs/opt.md). OPT is a stack
algorithm: each reuse touch ``t`` (previous touch ``p``) has an OPT distance ``d`` and a cache of
``M`` blocks hits it iff ``d < M``, exactly as ``LruProfile`` counts (a re-touch with nothing in
between has distance 0).

Why the distances exist and how they are found. With demand paging, OPT with ``M`` blocks keeps
the reuse interval ``(p, t)`` iff the greedy "by earliest ``t``" selection keeps it when at
most ``K = M - 1`` kept intervals may cross any interior point (the touched block itself
takes the M-th slot). That greedy is the best-fit schedule of intervals on ``K`` tracks: a
track is described by the last interior point of its latest interval, an interval
``(p, t)`` fits iff some track ended at or before ``p``, and it goes on the track that ended
last (latest end ``<= p``), which then ends at ``t - 1``. Two facts, checked against a heap
simulation of Belady at every size on thousands of random traces (tests/test_opt.py):

1. the track ends of ``K + 1`` tracks are those of ``K`` tracks plus one more, so all the
   schedules are one sequence ``x_1, x_2, ...`` (``x_K`` the end added by the K-th track;
   ``-1``: never used);
2. hence the distance of ``(p, t)`` is the first ``K`` with ``x_K <= p``, and the update of
   every schedule ``K >= d`` at once is: ``x_d`` takes ``t - 1``, and the ends ``<= p`` that
   are running maxima from position ``d`` on each move to the next such position; the
   largest one (the best fit of the unbounded schedule) leaves.

The update touches positions up to the slot of the largest end ``<= p`` only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .blocks import BlockStream
from .lru import COLD, capacity_blocks, counted_from_block, previous_touch, touch_order


def sequence_opt_distances(keys: np.ndarray) -> np.ndarray:
    """OPT distance of every element of the touch sequence ``keys`` (:data:`COLD` for first
    touches): a cache of ``M`` blocks under demand OPT hits touch ``t`` iff distance < M."""
    keys = np.asarray(keys)
    n = int(keys.size)
    prev = previous_touch(keys)
    dist = np.full(n, COLD, dtype=np.int64)
    t_all = np.flatnonzero(prev >= 0)
    p_all = prev[t_all]
    adjacent = p_all == t_all - 1
    dist[t_all[adjacent]] = 0
    ts = t_all[~adjacent].tolist()
    ps = p_all[~adjacent].tolist()
    x = np.full(max(16, len(ts) + 1), -1, dtype=np.int64)
    slot = np.full(n + 1, -1, dtype=np.int64)
    # Which times are current track ends: bytearray.rfind answers "largest end <= p" in C,
    # and the nearest end is almost always a few steps back (an end is added every touch).
    ends = bytearray(n + 1)
    used = 0
    out = np.empty(len(ts), dtype=np.int64)
    for i, (t, p) in enumerate(zip(ts, ps, strict=True)):
        best = ends.rfind(1, 0, p + 1)
        if best < 0:
            # No track is free since p: a new track at the first unused position.
            a = used
            used += 1
        else:
            seg = x[:int(slot[best]) + 1]
            run = np.maximum.accumulate(np.where(seg <= p, seg, -2))
            # Busy tracks read as -2, so the running maximum of the free ends rises exactly
            # at the records; each record takes the previous record's end, which is the
            # running maximum just before it.
            dest = np.flatnonzero(run[1:] != run[:-1]) + 1
            if run[0] > -2:
                a = 0
            else:
                a = int(dest[0])
                dest = dest[1:]
            moved = run[dest - 1]
            x[dest] = moved
            slot[moved] = dest
            ends[best] = 0
        x[a] = t - 1
        slot[t - 1] = a
        ends[t - 1] = 1
        out[i] = a + 1
    dist[np.asarray(ts, dtype=np.intp)] = out
    return dist


@dataclass(frozen=True)
class OptProfile:
    """Sorted OPT distances of the counted reuse touches: the OPT hits at every capacity."""

    block_size: int
    counted_tokens: int
    compulsory_blocks: int
    distances: np.ndarray

    def hits(self, cache_tokens: float) -> int:
        """Counted touches an OPT cache of ``cache_tokens`` hits (distance < C // B)."""
        m = capacity_blocks(cache_tokens, self.block_size, "cache size")
        return int(np.searchsorted(self.distances, m, side="left"))

    def hit_fraction(self, cache_tokens: float) -> float:
        """OPT hit touches * B / counted tokens (NaN when nothing is counted)."""
        if not self.counted_tokens:
            return math.nan
        return self.hits(cache_tokens) * self.block_size / self.counted_tokens

    def curve(self) -> tuple[np.ndarray, np.ndarray]:
        """``(x, hit)`` as :meth:`LruProfile.curve`: the value holds from ``x`` on."""
        if self.distances.size == 0 or not self.counted_tokens:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
        d, first = np.unique(self.distances, return_index=True)
        below = np.append(first[1:], self.distances.size)
        return (d + 1) * self.block_size, below * self.block_size / self.counted_tokens


def opt_profile(stream: BlockStream, *, warmup_requests: int = 0) -> OptProfile:
    """OPT distances of ``stream`` in the tail-first touch order, counting the touches of
    requests from ``warmup_requests`` on (earlier ones fill the cache, uncounted)."""
    start = counted_from_block(stream, warmup_requests)
    dist = sequence_opt_distances(stream.keys[touch_order(stream)])[start:]
    finite = np.sort(dist[dist != COLD])
    return OptProfile(
        block_size=stream.block_size,
        counted_tokens=int(dist.size) * stream.block_size,
        compulsory_blocks=int(dist.size - finite.size),
        distances=finite,
    )
