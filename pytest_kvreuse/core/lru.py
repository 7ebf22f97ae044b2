"""Exact prefix-aware LRU: stack distances of every block touch, and the figures they give.

Touch order (docs/definitions.md §3): request after request; inside a request its blocks
**tail first**, as an engine frees a finished request's blocks in reverse so the LRU cache
keeps prefixes whole. The stack distance of a touch is the number of distinct keys touched
since the previous touch of the same key; an LRU cache of ``M`` blocks hits a touch iff its
distance is ``< M`` (first touches never hit: their distance is infinite, :data:`COLD`).

For a touch at time ``t`` whose previous touch of the same key is at ``p``, every key touched
in between is counted once, at its last touch before ``t``; the others are touches ``j`` whose
next touch ``next(j)`` also falls before ``t``. Hence::

    distance(t) = (t - p - 1) - #{reuse pairs (j, next(j)) with p < j and next(j) < t}

Listing the reuse pairs by their second touch, the pairs nested in ``(p, t)`` are exactly the
earlier-listed pairs whose first touch is after ``p``: a per-element "earlier and greater"
count, computed level by level over the bits of the (rank-compressed) first touches with
flat numpy passes -- O(N log N), no per-block Python loop. Runs of pairs (a prefix
re-touched in the order it was last touched) share one distance and count as one weighted
element, which shrinks the work some 50-fold on prefix-sharing traffic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import KvReuseError
from ..params import DENOMINATORS, ENGINES
from .blocks import BlockStream, packed_positions

#: Stack distance of a first touch (the key was never seen: no cache can hold it).
COLD = np.iinfo(np.int64).max

# Below groups of this many elements, one comparison pass beats the remaining bit levels.
_SMALL_GROUP = 16


def touch_order(stream: BlockStream) -> np.ndarray:
    """Block index touched at each time step: requests in order, each one tail first.

    Inside a request the map ``i -> start + end - 1 - i`` reverses the blocks; it is its own
    inverse, so the same array also gives the touch time of every block.
    """
    n = stream.num_blocks
    if n == 0:
        return np.zeros(0, dtype=np.intp)
    # The runs of equal request numbers, from the blocks: memory per block, not per
    # request (a sample keeps every request of a trace and a few of its blocks).
    cuts = np.flatnonzero(stream.request[1:] != stream.request[:-1]) + 1
    starts = np.concatenate([[0], cuts]).astype(np.intp)
    ends = np.concatenate([cuts, [n]]).astype(np.intp)
    order = np.repeat(starts + ends - 1, ends - starts)
    order -= np.arange(n, dtype=np.intp)
    return order


def previous_touch(keys: np.ndarray) -> np.ndarray:
    """Index of the previous occurrence of each element's key in ``keys``, or -1."""
    keys = np.asarray(keys)
    n = keys.size
    prev = np.full(n, -1, dtype=np.intp)
    if n < 2:
        return prev
    if n < 2**32 and keys.dtype.kind in "iu" and int(keys.min()) >= 0 \
            and int(keys.max()) < 2**31:
        # One plain sort of (key, time) packed in an int64 is several times faster than a
        # stable argsort and gives the same order.
        packed = packed_positions(keys, 32)
        packed.sort()
        order = (packed & 0xFFFFFFFF).astype(np.intp, copy=False)
        sorted_keys = packed >> 32
    else:
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
    same = sorted_keys[1:] == sorted_keys[:-1]
    prev[order[1:][same]] = order[:-1][same]
    return prev


