"""Other eviction policies through libCacheSim, on the same tail-first touch stream.

Every block is a unit-size object and a cache of ``C`` tokens holds ``M = floor(C / B)`` of
them. libCacheSim is an optional dependency (``pip install "pytest-kvreuse[policies]"``),
imported only when a policy is asked for.
"""

from __future__ import annotations

import numpy as np

from ..errors import KvReuseError
from .blocks import BlockStream
from .lru import capacity_blocks, counted_from_block, touch_order

_INSTALL = 'pip install "pytest-kvreuse[policies]"'


def _libcachesim():
    try:
        import libcachesim
    except ImportError as exc:
        raise KvReuseError(f"eviction policies need libCacheSim: {_INSTALL}") from exc
    return libcachesim


def available_policies() -> list[str]:
    """Names of libCacheSim's cache classes that :func:`policy_hits` accepts."""
    lcs = _libcachesim()
    base = lcs.CacheBase
    return sorted(name for name in dir(lcs) if not name.startswith("_")
                  and isinstance(getattr(lcs, name), type)
                  and issubclass(getattr(lcs, name), base)
                  and getattr(lcs, name) is not base and name != "PluginCache")


def next_use(touch_keys: np.ndarray) -> np.ndarray:
    """Time of the next touch of the same key, or INT64_MAX when none (Belady reads it)."""
    n = touch_keys.size
    order = np.argsort(touch_keys, kind="stable")
    out = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
    same = touch_keys[order[1:]] == touch_keys[order[:-1]]
    out[order[:-1][same]] = order[1:][same]
    return out


def policy_hits(stream: BlockStream, policy: str, cache_tokens: float, *,
                warmup_requests: int = 0) -> int:
    """Hit touches among the counted ones of libCacheSim's ``policy`` (``"ARC"``,
    ``"S3FIFO"``, ``"Belady"``, ... case-insensitive) with ``floor(C / B)`` blocks."""
    lcs = _libcachesim()
    names = {name.lower(): name for name in available_policies()}
    if not isinstance(policy, str) or policy.lower() not in names:
        raise KvReuseError(f"unknown policy {policy!r}; libCacheSim offers: "
                           + ", ".join(sorted(names.values())))
    m = capacity_blocks(cache_tokens, stream.block_size, "cache size")
    if m == 0 or stream.num_blocks == 0:
        return 0
    cache = getattr(lcs, names[policy.lower()])(cache_size=min(m, stream.num_blocks + 1))
    keys = stream.keys[touch_order(stream)]
    nxt = next_use(keys)
    start = counted_from_block(stream, warmup_requests)
    req = lcs.Request()
    req.obj_size = 1
    hits = 0
    # libCacheSim's Python API takes one request at a time.
    for i, (key, later) in enumerate(zip(keys.tolist(), nxt.tolist(), strict=True)):
        req.obj_id = key
        req.clock_time = i
        req.next_access_vtime = later
        if cache.get(req) and i >= start:
            hits += 1
    return hits
