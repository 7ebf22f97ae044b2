"""BlockStream: the flat-array shape every analysis reads."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True, eq=False)
class SlotLayout:
    """How a hash-id stream's blocks group under the native hash ids that name them.

    Slot ``k`` is one hash id as one request uses it: its blocks are ``start[k]`` to
    ``start[k] + count[k] - 1`` (``count`` is the native-to-block ratio, less for a
    request's last, partial slot), and block ``start[k] + s`` has key
    ``key[k] * per_slot + s``; ``request[k]`` is the slot's request. Analyses may work on
    slots instead of blocks: several times fewer elements.
    """

    key: np.ndarray
    start: np.ndarray
    count: np.ndarray
    request: np.ndarray
    per_slot: int


@dataclass(frozen=True, eq=False)
class Category:
    """A per-request label (a Weka request's model, ...): request ``r`` has label
    ``labels[codes[r]]``."""

    codes: np.ndarray
    labels: tuple[str, ...]


@dataclass(frozen=True, eq=False)
class BlockStream:
    """All full KV blocks of a trace, request after request.

    ``keys[i]`` is a small non-negative integer naming the whole prefix up to and including
    block ``i`` (equal keys <=> identical prefix; below a few times ``num_blocks``);
    ``request[i]`` is the request that block belongs to (non-decreasing). Per request:
    ``prompt_tokens`` (partial tail included), ``timestamps`` (seconds for every format,
    NaN when unknown: docs/times.md) and
    ``sessions`` (dense ids, -1 when unknown). ``categories``: optional per-request
    labels by name (a format's request types, models, ...; empty when it has none).
    ``positions``: each block's index in the whole stream when this one holds only some of
    its blocks (a sample, docs/sampling.md; None: ``arange``).
    """

    keys: np.ndarray
    request: np.ndarray
    block_size: int
    prompt_tokens: np.ndarray
    timestamps: np.ndarray
    sessions: np.ndarray
    meta: dict = field(default_factory=dict)
    layout: SlotLayout | None = None
    categories: dict[str, Category] = field(default_factory=dict)
    positions: np.ndarray | None = None

    @property
    def num_requests(self) -> int:
        return int(self.prompt_tokens.shape[0])

    @property
    def num_blocks(self) -> int:
        return int(self.keys.shape[0])

    @property
    def total_tokens(self) -> int:
        return self.num_blocks * self.block_size

    @property
    def request_starts(self) -> np.ndarray:
        """Index of each request's first block, plus the end: shape (num_requests + 1,)."""
        return np.searchsorted(self.request, np.arange(self.num_requests + 1), side="left")

    @property
    def has_sessions(self) -> bool:
        return bool(self.sessions.size) and bool((self.sessions >= 0).any())


_CHUNK = 1 << 22


def dense_ids(values: np.ndarray) -> tuple[np.ndarray, int]:
    """Map arbitrary comparable values to 0..n_unique-1 (first-seen order is not needed:
    only equality reaches the results)."""
    values = values.reshape(-1)
    if values.size == 0:
        return np.zeros(0, dtype=np.int64), 0
    if values.dtype.kind in "iu":
        low, high = int(values.min()), int(values.max())
        if low >= 0 and high < 4 * values.size:
            # Ids that are already small (Mooncake numbers its hash ids 0, 1, 2, ...):
            # a lookup table renumbers them in O(N), no sort.
            used = np.zeros(high + 1, dtype=bool)
            used[values] = True
            table = np.cumsum(used, dtype=np.int64) - 1
            n = int(table[-1]) + 1
            return smallest_index_dtype(table, n)[values], n
    # Sorted distinct values, then each value's rank by binary search, written a chunk at a
    # time straight into the small dtype: about a third of np.unique(return_inverse)'s
    # peak memory (no argsort, no int64 inverse), and the same ids.
    uniq = np.sort(values)
    keep = np.empty(uniq.shape[0], dtype=bool)
    keep[0] = True
    np.not_equal(uniq[1:], uniq[:-1], out=keep[1:])
    uniq = uniq[keep]
    del keep
    ids = np.empty(values.shape[0], dtype=np.int32 if uniq.shape[0] < 2**31 else np.int64)
    ranks = _Ranks(uniq)
    for lo in range(0, values.shape[0], _CHUNK):
        ids[lo:lo + _CHUNK] = ranks.of(values[lo:lo + _CHUNK])
    return ids, int(uniq.shape[0])


class _Ranks:
    """Each value's index in the sorted distinct ``uniq``, found from a bucket table over
    the values' range, then a few steps: a binary search (np.searchsorted) of unsorted
    values jumps through memory at every level, and on spread-out keys (hashes, digests)
    it is the slow part of renumbering. Values far from uniform fall back to it."""

    _STEPS = 4

    def __init__(self, uniq: np.ndarray) -> None:
        self.uniq = uniq
        self.low = uniq[0]
        span = float(int(uniq[-1]) - int(uniq[0])) if uniq.dtype.kind in "iu" else 0.0
        self.scale = uniq.shape[0] / span if span > 0 else 0.0
        if self.scale:
            # first[b]: the first distinct value in bucket b (the bucket map is monotone).
            self.first = np.searchsorted(self._bucket(uniq), np.arange(uniq.shape[0] + 1))

    def _bucket(self, values: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore"):
            offset = (values - self.low).astype(np.uint64, copy=False)
        return np.minimum((offset.astype(np.float64) * self.scale).astype(np.int64),
                          self.uniq.shape[0])

    def of(self, values: np.ndarray) -> np.ndarray:
        if not self.scale:
            return np.searchsorted(self.uniq, values)
        rank = self.first[self._bucket(values)]
        last = self.uniq.shape[0] - 1
        todo = np.flatnonzero(self.uniq[np.minimum(rank, last)] != values)
        for _ in range(self._STEPS):
            if not todo.size:
                return rank
            rank[todo] += 1
            todo = todo[self.uniq[np.minimum(rank[todo], last)] != values[todo]]
        if todo.size:
            rank[todo] = np.searchsorted(self.uniq, values[todo])
        return rank


def packed_positions(keys: np.ndarray, shift: int) -> np.ndarray:
    """``(key << shift) | position`` of every block, built a chunk at a time: no int64
    copy of the keys and no position array of the stream's length. Sorted, these values
    put equal keys side by side in stream order: a value sort, several times faster than
    a stable argsort (the reuse passes sort them)."""
    n = keys.shape[0]
    packed = np.empty(n, dtype=np.int64)
    step = np.arange(min(n, _CHUNK), dtype=np.int64)
    at = np.empty_like(step)
    for lo in range(0, n, _CHUNK):
        hi = min(lo + _CHUNK, n)
        out = packed[lo:hi]
        np.left_shift(keys[lo:hi], shift, out=out, dtype=np.int64)
        np.add(step[:hi - lo], lo, out=at[:hi - lo])
        out += at[:hi - lo]
    return packed


def smallest_index_dtype(a: np.ndarray, bound: int) -> np.ndarray:
    # int32 halves memory and sort time for every trace that fits (all but absurd ones).
    return a.astype(np.int32 if bound < 2**31 else np.int64, copy=False)


def request_index(blocks_per_request: np.ndarray) -> np.ndarray:
    """Owning request of every block, given each request's block count."""
    counts = np.asarray(blocks_per_request, dtype=np.int64)
    # Repeat request numbers already in the small dtype: no int64 copy of every block.
    numbers = smallest_index_dtype(np.arange(counts.shape[0], dtype=np.int64),
                                   counts.shape[0])
    return np.repeat(numbers, counts)


def segments_in_order(offsets: np.ndarray, order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reorder variable-length segments: segment ``r`` is ``offsets[r]:offsets[r + 1]``.

    Returns the index that gathers the segments in ``order`` (one flat array, no loop per
    segment) and the offsets of the gathered segments."""
    counts = np.diff(offsets)[order]
    new = np.zeros(counts.shape[0] + 1, dtype=np.int64)
    np.cumsum(counts, out=new[1:])
    gather = (np.repeat(offsets[:-1][order] - new[:-1], counts)
              + np.arange(int(new[-1]), dtype=np.int64))
    return gather, new
