"""ReuseAnalysis: the figures of one trace, computed from its BlockStream."""

from __future__ import annotations

import math
import numbers
import time
from functools import cached_property

import numpy as np

from ..errors import KvReuseError
from ..metrics import METRICS, NO_TIMESTAMPS
from .blocks import BlockStream
from .intervals import ReusePairs, interval_ccdf, reuse_intervals_and_pairs, tokens_beyond
from .lru import LruProfile, capacity_blocks, counted_from_block, lru_profile
from .opt import OptProfile, opt_profile
from .policies import policy_hits
from .times import ReuseTimes


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

    **LRU figures** (docs/definitions.md §3) come from the exact stack distances of every
    touch, computed once, on first use: the interval-only path never pays for them. The
    **OPT figures** (docs/opt.md) likewise, from the OPT distances (:attr:`opt`).

    **Reuse times** (docs/times.md) use the pairs that the interval sort finds
    anyway (:attr:`pairs`): no second pass over the blocks. Without timestamps they are
    undefined (None, NaN for fractions), never an error; :attr:`times_reason` says why.

    **Other eviction policies** (libCacheSim, the extra ``[policies]``): block-level,
    :meth:`policy_hit_fraction`.

    When nothing is counted (no full block) every fraction is undefined: NaN here, ``None``
    in :meth:`to_dict`.
    """

    def __init__(self, stream: BlockStream, *, params: dict | None = None,
                 timings: dict | None = None, warmup: float = 0.0,
                 reuse: tuple[np.ndarray, int, ReusePairs] | None = None) -> None:
        """``reuse``: what :func:`reuse_intervals_and_pairs` returns for this stream and
        warm-up, when that pass ran elsewhere (a Dask cluster, pytest_kvreuse/cluster.py)."""
        self.stream = stream
        self.params = dict(params or {})
        # The sha256 of the bytes analysed, when the loader took it (a pipe's always).
        self.content_sha256: str | None = None
        # Where the analysis ran when not in this process (analyze(dask=...)).
        self.cluster: dict | None = None
        self.timings = dict(timings or {})
        self.warmup_requests = warmup_requests(warmup, stream.num_requests)
        self.warmup = float(warmup)
        self._counted_from = counted_from_block(stream, self.warmup_requests)
        start = time.perf_counter()
        # The pairs are gathers the interval pass makes anyway: keeping them costs no
        # measurable time (bench/bench_intervals.py) and spares the times a second sort.
        self.pairs: ReusePairs
        self.intervals, self.unique_blocks, self.pairs = reuse or reuse_intervals_and_pairs(
            stream, counted_from=self._counted_from)
        self.timings["intervals_s"] = time.perf_counter() - start
        self._policy_hits: dict[tuple[str, int], int] = {}

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

    # -- Belady-optimal (docs/opt.md) -------------------------------------------------

    @cached_property
    def opt(self) -> OptProfile:
        """Sorted OPT distances of the counted touches (computed on first use: exact, but it
        may take a while on a big trace)."""
        start = time.perf_counter()
        profile = opt_profile(self.stream, warmup_requests=self.warmup_requests)
        self.timings["opt_s"] = time.perf_counter() - start
        return profile

    @property
    def opt_computed(self) -> bool:
        return "opt" in self.__dict__

    def opt_hit_fraction(self, cache_tokens: float) -> float:
        """Share of tokens a Belady-optimal cache of ``cache_tokens`` tokens serves (demand
        OPT on the tail-first touch stream): no eviction policy hits more."""
        return self.opt.hit_fraction(cache_tokens)

    def opt_curve(self) -> tuple[np.ndarray, np.ndarray]:
        """``(x, hit)``: the OPT hit fraction at every capacity, as :meth:`lru_curve`."""
        return self.opt.curve()

    def opt_offloadable_curve(self) -> tuple[np.ndarray, np.ndarray]:
        """``(x, share)``: tokens seen before that an OPT cache of ``x`` tokens does not
        hold, the OPT twin of :meth:`lru_offloadable_curve` (reusable - OPT hit)."""
        x, hit = self.opt.curve()
        return x, np.maximum(self._reusable_share - hit, 0.0)

    @property
    def _reusable_share(self) -> float:
        # Counted touches of keys seen before: the same for every policy.
        return 1.0 - self.compulsory_fraction

    # -- reuse time in seconds (docs/times.md) ------------------------------------------

    @cached_property
    def times(self) -> ReuseTimes:
        return ReuseTimes(self.stream, warmup_requests=self.warmup_requests,
                          pairs=self.pairs)

    @property
    def reuse_times(self) -> np.ndarray | None:
        """Sorted reuse times in seconds of the counted reuses; None without timestamps."""
        return self.times.times

    @property
    def times_reason(self) -> str | None:
        """Why the reuse times are undefined (None when they are defined)."""
        if self.times.defined:
            return None
        stamps = np.asarray(self.stream.timestamps, dtype=np.float64)
        if stamps.shape != (self.num_requests,) or not np.isfinite(stamps).any():
            return NO_TIMESTAMPS
        return self.times.reason

    def reuse_time_quantile(self, q: float) -> float | None:
        """``sorted[floor(q * n)]`` of the reuse times (seconds); None when undefined."""
        return self.times.quantile(q)

    def ttl_hit_fraction(self, ttl_seconds: float) -> float:
        """Share of tokens a cache of unbounded size that drops a block ``ttl_seconds``
        after its last use serves (NaN without timestamps)."""
        return self.times.ttl_hit_fraction(ttl_seconds)

    def ttl_peak_tokens(self, ttl_seconds: float) -> int | None:
        """The most block tokens that TTL cache holds at any counted arrival: what such a
        tier must be sized for (None without timestamps)."""
        return self.times.ttl_peak_tokens(ttl_seconds)

    def reuse_time_ccdf(self) -> tuple[np.ndarray, np.ndarray]:
        """``(t, F(t))``: at every distinct reuse time t (seconds), the share of tokens
        reused more than t seconds later; empty without timestamps."""
        times = self.reuse_times
        if times is None or times.size == 0 or not self.counted_tokens:
            return np.zeros(0, dtype=np.float64), np.zeros(0, dtype=np.float64)
        t, first = np.unique(times, return_index=True)
        above = times.size - np.append(first[1:], times.size)
        return t, above * self.block_size / self.counted_tokens

    # -- other eviction policies (libCacheSim) ------------------------------------------

    def policy_hit_fraction(self, policy: str, cache_tokens: float) -> float:
        """Share of tokens libCacheSim's ``policy`` (``"arc"``, ``"s3fifo"``, ...) with
        ``cache_tokens`` tokens serves on the tail-first touch stream. Block-level: it may
        keep a block whose prefix it evicted, which a prefix cache cannot use. Needs
        ``pip install "pytest-kvreuse[policies]"``."""
        m = capacity_blocks(cache_tokens, self.block_size, "cache size")
        key = (str(policy).lower(), m)
        if key not in self._policy_hits:
            start = time.perf_counter()
            self._policy_hits[key] = policy_hits(self.stream, policy, cache_tokens,
                                                 warmup_requests=self.warmup_requests)
            self.timings[f"policy_{key[0]}_s"] = (self.timings.get(f"policy_{key[0]}_s", 0.0)
                                                  + time.perf_counter() - start)
        return self._share(self._policy_hits[key] * self.block_size)

    def to_dict(self) -> dict:
        """The parameters and every figure without arguments, JSON-ready and deterministic
        (the full result document, sizes and curves included, is
        :meth:`pytest_kvreuse.TraceResult.from_analysis`)."""
        figures = {m.name: m.value(self) for m in METRICS.values() if not m.args}
        return {"params": {k: self.params[k] for k in sorted(self.params)}, **figures}

    def __repr__(self) -> str:
        return (f"ReuseAnalysis(requests={self.num_requests}, blocks={self.num_blocks}, "
                f"block_size={self.block_size}, reuses={self.reuse_count})")

