"""Obviously-right demand OPT (Belady): a heap of next-use times, one cache size at a time."""

from __future__ import annotations

import heapq

import numpy as np

from pytest_kvreuse.core.lru import COLD, previous_touch

NEVER = float("inf")


def opt_replay(requests: list[list[int]], cache_blocks: int, warmup_requests: int = 0) -> int:
    """Counted hits of a demand-OPT cache of ``cache_blocks`` blocks on the tail-first touches
    of ``requests`` (request ``r`` holds the keys ``requests[r]``, head first)."""
    touches = [(r, k) for r, req in enumerate(requests) for k in reversed(req)]
    next_use: list[float] = [NEVER] * len(touches)
    seen: dict[int, int] = {}
    for i in range(len(touches) - 1, -1, -1):
        key = touches[i][1]
        next_use[i] = seen.get(key, NEVER)
        seen[key] = i
    cached: dict[int, float] = {}  # key -> its next use
    heap: list[tuple[float, int]] = []  # (-next use, key), stale entries skipped
    hits = 0
    for i, (r, key) in enumerate(touches):
        if key in cached:
            if r >= warmup_requests:
                hits += 1
        elif cache_blocks == 0:
            continue
        elif len(cached) >= cache_blocks:
            while True:
                far, victim = heapq.heappop(heap)
                if cached.get(victim) == -far:
                    break
            del cached[victim]
        cached[key] = next_use[i]
        heapq.heappush(heap, (-next_use[i], key))
    return hits


# Free-end bitmap words: a predecessor query scans one word of bits and a few word counts.
_WORD = 1024


class _Ends:
    """Set of track ends (times), with the largest element <= q."""

    def __init__(self, size: int) -> None:
        words = size // _WORD + 1
        self.bits = np.zeros(words * _WORD, dtype=bool)
        self.count = np.zeros(words, dtype=np.int64)

    def add(self, v: int) -> None:
        self.bits[v] = True
        self.count[v // _WORD] += 1

    def remove(self, v: int) -> None:
        self.bits[v] = False
        self.count[v // _WORD] -= 1

    def pred(self, q: int) -> int:
        w = q // _WORD
        lo = w * _WORD
        hit = np.flatnonzero(self.bits[lo:q + 1])
        if hit.size:
            return lo + int(hit[-1])
        full = np.flatnonzero(self.count[:w])
        if not full.size:
            return -1
        w = int(full[-1])
        return w * _WORD + int(np.flatnonzero(self.bits[w * _WORD:(w + 1) * _WORD])[-1])


def track_engine_distances(keys: np.ndarray) -> np.ndarray:
    """The first track-schedule engine (one bitmap predecessor query per touch), kept as a
    second oracle: the heap replay is too slow for traces of thousands of touches."""
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
    ends = _Ends(n + 1)
    used = 0
    out = np.empty(len(ts), dtype=np.int64)
    for i, (t, p) in enumerate(zip(ts, ps, strict=True)):
        best = ends.pred(p)
        if best < 0:
            # No track is free since p: a new track at the first unused position.
            a = used
            x[a] = t - 1
            used += 1
        else:
            stop = int(slot[best]) + 1
            seg = x[:stop]
            free = seg <= p
            a = int(np.argmax(free))
            vals = np.where(free[a:], seg[a:], -2)
            run = np.maximum.accumulate(vals)
            rec = np.flatnonzero(vals[1:] > run[:-1]) + 1 + a
            rec = np.concatenate(([a], rec))
            moved = x[rec[:-1]]
            x[rec[1:]] = moved
            slot[moved] = rec[1:]
            x[a] = t - 1
            ends.remove(best)
        slot[t - 1] = a
        ends.add(t - 1)
        out[i] = a + 1
    dist[np.asarray(ts, dtype=np.intp)] = out
    return dist
