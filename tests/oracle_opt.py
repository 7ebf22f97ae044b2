"""Obviously-right demand OPT (Belady): a heap of next-use times, one cache size at a time."""

from __future__ import annotations

import heapq

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
