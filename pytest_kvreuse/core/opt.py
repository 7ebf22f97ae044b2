"""Belady-optimal (demand OPT) hits at every cache size from one pass over the touches.

Same tail-first touch stream as the LRU pass (docs/definitions.md §3, docs/opt.md). OPT is a stack
algorithm: each reuse touch ``t`` (previous touch ``p``) has an OPT distance ``d`` and a cache of
``M`` blocks hits it iff ``d < M``, exactly as ``LruProfile`` counts (a re-touch with nothing in
between has distance 0).

**The track schedule.** With demand paging, OPT with ``M`` blocks keeps the reuse interval
``(p, t)`` iff the greedy "by earliest ``t``" selection keeps it when at most ``K = M - 1`` kept
intervals may cross any interior point: the best-fit schedule of intervals on ``K`` tracks. The
schedules of all ``K`` are one sequence ``x_1, x_2, ...`` of track ends (the ends of the
``K``-track schedule are ``x_1 .. x_K``; unused tracks end at -1), and the distance of ``(p, t)``
is the first ``K`` with ``x_K <= p``. Checked against a heap replay of Belady at every size on
thousands of random traces (tests/test_opt.py).

**Runs.** Prefix traffic re-touches a prefix in the order it was last touched: the pairs come
in runs ``(p + i, t + i)``, ``i < r`` (split so that ``r < t - p``: then the ends a run writes,
``t + i - 1``, are never free inside it). Inside a run, at every level ``K`` each step frees the
track holding the largest free end, and the end ``p + i`` of the previous run becomes free
just when step ``i`` needs it; so the level hits ``min(r, free ends among x_1 .. x_K)`` of the
run, and the run's distances are the ``r`` smallest positions ``K`` whose end is
``< p + r`` (its free set). One run costs a few array passes over the free positions in front
of the last one it reads, instead of one pass per touch:

- the ``r`` largest free ends leave the schedule;
- a free end with fewer than ``r`` greater free ends in front of it is the one that takes a
  leaving end's level at some ``K``: taken from the largest down, each of these moves to the
  next largest position of (the leaving ends' positions and theirs) - a nonincreasing
  sequence, so one sort gives it;
- the ``r`` smallest positions of that pool (the distances) take the run's new ends
  ``t + i - 1``, in the order the steps reach them: step ``i`` takes the smallest position whose
  end is free by then (a position holding ``p + j`` is free from step ``j``).

Free ends in front of the last one read form a few increasing pieces (their order is what the
moves leave behind), so "fewer than ``r`` greater in front" is a threshold per piece.
"""

from __future__ import annotations

import heapq
import math
from bisect import bisect_left, bisect_right
from dataclasses import dataclass

import numpy as np

from .blocks import BlockStream
from .lru import (
    COLD,
    capacity_blocks,
    counted_from_block,
    earlier_greater,
    previous_touch,
    touch_order,
)

# Beyond this many increasing pieces the per-piece thresholds cost more than one
# earlier-and-greater count over the free ends.
_MAX_PIECES = 32