def earlier_greater(values: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """For a permutation ``values`` of ``0..q-1``: the total weight (default 1 each) of the
    earlier elements with a greater value, ``sum(weights[i'] for i' < i if values[i'] >
    values[i])``.

    A wavelet-tree pass from the top bit down: at bit ``k`` the elements sit grouped by
    ``value >> (k + 1)``, in original order inside a group; an element whose bit ``k`` is 0
    is exceeded by exactly the earlier elements of its group whose bit ``k`` is 1, and every
    pair of elements is counted at the one level where their values first differ. Because
    the values are exactly ``0..q-1``, every group's position is plain arithmetic, so a
    level is a few flat passes and two or three scatters.
    """
    values = np.asarray(values)
    q = int(values.size)
    if q == 0:
        return np.zeros(0, dtype=np.int64)
    w = np.ones(q, dtype=np.int64) if weights is None else np.asarray(weights, dtype=np.int64)
    total = int(w.sum())
    # Unit weights need neither the weighted prefix sum nor carrying the weights along.
    weighted = total != q or bool((w != 1).any())
    # int32 halves the memory traffic whenever the positions and the sums fit.
    dtype = np.int32 if max(q, total) < 2**31 else np.int64
    nbits = max(1, (q - 1).bit_length())
    cur = values.astype(dtype)
    w = w.astype(dtype)
    cnt = np.zeros(q, dtype=dtype)
    pos = np.arange(q, dtype=dtype)
    bit = np.empty(q, dtype=dtype)
    ones = np.empty(q, dtype=dtype)
    weight = np.empty(q, dtype=dtype)
    heavy = np.zeros(q + 1, dtype=dtype)
    tmp = np.empty(q, dtype=dtype)
    dest = np.empty(q, dtype=np.intp)  # scattering with intp is 4x faster than with int32
    carried = [cur, w, cnt] if weighted else [cur, cnt]
    spare = [np.empty_like(a) for a in carried]
    stop = min(_SMALL_GROUP.bit_length() - 1, nbits)
    for k in range(nbits - 1, stop - 1, -1):
        np.right_shift(cur, k, out=bit)
        np.bitwise_and(bit, 1, out=bit)
        # Number of the ones of my group before me: every earlier group holds 2^k of them.
        np.cumsum(bit, dtype=dtype, out=ones)
        ones -= bit
        np.right_shift(cur, k + 1, out=tmp)
        np.left_shift(tmp, k, out=tmp)
        ones -= tmp
        if weighted:
            # Their weight: exclusive prefix sum less its value at my group's first position
            # (groups are aligned: that position is arithmetic).
            np.multiply(bit, w, out=tmp)
            np.cumsum(tmp, dtype=dtype, out=heavy[1:])
            np.bitwise_and(cur, ~((2 << k) - 1), out=tmp)
            np.subtract(heavy[:-1], heavy[tmp], out=weight)
        else:
            weight[:] = ones
        np.multiply(weight, bit, out=tmp)
        cnt += weight
        cnt -= tmp
        # New position: bit 1 -> start of my new group + ones before me;
        # bit 0 -> my position less the ones before me (zeros keep their order in front).
        np.right_shift(cur, k, out=tmp)
        np.left_shift(tmp, k, out=tmp)
        tmp += ones
        np.subtract(pos, ones, out=ones)
        tmp -= ones
        tmp *= bit
        tmp += ones
        dest[:] = tmp
        for src, dst in zip(carried, spare, strict=True):
            dst[dest] = src
        carried, spare = spare, carried
        cur, cnt = carried[0], carried[-1]
        if weighted:
            w = carried[1]
    group = 1 << stop
    if group > 1:
        # Groups of `group` elements are aligned blocks of positions; padding with values
        # above all others, weighing nothing, at the end changes no real element's count.
        pad = (-q) % group
        block = np.concatenate([cur, np.arange(q, q + pad, dtype=dtype)]).reshape(-1, group)
        wblock = np.concatenate([w, np.zeros(pad, dtype=dtype)]).reshape(-1, group)
        extra = np.zeros(block.shape, dtype=dtype)
        for j in range(1, group):
            greater = block[:, :j] > block[:, j:j + 1]
            extra[:, j] = np.einsum("ij,ij->i", greater, wblock[:, :j])
        cnt += extra.reshape(-1)[:q]
    out = np.empty(q, dtype=np.int64)
    out[cur.astype(np.intp)] = cnt  # the last level leaves position == value
    return out[values]


def sequence_stack_distances(keys: np.ndarray, prev: np.ndarray | None = None,
                             ) -> tuple[np.ndarray, np.ndarray]:
    """Stack distance of every element of the touch sequence ``keys``, and its previous
    touch (-1 for first touches, whose distance is :data:`COLD`).

    ``prev`` (default: :func:`previous_touch` of ``keys``) may unlink touches from their
    previous one (-1): such a touch starts a new item, and the one it would have re-touched
    keeps its slot until it falls out (vLLM's recomputed last block, docs/vllm.md).

    Reuse pairs ``(p, t)`` come in runs: ``(p + i, t + i)`` for ``i < L``, a prefix re-touched
    in the order it was last touched. A run has one distance, and for a run starting at
    ``(p, t)`` the pairs nested in ``(p, t)`` are exactly the whole earlier runs starting
    after ``p`` (a run that started before ``p`` ends before it: ``p`` is this run's). So the
    nested count is a weighted earlier-and-greater count over runs, which are few in
    prefix-sharing traffic (2 % of the reuses in a synthetic chat trace, 0.3 % in Mooncake's).
    """
    keys = np.asarray(keys)
    n = keys.size
    if prev is None:
        prev = previous_touch(keys)
    dist = np.full(n, COLD, dtype=np.int64)
    t = np.flatnonzero(prev >= 0)
    if t.size == 0:
        return dist, prev
    p = prev[t]
    run_start = np.ones(t.size, dtype=bool)
    run_start[1:] = (t[1:] != t[:-1] + 1) | (p[1:] != p[:-1] + 1)
    first = np.flatnonzero(run_start)
    length = np.diff(np.append(first, t.size))
    ps = p[first]
    rank = np.empty(first.size, dtype=np.int64)
    rank[np.argsort(ps)] = np.arange(first.size)
    nested = earlier_greater(rank, length)
    dist[t] = np.repeat(t[first] - ps - 1 - nested, length)
    return dist, prev


def stack_distances(stream: BlockStream) -> np.ndarray:
    """Stack distance of every block of ``stream`` (stream order, int64) in the prefix-aware
    touch order; first touches hold :data:`COLD`."""
    order = touch_order(stream)
    # `order` is an involution: it maps touch times to blocks and blocks to touch times.
    return sequence_stack_distances(stream.keys[order])[0][order]


def capacity_blocks(tokens: float, block_size: int, what: str = "cache size") -> int:
    """``floor(tokens / block_size)``, refusing sizes that are negative or not numbers."""
    if isinstance(tokens, bool) or not isinstance(tokens, (int, float, np.integer,
                                                           np.floating)):
        raise KvReuseError(f"{what} must be a number of tokens, got {tokens!r}")
    if math.isnan(tokens) or tokens < 0:
        raise KvReuseError(f"{what} must be a non-negative number of tokens, got {tokens}")
    if math.isinf(tokens):
        return np.iinfo(np.int64).max
    return int(tokens // block_size)


@dataclass(frozen=True)
class LruProfile:
    """Sorted stack distances of the counted touches: every LRU figure at any capacity.

    ``distances`` holds the finite distances of the counted reuse touches, sorted;
    ``compulsory_blocks`` counts the counted first touches and ``unserved_blocks`` the
    counted touches of keys seen before that no cache size serves (vLLM's recomputed last
    block; 0 for the ideal model). ``same_session`` and ``cross_session`` split
    ``distances`` by whether the previous touch came from a request of the same session
    (``None`` when the stream carries no sessions).

    Fractions divide by ``denominator_tokens`` (default ``counted_tokens``, the full-block
    tokens of the counted requests; or all their prompt tokens). With ``cumulative`` (the
    mean of per-request ratios) every touch weighs its own share instead:
    ``cumulative[i][k]`` is the weight of the first ``k`` elements of the i-th sorted array
    (distances, same, cross) and ``rest_shares`` that of the compulsory and unserved touches.
    """

    block_size: int
    counted_tokens: int
    compulsory_blocks: int
    distances: np.ndarray
    same_session: np.ndarray | None = None
    cross_session: np.ndarray | None = None
    unserved_blocks: int = 0
    denominator_tokens: int | None = None
    cumulative: tuple[np.ndarray | None, ...] | None = None
    rest_shares: tuple[float, float] | None = None

    def _mass(self, which: int, blocks: int) -> float:
        """Share of the first ``blocks`` elements of sorted array ``which``."""
        if self.cumulative is not None:
            cum = self.cumulative[which]
            return math.nan if cum is None else float(cum[blocks])
        denominator = self.counted_tokens if self.denominator_tokens is None \
            else self.denominator_tokens
        if not denominator:
            return math.nan
        return blocks * self.block_size / denominator

    def _sorted(self, which: int) -> np.ndarray | None:
        return (self.distances, self.same_session, self.cross_session)[which]

    @staticmethod
    def _below(sorted_distances: np.ndarray, blocks: int) -> int:
        return int(np.searchsorted(sorted_distances, blocks, side="left"))

    def _hits(self, which: int, cache_tokens: float) -> float:
        m = capacity_blocks(cache_tokens, self.block_size, "cache size")
        return self._mass(which, self._below(self._sorted(which), m))

    def _offloaded(self, which: int, gpu_cache_tokens: float,
                   lower_tier_tokens: float | None) -> float:
        d = self._sorted(which)
        m = capacity_blocks(gpu_cache_tokens, self.block_size, "GPU cache size")
        if lower_tier_tokens is None:
            top = d.size
        else:
            m2 = capacity_blocks(lower_tier_tokens, self.block_size, "lower tier size")
            top = self._below(d, min(m + m2, np.iinfo(np.int64).max))
        return self._mass(which, top) - self._mass(which, self._below(d, m))

    def hit_blocks(self, cache_tokens: float) -> int:
        """Counted touches an LRU cache of ``cache_tokens`` hits (distance < C // B)."""
        m = capacity_blocks(cache_tokens, self.block_size, "cache size")
        return self._below(self.distances, m)

    def hit_fraction(self, cache_tokens: float) -> float:
        """Share of tokens an LRU cache of ``cache_tokens`` serves (distance < C // B)."""
        return self._hits(0, cache_tokens)

    def offloadable_fraction(self, gpu_cache_tokens: float,
                             lower_tier_tokens: float | None = None) -> float:
        """Share of tokens seen before that the GPU LRU cache no longer holds; with a lower
        tier, only those the lower tier still holds (``M <= distance < M + C2 // B``)."""
        return self._offloaded(0, gpu_cache_tokens, lower_tier_tokens)

    def _rest(self, which: int, blocks: int) -> float:
        if self.rest_shares is not None:
            return self.rest_shares[which]
        return self._mass(0, blocks)

    @property
    def compulsory_fraction(self) -> float:
        """Share of tokens touched for the first time: no cache of any size serves them."""
        return self._rest(0, self.compulsory_blocks)

    @property
    def unserved_fraction(self) -> float:
        """Share of tokens seen before that no cache size serves (vLLM: the last block
        computed again)."""
        return self._rest(1, self.unserved_blocks)

    @property
    def reusable_fraction(self) -> float:
        """Share of tokens a cache of unbounded size serves."""
        return self._mass(0, int(self.distances.size))

    def _needed(self, share: float, start: int = 0) -> int:
        """Fewest sorted distances from ``start`` on whose share (as :meth:`_mass` computes
        it, so every denominator) reaches ``share``; more than there are when none does.
        Floats: the count is checked against the mass, not just divided."""
        base = self._mass(0, start)
        if self.cumulative is not None:
            cum = self.cumulative[0]
            return int(np.searchsorted(cum[start:], base + share, side="left"))
        of = int(self.distances.size) - start
        k = max(0, math.ceil(share / self._mass(0, 1))) if self._mass(0, 1) else 0
        k = min(k, of + 1)
        while k > 0 and self._mass(0, start + k - 1) - base >= share:
            k -= 1
        while k <= of and self._mass(0, start + k) - base < share:
            k += 1
        return k

    def capacity_for(self, hit: float) -> int | None:
        """Smallest capacity (tokens, whole blocks) whose hit fraction reaches ``hit``:
        ``M = d[k-1] + 1`` blocks for the ``k`` hits needed (``d`` sorted), since a cache of
        ``M`` blocks hits exactly the touches with distance ``< M``. None: unreachable."""
        if isinstance(hit, bool) or not isinstance(hit, (int, float, np.floating)) \
                or not 0.0 <= hit <= 1.0:
            raise KvReuseError(f"hit must be a fraction in [0, 1], got {hit!r}")
        if not self.counted_tokens:
            return None
        k = self._needed(float(hit))
        if k == 0:
            return 0
        if k > self.distances.size:
            return None
        return (int(self.distances[k - 1]) + 1) * self.block_size

    def lower_tier_for(self, gpu_cache_tokens: float, share: float = 0.99) -> int | None:
        """Smallest exclusive lower tier (tokens) below a GPU cache of ``gpu_cache_tokens``
        serving ``share`` of the touches an unbounded tier would: those with distance
        ``>= M``; a tier of ``M2`` blocks serves ``M <= d < M + M2``. None: nothing to
        serve."""
        if not 0.0 < share <= 1.0:
            raise KvReuseError(f"share must be a fraction in (0, 1], got {share!r}")
        m = capacity_blocks(gpu_cache_tokens, self.block_size, "GPU cache size")
        start = self._below(self.distances, m)
        beyond = int(self.distances.size) - start
        if beyond == 0:
            return None
        unbounded = self._mass(0, int(self.distances.size)) - self._mass(0, start)
        k = max(1, min(beyond, self._needed(share * unbounded * (1 - 1e-12), start)))
        return (int(self.distances[start + k - 1]) + 1 - m) * self.block_size

    def curve(self) -> tuple[np.ndarray, np.ndarray]:
        """``(x, hit)``: at every capacity ``x`` (tokens) where the hit fraction rises, its
        value, which holds up to the next ``x`` (below ``x[0]`` nothing hits)."""
        if self.distances.size == 0 or math.isnan(self._mass(0, 0)):
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
        d, first = np.unique(self.distances, return_index=True)
        below = np.append(first[1:], self.distances.size)
        if self.cumulative is not None:
            return (d + 1) * self.block_size, np.asarray(self.cumulative[0])[below]
        return (d + 1) * self.block_size, below * (self._mass(0, 1) if below.size else 0.0)

    def hit_split(self, cache_tokens: float) -> dict[str, float] | None:
        """Hit fraction split by who supplied the hit: the same session or another."""
        if self.same_session is None or self.cross_session is None:
            return None
        return {"same_session": self._hits(1, cache_tokens),
                "cross_session": self._hits(2, cache_tokens)}

    def offloadable_split(self, gpu_cache_tokens: float,
                          lower_tier_tokens: float | None = None) -> dict[str, float] | None:
        """Offloadable fraction split by the session of the previous touch."""
        if self.same_session is None or self.cross_session is None:
            return None
        return {"same_session": self._offloaded(1, gpu_cache_tokens, lower_tier_tokens),
                "cross_session": self._offloaded(2, gpu_cache_tokens, lower_tier_tokens)}


def counted_from_block(stream: BlockStream, warmup_requests: int) -> int:
    """First block of the counted requests (requests are in order, so they are a suffix)."""
    return int(np.searchsorted(stream.request, warmup_requests, side="left"))


def _choose(name: str, value: str, known: tuple[str, ...]) -> str:
    if value not in known:
        raise KvReuseError(f"unknown {name} {value!r} (known: {', '.join(known)})")
    return value


def _profile(stream: BlockStream, first_request: int, dist: np.ndarray, reuse: np.ndarray,
             request: np.ndarray, prev_request: np.ndarray, denominator: str) -> LruProfile:
    """The profile of the counted touches, whatever their order: ``dist`` their distances
    (:data:`COLD`: never served), ``reuse`` whether their key was seen before, ``request``
    their request and ``prev_request`` that of their previous touch."""
    served = reuse & (dist != COLD)
    finite = dist[served]
    parts = [finite]
    if stream.has_sessions:
        session_now = stream.sessions[request[served]]
        is_same = (session_now == stream.sessions[prev_request[served]]) & (session_now >= 0)
        parts += [finite[is_same], finite[~is_same]]
    compulsory = int(np.count_nonzero(~reuse))
    unserved = int(np.count_nonzero(reuse & (dist == COLD)))
    counted_tokens = int(dist.size) * stream.block_size
    prompt = np.maximum(np.asarray(stream.prompt_tokens, dtype=np.int64),
                        np.diff(stream.request_starts) * stream.block_size)
    cumulative = rest = None
    denominator_tokens = None
    if denominator == "prompt":
        denominator_tokens = int(prompt[first_request:].sum())
    elif denominator == "per-request":
        # A block weighs its share of its request's prompt, over the counted requests.
        counted = prompt[first_request:]
        n = int(np.count_nonzero(counted))
        share = np.zeros(prompt.size, dtype=np.float64)
        if n:
            share[first_request:] = np.divide(stream.block_size, counted * n,
                                              where=counted > 0, out=share[first_request:])
        weight = share[request]
        w_served = weight[served]
        masks = [None]
        if stream.has_sessions:
            masks += [is_same, ~is_same]
        cums = []
        for mask in masks:
            d = finite if mask is None else finite[mask]
            w = w_served if mask is None else w_served[mask]
            order = np.argsort(d, kind="stable")
            cums.append(np.concatenate([[0.0], np.cumsum(w[order])]) if n else None)
        cumulative = tuple(cums)
        rest = (float(weight[~reuse].sum()) if n else math.nan,
                float(weight[reuse & (dist == COLD)].sum()) if n else math.nan)
    for part in parts:
        part.sort()
    return LruProfile(
        block_size=stream.block_size, counted_tokens=counted_tokens,
        compulsory_blocks=compulsory, distances=parts[0],
        same_session=parts[1] if len(parts) > 1 else None,
        cross_session=parts[2] if len(parts) > 1 else None,
        unserved_blocks=unserved, denominator_tokens=denominator_tokens,
        cumulative=cumulative, rest_shares=rest)


def lru_profile(stream: BlockStream, *, warmup_requests: int = 0, engine: str = "ideal",
                denominator: str = "blocks") -> LruProfile:
    """Stack distances of ``stream``, keeping the touches of requests from
    ``warmup_requests`` on: earlier requests fill the cache but are not counted.
    ``engine="vllm"``: as vLLM's prefix cache serves them (:func:`vllm_distances`)."""
    _choose("denominator", denominator, DENOMINATORS)
    start = counted_from_block(stream, warmup_requests)
    if _choose("engine", engine, ENGINES) == "vllm":
        dist, prev = vllm_distances(stream)
    else:
        dist, prev = sequence_stack_distances(stream.keys[touch_order(stream)])
    # The touch order only permutes blocks inside a request: touch time t belongs to request
    # stream.request[t], and the counted touches are the same suffix as the counted blocks.
    dist, prev = dist[start:], prev[start:]
    return _profile(stream, warmup_requests, dist, prev >= 0, stream.request[start:],
                    stream.request[np.maximum(prev, 0)], denominator)


def vllm_distances(stream: BlockStream) -> tuple[np.ndarray, np.ndarray]:
    """Per touch (the ideal model's tail-first touch order, :func:`touch_order`): the
    distance under which vLLM v1's prefix cache serves it, and its previous touch of the
    same key (-1: first touch). A cache of ``M = C // B`` blocks serves a touch iff its
    distance is ``< M``, as in the ideal model; :data:`COLD` marks those no size serves.

    A sequential replay, one request at a time (docs/vllm.md): the free-block queue is an
    LRU list of slots, each request appending its blocks tail first, so these are the ideal
    model's distances (same keys, same touch order) with four corrections:

    - the prefix is looked up and pinned on arrival, so a request's own touches do not push
      its blocks down: distances count up to the end of the previous request. Every touch
      before ``t`` in its request is of a block deeper in the prompt, whose previous touch
      (in a prefix-named stream) is older than ``t``'s: that is the distance in the
      sequence less the request's touches before ``t``;
    - the null block: ``num_blocks - 1`` slots hold KV, one more than the distance;
    - the partial tail, a slot without a key, goes back to the front of the queue: the next
      request's first allocation takes it, so it holds one slot of the cache at that
      request's arrival, one more than the distance there;
    - vLLM hits at most ``L - 1`` tokens: a prompt of whole blocks allocates its last block
      anew (never served), and the slot that block would have hit stays where it was, a slot
      without a key: that touch is unlinked from its previous one.
    """
    n, b = stream.num_blocks, stream.block_size
    starts = stream.request_starts.astype(np.intp)
    full = np.diff(starts)
    prompt = np.maximum(np.asarray(stream.prompt_tokens, dtype=np.int64), full * b)
    tail = prompt > full * b
    recomputed = (prompt == full * b) & (full > 0)
    keys = stream.keys[touch_order(stream)]
    prev = previous_touch(keys)
    unlinked = prev.copy()
    unlinked[starts[:-1][recomputed]] = -1  # the last block is its request's first touch
    dist = sequence_stack_distances(keys, unlinked)[0]
    del unlinked
    # The partial tail left by the last earlier request that allocated anything (every
    # non-empty prompt allocates at least one block: its tail or its recomputed block).
    number = np.arange(prompt.size, dtype=np.intp)
    last = np.maximum.accumulate(np.where(prompt > 0, number, -1))
    before = np.concatenate([[-1], last[:-1]]) if prompt.size else last
    shift = 1 + np.where(before >= 0, tail[np.maximum(before, 0)], False) + starts[:-1]
    request = stream.request
    finite = dist != COLD
    # Less the request's own touches before this one (t - start); clipped at 1 for a key
    # that repeats inside one request (no prefix-named stream has one).
    t = np.flatnonzero(finite)
    dist[t] = np.maximum(dist[t] + shift[request[t]] - t, 1)
    # vLLM stops at the first miss: a block serves only where its whole prefix does (a
    # no-op on prefix-named keys, where a prefix is never deeper than its extension). In
    # block order -- the touch order reversed -- a running maximum inside each request.
    never = n + 3  # above every finite distance
    flipped = np.minimum(dist[::-1], never)
    offset = (full.size - 1 - request[::-1]).astype(np.int64) * (never + 1)
    flipped += offset
    np.maximum.accumulate(flipped, out=flipped)
    flipped -= offset
    dist[(flipped == never)[::-1]] = COLD
    return dist, prev
