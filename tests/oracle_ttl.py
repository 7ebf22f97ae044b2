"""Plain reference implementations of docs/times.md, written to be obviously right.

A dict of the last occurrence of every key, and a simulated TTL cache, one block at a
time. Times are exact decimals (``Decimal(repr(stamp))``): a stamp read as 59.355 is
59.355, so the oracle needs no rounding argument of its own.
"""

from __future__ import annotations

import math
from decimal import Decimal


def _stamp(value: float | None) -> Decimal | None:
    if value is None or not math.isfinite(value):
        return None
    return Decimal(repr(float(value)))


def usable_stamps(blocks: list[tuple[object, int]], stamps: list[float | None],
                  warmup: int) -> list[Decimal] | None:
    """Every request's stamp, or None when the times are undefined: a counted request or a
    warm-up request holding a block without a stamp, or those stamps going backwards."""
    holds = {r for _, r in blocks}
    needed = [r for r in range(len(stamps)) if r >= warmup or r in holds]
    exact = [_stamp(s) for s in stamps]
    if any(exact[r] is None for r in needed):
        return None
    for a, b in zip(needed, needed[1:], strict=False):
        if exact[b] < exact[a]:
            return None
    return exact


def reuse_times(blocks: list[tuple[object, int]], stamps: list[float | None],
                warmup: int = 0) -> list[Decimal] | None:
    """Sorted reuse times: for consecutive occurrences a < b of a key in different
    requests, with b in a counted request, ts(request of b) - ts(request of a)."""
    exact = usable_stamps(blocks, stamps, warmup)
    if exact is None:
        return None
    last_request: dict[object, int] = {}
    out = []
    for key, req in blocks:
        if key in last_request:
            prev = last_request[key]
            if prev != req and req >= warmup:
                out.append(exact[req] - exact[prev])
        last_request[key] = req
    return sorted(out)


def ttl_hit_fraction(times: list[Decimal] | None, ttl: float, block_size: int,
                     counted_tokens: int) -> float:
    if times is None or counted_tokens == 0:
        return math.nan
    limit = Decimal(repr(float(ttl))) if math.isfinite(ttl) else None
    hits = sum(1 for t in times if limit is None or t <= limit)
    return hits * block_size / counted_tokens


def ttl_peak_tokens(blocks: list[tuple[object, int]], stamps: list[float | None],
                    ttl: float, block_size: int, warmup: int = 0) -> int | None:
    """Replay a TTL cache of unbounded size: at each request's arrival drop the keys
    whose last touch is more than ``ttl`` ago, touch the request's keys, and count the
    resident keys (at counted arrivals only)."""
    exact = usable_stamps(blocks, stamps, warmup)
    if exact is None or len(stamps) <= warmup:
        return None
    limit = Decimal(repr(float(ttl))) if math.isfinite(ttl) else None
    keys_of: list[list[object]] = [[] for _ in stamps]
    for key, req in blocks:
        keys_of[req].append(key)
    last_touch: dict[object, Decimal] = {}
    best = 0
    for r in range(len(stamps)):
        if r < warmup and not keys_of[r]:  # touches nothing, not counted: nothing happens
            continue
        now = exact[r]
        if limit is not None:
            for key in [k for k, t in last_touch.items() if now - t > limit]:
                del last_touch[key]
        for key in keys_of[r]:
            last_touch[key] = now
        if r >= warmup:
            best = max(best, len(last_touch))
    return best * block_size