def _runs(t: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First pair and length of each run ``(p + i, t + i)``, cut to lengths ``< t - p``."""
    start = np.ones(t.size, dtype=bool)
    start[1:] = (t[1:] != t[:-1] + 1) | (p[1:] != p[:-1] + 1)
    first = np.flatnonzero(start)
    length = np.diff(np.append(first, t.size))
    span = t[first] - p[first] - 1
    pieces = -(-length // span)
    if (pieces > 1).any():
        owner = np.repeat(np.arange(first.size), pieces)
        within = np.arange(owner.size) - np.repeat(np.cumsum(pieces) - pieces, pieces)
        step = span[owner]
        length = np.minimum(step, length[owner] - within * step)
        first = first[owner] + within * step
    return first, length


def _few_greater_in_front(vals: np.ndarray, rising: np.ndarray, r: int) -> np.ndarray:
    """Mask of the elements of ``vals`` (distinct, not increasing throughout: ``rising`` is
    ``vals[1:] > vals[:-1]``) with fewer than ``r`` greater in front."""
    desc = np.flatnonzero(~rising)
    if desc.size > _MAX_PIECES:
        rank = np.empty(vals.size, dtype=np.int64)
        rank[np.argsort(vals)] = np.arange(vals.size)
        return earlier_greater(rank) < r
    # Inside an increasing piece the count falls as the values rise: the piece's elements
    # above the r-th largest value in front of it.
    mask = np.zeros(vals.size, dtype=bool)
    a = int(desc[0]) + 1
    mask[:a] = True
    largest = vals[max(0, a - r):a].tolist()
    for b in (desc[1:] + 1).tolist() + [vals.size]:
        piece = vals[a:b]
        cut = a + int(piece.searchsorted(largest[-r], "right")) if len(largest) >= r else a
        mask[cut:b] = True
        if len(largest) < r or piece[-1] > largest[-r]:
            largest = sorted(largest + piece[-r:].tolist())[-r:]
        a = b
    return mask


def _pick_order(free_pos: np.ndarray, release: np.ndarray) -> np.ndarray:
    """``free_pos`` (ascending) in the order steps ``0, 1, ...`` take them: each step the
    smallest position released (``release <= step``) and not yet taken."""
    pos = free_pos.tolist()
    rel = release.tolist()
    by_release = sorted(range(len(pos)), key=rel.__getitem__)
    ready: list[int] = []
    order = []
    j = 0
    for step in range(len(pos)):
        while j < len(pos) and rel[by_release[j]] <= step:
            heapq.heappush(ready, pos[by_release[j]])
            j += 1
        order.append(heapq.heappop(ready))
    return np.array(order, dtype=np.int64)


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
    t = t_all[~adjacent]
    p = p_all[~adjacent]
    if t.size == 0:
        return dist
    first, length = _runs(t, p)
    out = np.empty(t.size, dtype=np.int64)
    x = np.full(t.size + 1, -1, dtype=np.int64)    # track ends by position
    slot = np.full(n + 1, -1, dtype=np.int64)      # position by end
    ends: list[int] = []  # current ends, ascending: a run's new ends are above all of them
    used = 0
    o = 0
    for t0, p0, r in zip(t[first].tolist(), p[first].tolist(), length.tolist(), strict=True):
        hi = p0 + r  # the run's free ends are those < hi
        i = bisect_left(ends, hi)
        j = max(0, i - r)
        if i > j and ends[i - 1] - ends[j] == i - 1 - j:
            top = np.arange(ends[j], ends[i - 1] + 1)  # consecutive ends, as runs leave them
        else:
            top = np.array(ends[j:i], dtype=np.int64)
        arrivals = i - bisect_right(ends, p0, j, i)
        del ends[j:i]
        ends.extend(range(t0 - 1, t0 - 1 + r))
        qpos = slot[top]
        if top.size < r:
            # Fewer free ends than steps: fresh tracks take the rest and nothing moves.
            pool = np.sort(np.concatenate([qpos, np.arange(used, used + r - top.size)]))
            given = movers = pool[:0]
        else:
            seg = x[:int(qpos.max())]
            free = np.flatnonzero(seg < hi)
            vals = seg[free]
            rising = vals[1:] > vals[:-1]
            if rising.all():
                # Increasing (the usual shape): every free end below the leaving ones moves,
                # the largest first.
                c = int(vals.searchsorted(top[0]))
                movers = vals[c - 1::-1] if c else vals[:0]
                pool = np.sort(np.concatenate([qpos, free[:c]]))
            else:
                moving = _few_greater_in_front(vals, rising, r)
                moving &= vals < top[0]
                packed = (vals[moving] << 32) | free[moving]
                packed[::-1].sort()  # descending ends; the positions ride in the low bits
                movers = packed >> 32
                pool = np.sort(np.concatenate([qpos, packed & 0xFFFFFFFF]))
            given = pool[:r - 1:-1]
        taken = pool[:r]
        if arrivals:
            # The ends p0 + j (the last `arrivals` of top) are free from step j: a step
            # before that may not take their position.
            rank = taken.searchsorted(qpos[-arrivals:])
            if (rank < top[-arrivals:] - p0).any():
                release = x[taken] - p0
                release[taken >= used] = 0
                taken = _pick_order(taken, np.maximum(release, 0))
        out[o:o + r] = taken
        o += r
        x[given] = movers
        slot[movers] = given
        new = np.arange(t0 - 1, t0 - 1 + r)
        x[taken] = new
        slot[new] = taken
        used = max(used, int(pool[r - 1]) + 1)
    out += 1
    dist[t] = out
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
