"""Replicas behind a router: ``N`` private tail-first LRU caches (docs/replicas.md).

Requests are routed in trace order; each replica's cache sees only the touches of the
requests routed to it, in trace order. Once every request has its replica, the hits are
those of ``N`` independent LRU caches, so they come from one stack-distance pass over the
touch stream partitioned by replica (each replica's keys made distinct, its touches
contiguous): all cache sizes at once, as for a single cache.

``round-robin``, ``session`` and ``random`` routing do not look at the caches, so the
partition is known up front. ``prefix`` routing does: it asks every replica how long a run
of the request's head blocks it holds. A replica's cache holds a key iff the key's last
touch there is among its ``M`` most recent distinct keys, i.e. iff the key's last-touch
stamp is at or above the replica's *threshold*, the ``M``-th largest live stamp (a live
stamp is some key's last touch). Routing a request there re-stamps its keys: a key it
held gains nothing, a key it did not hold adds one live stamp above the threshold, so the
threshold only moves forward, over stamps kept in one boolean array per replica. Per
request that is a handful of numpy operations on its blocks (no loop per block), and the
request's hits are counted from the same state as it is applied (:func:`_request_hits`);
the tier figures, which need every touch's distance, take the partitioned pass over the
routing it made.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from hashlib import blake2b

import numpy as np

from ..errors import KvReuseError
from ..metrics import ROUTINGS
from .blocks import BlockStream
from .lru import COLD, counted_from_block, previous_touch, sequence_stack_distances, touch_order

NO_SESSIONS_ROUTING = ("session routing needs session ids, and the trace carries none "
                       "(aiperf, chat JSONL with session_id and Qwen-Bailian traces have them)")


class RoutingError(KvReuseError):
    """A routing policy, replica count or load slack the router cannot take."""


def check_routing(routing: object) -> str:
    if not isinstance(routing, str) or routing.strip().lower() not in ROUTINGS:
        raise RoutingError(f"unknown routing {routing!r} (known: {', '.join(ROUTINGS)})")
    return routing.strip().lower()


def check_replicas(replicas: object) -> int:
    if isinstance(replicas, bool) or not isinstance(replicas, (int, np.integer)) \
            or replicas < 1:
        raise RoutingError(f"replicas must be a positive integer, got {replicas!r}")
    return int(replicas)


def check_load_slack(load_slack: object) -> float:
    if isinstance(load_slack, bool) or not isinstance(load_slack, (int, float, np.floating,
                                                                   np.integer)) \
            or not math.isfinite(load_slack) or load_slack < 0:
        raise RoutingError(f"load_slack must be a non-negative number, got {load_slack!r}")
    return float(load_slack)


def load_bounds(n_req: int, replicas: int, load_slack: float) -> list[int]:
    """Most requests a replica may hold once request ``i`` (from 0) is routed, for every
    ``i``: ``ceil((1 + load_slack) * (i + 1) / N)`` (IEEE double arithmetic, the same in
    numpy as in plain Python)."""
    i = np.arange(1, n_req + 1, dtype=np.float64)
    return np.ceil((1.0 + load_slack) * i / replicas).astype(np.int64).tolist()


def session_replicas(stream: BlockStream, replicas: int) -> np.ndarray:
    """Replica of every request by a stable hash of its session (blake2b of the session
    number as text: the same on every run and platform); a request without a session
    goes round-robin by its index."""
    if not stream.has_sessions:
        raise RoutingError(NO_SESSIONS_ROUTING)
    sessions = np.asarray(stream.sessions, dtype=np.int64)
    known, inverse = np.unique(sessions, return_inverse=True)
    # One digest per session, not per request or block.
    hashed = np.array([int.from_bytes(blake2b(str(int(s)).encode(), digest_size=8).digest(),
                                      "little") % replicas for s in known.tolist()],
                      dtype=np.int64)
    out = hashed[inverse.reshape(-1)]
    unknown = sessions < 0
    out[unknown] = np.flatnonzero(unknown) % replicas
    return out


def prefix_keyed(stream: BlockStream) -> bool:
    """Whether every key has one parent (the key before it in its request, or none at
    the head) wherever it occurs, as chained prefix keys always do. Then on any replica a
    parent's last touch is later than its child's (tail first, every touch of the child
    comes with a touch of the parent just after): a cache holds a request's blocks as one
    run from the head, with last-touch stamps falling along it."""
    keys = np.asarray(stream.keys)
    if keys.size == 0:
        return True
    parent = np.empty(keys.size, dtype=np.int64)
    parent[0] = -1
    parent[1:] = keys[:-1]
    parent[stream.request_starts[:-1][np.diff(stream.request_starts) > 0]] = -1
    first_parent = np.full(int(keys.max()) + 1, -2, dtype=np.int64)
    first_parent[keys] = parent
    return bool((first_parent[keys] == parent).all())


def prefix_replicas(stream: BlockStream, replicas: int, cache_blocks: int,
                    load_slack: float = 0.25, *, warmup_requests: int = 0
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Replica of every request under load-bounded prefix routing with caches of
    ``cache_blocks`` blocks, and the hit touches of the counted requests per replica.

    Among the replicas under the load bound, the request goes to the one holding the
    longest run of its blocks from the head; ties to the fewest requests routed so far,
    then the lowest index. The hits are counted as the request is routed (see
    :func:`_request_hits`), so no second pass over the blocks is needed."""
    n_req = stream.num_requests
    out = np.zeros(n_req, dtype=np.int64)
    hits = np.zeros(replicas, dtype=np.int64)
    if n_req == 0 or stream.num_blocks == 0 or cache_blocks == 0:
        if replicas > 1:
            out = _load_only(n_req, replicas, load_slack)
        return out, hits
    keys = np.asarray(stream.keys)
    starts = stream.request_starts.tolist()
    n = keys.size
    stamp_dtype = np.int32 if n < 2**31 - 1 else np.int64
    # last[k, j]: stamp of key k's last touch on replica j, from 1 (0: never, and
    # alive[0] is never set, so killing a never-touched key's stamp is harmless). One
    # gather of the request's rows gives every replica's view at once. The columns are
    # padded to a multiple of 8 (never held: their threshold is out of reach), so a row
    # of held flags is whole 8-byte words.
    width = -(-replicas // 8) * 8
    last = np.zeros((int(keys.max()) + 1, width), dtype=stamp_dtype)
    thr = np.full(width, np.iinfo(stamp_dtype).max, dtype=stamp_dtype)
    thr[:replicas] = 1
    low = [1] * replicas  # thr, as ints
    live_above = [0] * replicas  # live stamps >= thr, per replica
    clock = [1] * replicas
    alive = [np.zeros(1024, dtype=bool) for _ in range(replicas)]
    routed = [0] * replicas
    hit = [0] * replicas
    everyone = range(replicas)
    # Chained prefix keys (every trace kvreuse reads) take the short path: the run is the
    # number of held blocks and the oldest held block is the run's last.
    keyed = prefix_keyed(stream)
    # A key repeated inside one request keeps the stamp of its last touch (tail first: its
    # first block in stream order).
    req = np.asarray(stream.request)
    if keyed:
        first_here = np.ones(n, dtype=bool)
        repeats = [False] * n_req
    else:
        prev = previous_touch(keys)
        first_here = (prev < 0) | (req[np.maximum(prev, 0)] != req)
        repeats = np.bincount(req[~first_here], minlength=n_req).astype(bool).tolist()
    longest = int(np.diff(np.asarray(starts)).max())
    down = np.arange(longest - 1, -1, -1, dtype=stamp_dtype)
    stamp_buf = np.empty(longest, dtype=stamp_dtype)
    # held[L] stays False, so the first miss of a replica holding every block is L.
    held_buf = np.zeros((longest + 1, width), dtype=bool)
    # Every replica's threshold once per block row: one flat comparison per request.
    thr_rows = np.tile(thr, (longest, 1))
    thr_flat = thr_rows.reshape(-1)
    flags = np.zeros(longest * width, dtype=bool)
    bounds = load_bounds(n_req, replicas, load_slack)
    for i in range(n_req):
        s, e = starts[i], starts[i + 1]
        length = e - s
        bound = bounds[i]
        if not length:
            run = [0] * replicas
        else:
            kb = keys[s:e]
            seen = np.take(last, kb, axis=0)
            if keyed:
                held_flat = flags[:length * width]
                np.greater_equal(seen.reshape(-1), thr_flat[:length * width], out=held_flat)
                run = _column_counts(held_flat, length, width)
            else:
                held = held_buf[:length + 1]
                held[length] = False
                np.greater_equal(seen, thr, out=held[:length])
                run = held.argmin(axis=0).tolist()
        # Longest run, then fewest routed, then lowest index (a loop over the replicas).
        j, best_run, best_routed = -1, -1, 0
        for r in everyone:
            if routed[r] < bound and (run[r] > best_run or (
                    run[r] == best_run and routed[r] < best_routed)):
                j, best_run, best_routed = r, run[r], routed[r]
        out[i] = j
        routed[j] += 1
        if not length:
            continue
        t0 = clock[j]
        a = alive[j]
        if t0 + length > a.size:
            grown = np.zeros(max(2 * a.size, t0 + length), dtype=bool)
            grown[:a.size] = a
            a = alive[j] = grown
        old = seen[:, j]
        top = low[j]
        counted = i >= warmup_requests
        if keyed:
            n_held = best_run
            if counted and n_held:
                # The oldest held block goes first, once the `length - n_held` new ones
                # leave it fewer than that many live stamps below it.
                slack = cache_blocks - live_above[j]
                new = length - n_held
                if new <= slack or new <= slack + _live_below(a, top, int(old[n_held - 1]),
                                                              t0, live_above[j]):
                    hit[j] += n_held
                else:
                    hit[j] += _request_hits(a, top, t0, live_above[j], cache_blocks,
                                            old[::-1], np.arange(length) >= new, n_held)
            a[old[:n_held]] = False
        elif not repeats[i]:
            was_held = held[:length, j]
            n_held = int(np.count_nonzero(was_held))
            if counted and n_held:
                hit[j] += n_held if n_held == length else _request_hits(
                    a, top, t0, live_above[j], cache_blocks, old[::-1], was_held[::-1],
                    n_held)
            a[old] = False
        else:
            was_held = held[:length, j]
            if counted:
                hit[j] += _repeating_request_hits(a, top, t0, live_above[j], cache_blocks,
                                                  old[::-1], was_held[::-1], kb[::-1])
            sel = first_here[s:e]
            ks = kb[sel]
            stamps = (length - 1 - np.flatnonzero(sel)) + t0
            a[old[sel]] = False
            a[stamps] = True
            last[ks, j] = stamps
            n_held = int(np.count_nonzero(was_held[sel]))
            length_distinct = int(ks.size)
        if not repeats[i]:
            a[t0:t0 + length] = True
            last[kb, j] = np.add(down[longest - length:], t0, out=stamp_buf[:length])
            length_distinct = length
        clock[j] = t0 + length
        # Keys it held keep their place above the threshold; the others add one each.
        live_above[j] += length_distinct - n_held
        excess = live_above[j] - cache_blocks
        if excess > 0:
            low[j] = thr[j] = _live_position(a, top, excess, t0 + length,
                                                (t0 + length - top) / live_above[j])
            thr_rows[:, j] = low[j]
            live_above[j] = cache_blocks
    hits[:] = hit
    return out, hits


def _live_below(alive: np.ndarray, thr: int, stamp: int, clock: int,
                live_above: int) -> int:
    """Live stamps in ``[thr, stamp)`` (``stamp`` live), counting whichever side of it is
    shorter: a recent stamp is cheap to rank from the top."""
    if stamp - thr <= clock - stamp:
        return int(np.count_nonzero(alive[thr:stamp]))
    return live_above - int(np.count_nonzero(alive[stamp:clock]))


def _column_counts(flags: np.ndarray, rows: int, width: int) -> list[int]:
    """True flags per column of a ``rows x width`` bool array (``width`` a multiple of 8),
    adding whole rows as 8-byte words: each byte of the sum counts one column, exact up to
    255 rows at a time."""
    words = flags.view("<u8").reshape(rows, width // 8)
    if width == 8:
        # One word per row: a sum of up to 255 rows is a Python int whose bytes are the
        # counts.
        words = words.reshape(-1)
        counts = list(int(np.add.reduce(words[:255])).to_bytes(8, "little"))
        for start in range(255, rows, 255):
            more = int(np.add.reduce(words[start:start + 255])).to_bytes(8, "little")
            counts = [c + m for c, m in zip(counts, more, strict=True)]
        return counts
    if rows <= 255:
        return np.add.reduce(words, axis=0).astype("<u8", copy=False).view(np.uint8).tolist()
    total = np.zeros(width, dtype=np.int64)
    for start in range(0, rows, 255):
        total += np.add.reduce(words[start:start + 255], axis=0).astype(
            "<u8", copy=False).view(np.uint8)
    return total.tolist()


def _repeating_request_hits(alive: np.ndarray, thr: int, clock: int, live_above: int,
                            cache_blocks: int, old: np.ndarray, held: np.ndarray,
                            keys: np.ndarray) -> int:
    """:func:`_request_hits` of a request that touches a key twice (``keys`` tail first):
    a repeat's distance is the distinct keys touched in between, all inside the request;
    first touches are counted as in any request, among the first touches."""
    local = sequence_stack_distances(keys)[0]
    fresh = local == COLD
    repeat_hits = int(np.count_nonzero(local[~fresh] < cache_blocks))
    old, held = old[fresh], held[fresh]
    n_held = int(np.count_nonzero(held))
    if not n_held:
        return repeat_hits
    return repeat_hits + _request_hits(alive, thr, clock, live_above, cache_blocks, old,
                                       held, n_held)


def _request_hits(alive: np.ndarray, thr: int, clock: int, live_above: int,
                  cache_blocks: int, old: np.ndarray, held: np.ndarray, n_held: int) -> int:
    """Hits of one request's touches (tail first, every key once) on a replica, from its
    state before: ``old`` the keys' stamps there, ``held`` whether it holds them.

    A touch of key ``k`` whose last touch here was at stamp ``s`` has stack distance
    ``rank + e``: ``rank`` live stamps above ``s``, plus ``e`` keys this request touched
    before it whose stamp was below ``s`` (or that were new). With ``below`` live stamps in
    ``[thr, s)`` and ``slack = M - live_above`` free slots, it hits iff
    ``e <= below + slack``. A key the cache does not hold misses; ``e`` is below the
    request's length, so only held keys among the lowest ``L - 1 - slack`` live stamps
    can miss, and only theirs need ``below`` and ``e``.
    """
    slack = cache_blocks - live_above
    need = old.size - 1 - slack
    if need <= 0:
        return n_held
    # Most requests end here: their oldest held key has `need` live stamps below it.
    oldest = int(np.min(old, where=held, initial=clock))
    if _live_below(alive, thr, oldest, clock, live_above) >= need:
        return n_held
    p = _live_position(alive, thr, need, clock, (clock - thr) / max(live_above, 1))
    risk = np.flatnonzero(held & (old < p))
    if risk.size == 0:
        return n_held
    s = old[risk].astype(np.int64)
    below = np.cumsum(alive[thr:p])[s - thr] - 1
    # Touched before it and not held (new, or evicted): the held ones come just below.
    earlier_new = risk - (np.cumsum(held)[risk] - 1)
    if risk.size == 1 or bool((s[1:] > s[:-1]).all()):
        # The usual case: the prefix was last touched tail first too, so stamps rise.
        older = np.arange(risk.size)
    else:
        older = np.tril(s[None, :] < s[:, None], -1).sum(axis=1)
    missed = int(np.count_nonzero(earlier_new + older > below + slack))
    return n_held - missed


def _live_position(alive: np.ndarray, start: int, skip: int, end: int,
                   spread: float) -> int:
    """Position of the live stamp with ``skip`` live stamps between ``start`` and it (or
    ``end`` when there are not that many). ``spread``: positions per live stamp there, so
    the first window usually suffices; windows double, so a call scans O(distance)."""
    pos, width = start, int(skip * spread * 1.25) + 64
    while pos < end:
        live = alive[pos:min(pos + width, end)].nonzero()[0]
        if live.size > skip:
            return pos + int(live[skip])
        skip -= live.size
        pos += width
        width *= 2
    return end


def _load_only(n_req: int, replicas: int, load_slack: float) -> np.ndarray:
    """Prefix routing when no cache holds anything: every run is 0, so fewest routed
    first, then the lowest index (a loop per request)."""
    routed = [0] * replicas
    out = np.zeros(n_req, dtype=np.int64)
    for i, bound in enumerate(load_bounds(n_req, replicas, load_slack)):
        j = min((r for r in range(replicas) if routed[r] < bound), key=routed.__getitem__)
        out[i] = j
        routed[j] += 1
    return out


def route(stream: BlockStream, replicas: int, routing: str, *, cache_blocks: int = 0,
          seed: int = 0, load_slack: float = 0.25) -> np.ndarray:
    """Replica (0..N-1) of every request under ``routing``; ``cache_blocks`` is the cache
    size per replica, which only ``prefix`` routing reads."""
    replicas = check_replicas(replicas)
    routing = check_routing(routing)
    load_slack = check_load_slack(load_slack)
    n = stream.num_requests
    if routing == "session":
        return session_replicas(stream, replicas)  # refuses a trace without sessions
    if replicas == 1:
        return np.zeros(n, dtype=np.int64)
    if routing == "round-robin":
        return np.arange(n, dtype=np.int64) % replicas
    if routing == "random":
        return np.random.default_rng(seed).integers(0, replicas, size=n, dtype=np.int64)
    return prefix_replicas(stream, replicas, cache_blocks, load_slack)[0]


@dataclass(frozen=True, eq=False)
class ReplicaTouches:
    """Every counted touch, in trace (touch) order: the replica it went to and its stack
    distance in that replica's cache (:data:`~pytest_kvreuse.core.lru.COLD` when the
    replica never saw the key). ``requests`` counts the requests routed to each
    replica."""

    replicas: int
    routing: str
    block_size: int
    counted_tokens: int
    replica: np.ndarray
    distance: np.ndarray
    requests: np.ndarray

    def hits(self, cache_blocks: int) -> np.ndarray:
        """Hit touches per replica with ``cache_blocks`` blocks each."""
        return np.bincount(self.replica[self.distance < cache_blocks],
                           minlength=self.replicas)

    def touches(self) -> np.ndarray:
        """Counted touches per replica."""
        return np.bincount(self.replica, minlength=self.replicas)


def replica_touches(stream: BlockStream, assignment: np.ndarray, replicas: int,
                    routing: str, *, warmup_requests: int = 0) -> ReplicaTouches:
    """Stack distances of every touch in its replica's cache, from one pass: the touch
    stream sorted by replica (stable, so each replica's touches stay in trace order) with
    every key made distinct per replica, so no replica's touches see another's."""
    order = touch_order(stream)
    touch_keys = np.asarray(stream.keys)[order].astype(np.int64)
    # Touch time t belongs to request stream.request[t] (the order permutes inside one).
    rep = np.asarray(assignment, dtype=np.int64)[np.asarray(stream.request)]
    by_replica = np.argsort(rep, kind="stable")
    dist = np.empty(touch_keys.size, dtype=np.int64)
    dist[by_replica] = sequence_stack_distances(
        touch_keys[by_replica] * replicas + rep[by_replica])[0]
    start = counted_from_block(stream, warmup_requests)
    small = np.int16 if replicas < 2**15 else np.int64
    return ReplicaTouches(
        replicas=replicas, routing=routing, block_size=stream.block_size,
        counted_tokens=(touch_keys.size - start) * stream.block_size,
        replica=rep[start:].astype(small), distance=dist[start:],
        requests=np.bincount(assignment, minlength=replicas).astype(np.int64))


@dataclass(frozen=True)
class Routed:
    """One routed run: ``requests`` and counted ``touches`` and ``hits`` (blocks) per
    replica, over ``counted_tokens`` (all replicas' counted full-block tokens)."""

    replicas: int
    routing: str
    cache_tokens: float
    block_size: int
    counted_tokens: int
    requests: tuple[int, ...]
    touches: tuple[int, ...]
    hits: tuple[int, ...]

    @property
    def hit_fraction(self) -> float:
        """Hit tokens over all replicas as a share of all counted tokens."""
        if not self.counted_tokens:
            return math.nan
        return sum(self.hits) * self.block_size / self.counted_tokens

    @property
    def imbalance(self) -> float:
        """Max / mean requests per replica (1 is perfectly even)."""
        total = sum(self.requests)
        return max(self.requests) * self.replicas / total if total else math.nan

    @property
    def replica_hit_fractions(self) -> tuple[float, ...]:
        """Each replica's hits as a share of its own counted touches."""
        return tuple(h / t if t else math.nan
                     for h, t in zip(self.hits, self.touches, strict=True))


def tier_counts(t: ReplicaTouches, pooled_distance: np.ndarray, cache_blocks: int,
                shared_blocks: int, private_blocks: int) -> dict[str, int]:
    """Counted touches by outcome with a write-through lower tier: one tier of
    ``shared_blocks`` seeing every replica's touches in trace order (so a touch's
    ``pooled_distance``, its stack distance in the whole touch stream, decides), or one of
    ``private_blocks`` per replica (the replica's own distance)."""
    gpu = t.distance < cache_blocks
    miss = ~gpu
    shared = miss & (pooled_distance < shared_blocks)
    private = miss & (t.distance < private_blocks)
    total = int(t.distance.size)
    return {"gpu_hit": int(np.count_nonzero(gpu)),
            "shared_tier_hit": int(np.count_nonzero(shared)),
            "shared_miss": total - int(np.count_nonzero(gpu | shared)),
            "private_tier_hit": int(np.count_nonzero(private)),
            "private_miss": total - int(np.count_nonzero(gpu | private)),
            "total": total}


__all__ = ["COLD", "ROUTINGS", "ReplicaTouches", "Routed", "RoutingError", "load_bounds",
           "prefix_replicas", "replica_touches", "route", "session_replicas",
           "tier_counts"]
