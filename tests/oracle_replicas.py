"""The obviously-right reference for replicas behind a router: one OrderedDict LRU cache
per replica, requests routed in trace order exactly as docs/replicas.md reads, and a shared
(or private) write-through lower tier as one more OrderedDict. bench/bench_replicas.py
times it against the engine."""

from __future__ import annotations

import math
from collections import Counter, OrderedDict
from hashlib import blake2b

import numpy as np


def _touch(cache: OrderedDict, key: int, capacity: int) -> bool:
    """One LRU touch; True on a hit."""
    if key in cache:
        cache.move_to_end(key)
        return True
    cache[key] = None
    if len(cache) > capacity:
        cache.popitem(last=False)
    return False


def _session_replica(session: int, index: int, replicas: int) -> int:
    if session < 0:
        return index % replicas
    digest = blake2b(str(session).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") % replicas


def simulate(requests: list[list[int]], replicas: int, capacity: int, routing: str, *,
             sessions: list[int] | None = None, seed: int = 0, load_slack: float = 0.25,
             shared_capacity: int = 0, private_capacity: int = 0,
             warmup_requests: int = 0) -> dict:
    """``requests[r]``: the block keys of request ``r``, head first. Returns the replica of
    every request, hit touches per replica (counted requests only), and the counted
    touches by outcome with a shared tier and with private tiers."""
    caches = [OrderedDict() for _ in range(replicas)]
    shared: OrderedDict = OrderedDict()
    private = [OrderedDict() for _ in range(replicas)]
    routed = [0] * replicas
    hits = [0] * replicas
    tiers: Counter = Counter()
    assignment = []
    draws = np.random.default_rng(seed).integers(0, replicas, size=len(requests),
                                                 dtype=np.int64).tolist()
    for i, blocks in enumerate(requests):
        if routing == "round-robin":
            j = i % replicas
        elif routing == "random":
            j = draws[i] if replicas > 1 else 0
        elif routing == "session":
            j = _session_replica(sessions[i], i, replicas)
        else:
            bound = math.ceil((1.0 + load_slack) * (i + 1) / replicas)
            best = None
            for r in range(replicas):
                if routed[r] + 1 > bound:
                    continue
                run = 0
                for key in blocks:
                    if key not in caches[r]:
                        break
                    run += 1
                score = (-run, routed[r], r)
                if best is None or score < best:
                    best = score
            j = best[2]
        assignment.append(j)
        routed[j] += 1
        counted = i >= warmup_requests
        for key in reversed(blocks):  # tail first
            gpu = _touch(caches[j], key, capacity)
            in_shared = _touch(shared, key, shared_capacity) if shared_capacity else False
            in_private = (_touch(private[j], key, private_capacity) if private_capacity
                          else False)
            if not counted:
                continue
            hits[j] += gpu
            tiers["gpu_hit"] += gpu
            tiers["shared_tier_hit"] += (not gpu) and in_shared
            tiers["private_tier_hit"] += (not gpu) and in_private
            tiers["total"] += 1
    tiers["shared_miss"] = tiers["total"] - tiers["gpu_hit"] - tiers["shared_tier_hit"]
    tiers["private_miss"] = tiers["total"] - tiers["gpu_hit"] - tiers["private_tier_hit"]
    return {"assignment": assignment, "hits": hits, "requests": routed,
            "tiers": dict(tiers)}


def requests_of(stream) -> list[list[int]]:
    """The block keys of every request of a BlockStream, head first."""
    starts = stream.request_starts.tolist()
    keys = stream.keys.tolist()
    return [keys[starts[r]:starts[r + 1]] for r in range(len(starts) - 1)]
