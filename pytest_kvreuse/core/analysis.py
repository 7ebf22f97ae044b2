"""ReuseAnalysis: the figures of one trace, computed from its BlockStream."""

from __future__ import annotations

import math
import numbers
import time
from functools import cached_property

import numpy as np

from ..errors import KvReuseError
from ..metrics import METRICS
from .blocks import BlockStream
from .intervals import interval_ccdf, reuse_intervals, tokens_beyond
from .lru import LruProfile, capacity_blocks, counted_from_block, lru_profile


def warmup_requests(warmup: float, num_requests: int) -> int:
    """Requests left out of the figures for a warm-up fraction: ``floor(warmup * n)``."""
    if isinstance(warmup, bool) or not isinstance(warmup, numbers.Real) \
            or not 0.0 <= warmup < 1.0:
        raise KvReuseError(f"warmup must be a fraction of the requests in [0, 1), "
                           f"got {warmup!r}")
    # The epsilon keeps 0.3 * 10 (2.9999999999999996 in floats) at 3 requests.
    return min(num_requests, math.floor(warmup * num_requests + 1e-9))


class ReuseAnalysis:
    """Reuse figures of one BlockStream; fractions are shares of full-block tokens.

    **Warm-up (steady state).** With ``warmup=F`` the first ``floor(F * num_requests)``
    requests only fill the cache: every figure counts the touches of the remaining
    (*counted*) requests, and every fraction is a share of ``counted_tokens``, the
    full-block tokens of the counted requests. That holds for the interval figures too: an
    interval is kept iff its second occurrence lies in a counted request (its first may lie
    in the warm-up), so ``reuse_count``, the interval statistics, ``ccdf()`` and
    ``offloadable_fraction`` describe the counted requests. ``num_requests``,
    ``num_blocks``, ``unique_blocks`` and ``total_tokens`` still describe the whole trace.
    With ``F = 0`` (the default) counted and total are the same.

    **LRU figures** (analysis.md section 3) come from the exact stack distances of every
    touch, computed once, on first use: the interval-only path never pays for them.

    When nothing is counted (no full block) every fraction is undefined: NaN here, ``None``
    in :meth:`to_dict`.
    """

    def __init__(self, stream: BlockStream, *, params: dict | None = None,
                 timings: dict | None = None, warmup: float = 0.0) -> None:
        self.stream = stream
        self.params = dict(params or {})
        # The sha256 of the bytes analysed, when the loader took it (a pipe's always).
        self.content_sha256: str | None = None
        self.timings = dict(timings or {})
        self.warmup_requests = warmup_requests(warmup, stream.num_requests)
        self.warmup = float(warmup)
        self._counted_from = counted_from_block(stream, self.warmup_requests)
        start = time.perf_counter()
        self.intervals, self.unique_blocks = reuse_intervals(
            stream, counted_from=self._counted_from)
        self.timings["intervals_s"] = time.perf_counter() - start

    @property
    def block_size(self) -> int:
        return self.stream.block_size

    @property
    def num_requests(self) -> int:
        return self.stream.num_requests

    @property
    def num_blocks(self) -> int:
        return self.stream.num_blocks

    @property
    def total_tokens(self) -> int:
        return self.stream.total_tokens

    @property
    def counted_requests(self) -> int:
        return self.num_requests - self.warmup_requests

    @property
    def counted_tokens(self) -> int:
        """Full-block tokens of the counted requests: the denominator of every fraction."""
        return (self.num_blocks - self._counted_from) * self.block_size

    @property
    def reuse_count(self) -> int:
        return int(self.intervals.size)

    def _share(self, tokens: int) -> float:
        return tokens / self.counted_tokens if self.counted_tokens else math.nan

    @property
    def reused_fraction(self) -> float:
        """Share of tokens seen before, in an earlier request."""
        return self._share(self.reuse_count * self.block_size)

    @cached_property
    def _interval_stats(self) -> tuple[int | None, int | None, int | None]:
        iv = self.intervals
        if iv.size == 0:
            return None, None, None
        # The original script's median: sorted[n // 2], kept for comparable results.
        return int(iv[0]), int(iv[iv.size // 2]), int(iv[-1])

    @property
    def interval_min(self) -> int | None:
        return self._interval_stats[0]

    @property
    def interval_median(self) -> int | None:
        return self._interval_stats[1]

    @property
    def interval_max(self) -> int | None:
        return self._interval_stats[2]

    def offloadable_fraction(self, gpu_cache_tokens: float) -> float:
        """Share of all tokens seen before but not within the last ``gpu_cache_tokens``."""
        capacity_blocks(gpu_cache_tokens, self.block_size)  # refuse a negative or NaN size
        return self._share(tokens_beyond(self.intervals, gpu_cache_tokens, self.block_size))

    def ccdf(self) -> tuple[np.ndarray, np.ndarray]:
        """``(x, F(x))``: at every distinct interval x, the share of tokens reused > x apart."""
        return interval_ccdf(self.intervals, self.block_size, self.counted_tokens)

    @cached_property
    def compulsory_fraction(self) -> float:
        """Share of tokens whose key is touched for the first time (no cache serves them).

        Cheap: the number of distinct keys, less those already seen in the warm-up.
        """
        first_touches = self.unique_blocks
        if self._counted_from:
            seen = np.zeros(int(self.stream.keys.max()) + 1, dtype=bool)
            seen[self.stream.keys[:self._counted_from]] = True
            first_touches -= int(np.count_nonzero(seen))
        return self._share(first_touches * self.block_size)

    @cached_property
    def lru(self) -> LruProfile:
        """Sorted stack distances of the counted touches (computed on first use)."""
        start = time.perf_counter()
        profile = lru_profile(self.stream, warmup_requests=self.warmup_requests)
        self.timings["lru_s"] = time.perf_counter() - start
        return profile

    def lru_hit_fraction(self, cache_tokens: float) -> float:
        """Share of tokens an LRU cache of ``cache_tokens`` tokens serves: touches whose
        stack distance is below ``M = floor(cache_tokens / block_size)``."""
        return self.lru.hit_fraction(cache_tokens)

    def lru_offloadable_fraction(self, gpu_cache_tokens: float,
                                 lower_tier_tokens: float | None = None) -> float:
        """Share of tokens seen before that an LRU GPU cache of ``gpu_cache_tokens`` no
        longer holds (distance ``>= M``). With ``lower_tier_tokens`` (an exclusive CPU/SSD
        tier below it), only those the lower tier still holds:
        ``M <= distance < M + floor(lower_tier_tokens / block_size)``.

        ``lru_hit_fraction(C) + lru_offloadable_fraction(C) + compulsory_fraction == 1``.
        """
        return self.lru.offloadable_fraction(gpu_cache_tokens, lower_tier_tokens)

    def lru_curve(self) -> tuple[np.ndarray, np.ndarray]:
        """``(x, hit)``: the LRU hit fraction at every capacity, from one pass. ``hit[i]``
        holds for capacities from ``x[i]`` tokens up to ``x[i+1]``; below ``x[0]`` it is 0."""
        return self.lru.curve()

    def lru_offloadable_curve(self) -> tuple[np.ndarray, np.ndarray]:
        """``(x, share)``: tokens seen before that an LRU cache of ``x`` tokens no longer
        holds, the exact twin of the interval CCDF ``F(x)`` (same steps as :meth:`lru_curve`;
        below ``x[0]`` the share is ``1 - compulsory_fraction``)."""
        x, hit = self.lru.curve()
        return x, np.maximum(self.lru.reusable_fraction - hit, 0.0)

    def lru_hit_split(self, cache_tokens: float) -> dict[str, float] | None:
        """``{"same_session": f, "cross_session": f}``: LRU hits whose previous touch came
        from a request of the same session, or of another (or unknown) one; ``None`` when the
        trace carries no sessions. The two add up to :meth:`lru_hit_fraction`."""
        return self.lru.hit_split(cache_tokens)

    def lru_offloadable_split(self, gpu_cache_tokens: float,
                              lower_tier_tokens: float | None = None,
                              ) -> dict[str, float] | None:
        """:meth:`lru_offloadable_fraction` split like :meth:`lru_hit_split`."""
        return self.lru.offloadable_split(gpu_cache_tokens, lower_tier_tokens)

    def to_dict(self) -> dict:
        """The parameters and every figure without arguments, JSON-ready and deterministic
        (the full result document, sizes and curves included, is
        :meth:`pytest_kvreuse.TraceResult.from_analysis`)."""
        figures = {m.name: m.value(self) for m in METRICS.values() if not m.args}
        return {"params": {k: self.params[k] for k in sorted(self.params)}, **figures}

    def __repr__(self) -> str:
        return (f"ReuseAnalysis(requests={self.num_requests}, blocks={self.num_blocks}, "
                f"block_size={self.block_size}, reuses={self.reuse_count})")

