"""Reuse time in seconds of timestamped traces, and caches that drop a block T seconds
after its last use (definitions in docs/times.md).

numpy only: the pairs come from the interval pass (:func:`reuse_intervals_and_pairs`),
every figure here is a sort, a search or a histogram over flat arrays.
"""

from __future__ import annotations

import math
import numbers
from fractions import Fraction

import numpy as np

from ..errors import KvReuseError
from .blocks import BlockStream
from .intervals import ReusePairs, reuse_intervals_and_pairs

# Reuse times are differences of stamps on a microsecond grid: stamps read as seconds
# from milliseconds (59355 / 1000) carry rounding that a plain float difference would
# keep (60.0000000000004 would miss T = 60); integer microseconds subtract exactly, and
# one division gives the double a reader expects (59.355).
_PER_SECOND = 1_000_000
# |stamp| below this many microseconds (about 73,000 years): a stamp plus the largest
# threshold stays inside int64.
_MAX_STAMP = 2**61
_MAX_LIMIT = 2**62


def _check_real(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise KvReuseError(f"{name} must be a number, got {value!r}")
    return float(value)


def _ttl_limit(ttl_seconds: object) -> int:
    """The largest reuse time in microseconds that a TTL of ``ttl_seconds`` still keeps:
    the largest integer ``d`` with ``d / 1e6 <= T``, so a TTL keeps exactly the pairs
    whose reported time (in seconds) is ``<= T``."""
    ttl = _check_real("TTL", ttl_seconds)
    if not ttl >= 0.0:  # NaN too
        raise KvReuseError(f"TTL must be a non-negative number of seconds, got {ttl_seconds!r}")
    if ttl * _PER_SECOND >= _MAX_LIMIT:
        return _MAX_LIMIT
    limit = math.floor(ttl * _PER_SECOND)
    # The product rounds: step to the exact boundary of the comparison the times make.
    while (limit + 1) / _PER_SECOND <= ttl:
        limit += 1
    while limit > 0 and limit / _PER_SECOND > ttl:
        limit -= 1
    return limit


class ReuseTimes:
    """Reuse times (seconds) of a stream's counted reuse pairs, and its TTL-cache figures.

    The pairs are those of docs/definitions.md §2: consecutive occurrences ``a < b`` of a
    key in different requests (pairs inside one request are skipped, but the later block is
    still the previous occurrence for the next pair). A pair's reuse time is
    ``ts(request of b) - ts(request of a)``; it is counted iff ``b`` lies in a counted
    request (from ``warmup_requests`` on), as for the intervals.

    ``times`` is None (every figure undefined, never an error) when a request whose time
    matters has no finite timestamp (every counted request, and every warm-up request
    holding a block), or when those timestamps decrease in file order: file order is
    arrival order, and a trace that says otherwise has no meaningful reuse time.
    ``reason`` says which. Undefined figures: None for times and token counts, NaN for
    fractions (as in :class:`ReuseAnalysis`).

    ``pairs``: the :class:`ReusePairs` of ``stream`` from an interval pass already made
    (:func:`reuse_intervals_and_pairs`); without it, the pass is made here.
    """

    def __init__(self, stream: BlockStream, *, warmup_requests: int = 0,
                 pairs: ReusePairs | None = None) -> None:
        num_requests = stream.num_requests
        if isinstance(warmup_requests, bool) or not isinstance(warmup_requests, numbers.Integral) \
                or not 0 <= warmup_requests <= num_requests:
            raise KvReuseError(f"warmup_requests must be an integer in [0, {num_requests}], "
                               f"got {warmup_requests!r}")
        self.block_size = stream.block_size
        self.warmup_requests = int(warmup_requests)
        starts = stream.request_starts
        self._blocks = np.diff(starts)
        self.counted_tokens = int(stream.num_blocks - starts[self.warmup_requests]) \
            * stream.block_size
        self.reason: str | None = None
        self._stamps = self._stamps_us(stream)
        self.times: np.ndarray | None = None
        self._pairs: ReusePairs | None = None
        self._micros: np.ndarray | None = None
        if self._stamps is None:
            return
        if pairs is None:
            _, _, pairs = reuse_intervals_and_pairs(stream)
        self._pairs = pairs
        keep = (pairs.first != pairs.second) & (pairs.second >= self.warmup_requests)
        micros = self._stamps[pairs.second[keep]] - self._stamps[pairs.first[keep]]
        if pairs.repeats is not None:
            micros = np.repeat(micros, pairs.repeats[keep])
        micros.sort()
        self._micros = micros
        self.times = micros / _PER_SECOND

    def _stamps_us(self, stream: BlockStream) -> np.ndarray | None:
        """Per-request stamps in integer microseconds; None (and ``reason``) when
        undefined."""
        stamps = np.asarray(stream.timestamps, dtype=np.float64)
        if stamps.shape != (stream.num_requests,):
            self.reason = "the stream has no per-request timestamps"
            return None
        needed = self._blocks > 0
        needed[self.warmup_requests:] = True
        missing = np.flatnonzero(needed & ~np.isfinite(stamps))
        if missing.size:
            self.reason = f"request {int(missing[0])} has no timestamp"
            return None
        micros = stamps * _PER_SECOND
        too_far = np.flatnonzero(needed & (np.abs(micros) >= _MAX_STAMP))
        if too_far.size:
            self.reason = f"request {int(too_far[0])}'s timestamp is out of range"
            return None
        used = np.flatnonzero(needed)
        out = np.zeros(stamps.shape[0], dtype=np.int64)
        if used.size == 0:
            return out
        out[used] = np.rint(micros[used])
        back = np.flatnonzero(np.diff(out[used]) < 0)
        if back.size:
            self.reason = (f"timestamps decrease at request {int(used[back[0] + 1])} "
                           f"(file order must be arrival order)")
            return None
        # Requests whose stamp does not matter (warm-up ones without blocks) take the one
        # before them, so the stamps stay sorted for the searches of the TTL peak.
        fill = np.zeros(stamps.shape[0], dtype=np.int64)
        fill[used] = used
        np.maximum.accumulate(fill, out=fill)
        fill[:used[0]] = used[0]
        return out[fill]

    @property
    def defined(self) -> bool:
        return self.times is not None

    @property
    def count(self) -> int | None:
        """Number of counted reuse pairs (None when the times are undefined)."""
        return None if self.times is None else int(self.times.size)

    def quantile(self, q: float) -> float | None:
        """``sorted[floor(q * n)]`` (seconds), ``q`` in ``[0, 1)``: the median is
        ``quantile(0.5)``, the convention of the interval median. ``q`` is read as the
        decimal it prints as, so 0.3 of 10 times is index 3 (not 2, as 0.3 * 10 is
        2.9999999999999996 in floats). None when undefined or there is no reuse."""
        value = _check_real("quantile", q)
        if not 0.0 <= value < 1.0:
            raise KvReuseError(f"quantile must be in [0, 1), got {q!r}")
        if self.times is None or self.times.size == 0:
            return None
        index = math.floor(Fraction(repr(value)) * self.times.size)
        return float(self.times[index])

    def ttl_hit_fraction(self, ttl_seconds: float) -> float:
        """Share of the counted tokens a cache of unbounded size that drops a block
        ``ttl_seconds`` after its last use serves: counted reuses with time ``<= T``,
        ``* block_size / counted_tokens``. NaN when undefined or nothing is counted."""
        limit = _ttl_limit(ttl_seconds)
        if self._micros is None or self.counted_tokens == 0:
            return math.nan
        hits = int(np.searchsorted(self._micros, limit, side="right"))
        return hits * self.block_size / self.counted_tokens

    def ttl_peak_tokens(self, ttl_seconds: float) -> int | None:
        """The most block tokens that cache holds at any counted request's arrival.

        A key is resident from each touch (its request's arrival time) until its last
        touch plus ``T``, both ends included. At the arrival of request ``r``, every
        request up to and including ``r`` in file order has touched its blocks (so ``r``'s
        own blocks, new or not, count at its arrival, and so do those of earlier requests
        with the same timestamp; those of later ones with the same timestamp do not yet),
        and a key counts once however many blocks hold it. Residency only grows at
        arrivals, so the largest count over time is at one of them; warm-up requests touch
        keys but their arrivals are not evaluated. Result: that count ``* block_size``;
        None when undefined or no request is counted.
        """
        limit = _ttl_limit(ttl_seconds)
        if self._stamps is None or self._pairs is None:
            return None
        num = self._stamps.shape[0]
        if num <= self.warmup_requests:
            return None
        # Every block holds its key over the arrivals [r, end(r)) a touch at r reaches;
        # a pair a -> b (same request or not) hands the key over at b, so the touch of a
        # stops at b: subtract [b, end(a)). What is left counts each key once.
        end = np.searchsorted(self._stamps, self._stamps + limit, side="right")
        rows = np.arange(num)
        delta = np.bincount(rows, weights=self._blocks, minlength=num + 1)
        delta -= np.bincount(end, weights=self._blocks, minlength=num + 1)
        pairs = self._pairs
        reach = end[pairs.first]
        cut = reach > pairs.second
        weights = None if pairs.repeats is None else pairs.repeats[cut]
        delta -= np.bincount(pairs.second[cut], weights=weights, minlength=num + 1)
        delta += np.bincount(reach[cut], weights=weights, minlength=num + 1)
        resident = np.cumsum(np.rint(delta[:num]).astype(np.int64))
        return int(resident[self.warmup_requests:].max()) * self.block_size

    def __repr__(self) -> str:
        if self.times is None:
            return f"ReuseTimes(undefined: {self.reason})"
        return f"ReuseTimes(count={self.times.size}, block_size={self.block_size})"


def reuse_times(stream: BlockStream, *, warmup_requests: int = 0,
                pairs: ReusePairs | None = None) -> ReuseTimes:
    """:class:`ReuseTimes` of ``stream`` (see there)."""
    return ReuseTimes(stream, warmup_requests=warmup_requests, pairs=pairs)
