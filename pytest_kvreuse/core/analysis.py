"""ReuseAnalysis: the figures of one trace, computed from its BlockStream."""

from __future__ import annotations

import math
import numbers
import time
from functools import cached_property

import numpy as np

from ..errors import KvReuseError
from ..metrics import METRICS, NO_SESSIONS, NO_TIMESTAMPS
from ..models import KvGeometry
from ..sizes import ByteSize, resolve_size
from .blocks import BlockStream
from .causes import (
    BreakCause,
    CategoryRow,
    PromptSource,
    SharedPrefix,
    TurnBreaks,
    category_breakdown,
    explain_breaks,
    prefix_texts,
    previous_occurrence,
    top_prefixes,
    turn_breaks,
)
from .intervals import ReusePairs, interval_ccdf, reuse_intervals_and_pairs, tokens_beyond
from .lru import (
    LruProfile,
    capacity_blocks,
    counted_from_block,
    lru_profile,
    sequence_stack_distances,
    touch_order,
)
from .opt import OptProfile, opt_profile
from .policies import policy_hits
from .replicas import (
    ReplicaTouches,
    Routed,
    check_load_slack,
    check_replicas,
    check_routing,
    prefix_replicas,
    replica_touches,
    route,
    tier_counts,
)
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

    **Engine and denominator.** ``engine="vllm"`` gives the LRU figures as vLLM v1's prefix
    cache produces them (docs/vllm.md); ``denominator`` says what the LRU fractions divide:
    ``"blocks"`` (``counted_tokens``), ``"prompt"`` (``counted_prompt_tokens``, as vLLM's
    own hit rate) or ``"per-request"`` (the mean over the counted requests of each one's
    share of its own prompt). The other figures always divide ``counted_tokens``.

    **Reuse times** (docs/times.md) use the pairs that the interval sort finds
    anyway (:attr:`pairs`): no second pass over the blocks. Without timestamps they are
    undefined (None, NaN for fractions), never an error; :attr:`times_reason` says why.

    **Other eviction policies** (libCacheSim, the extra ``[policies]``): block-level,
    :meth:`policy_hit_fraction`.

    When nothing is counted (no full block) every fraction is undefined: NaN here, ``None``
    in :meth:`to_dict`.
    """

    def __init__(self, stream: BlockStream, *, params: dict | None = None,
                 timings: dict | None = None, warmup: float = 0.0, engine: str = "ideal",
                 denominator: str = "blocks", kv: KvGeometry | None = None,
                 reuse: tuple[np.ndarray, int, ReusePairs] | None = None) -> None:
        """``reuse``: what :func:`reuse_intervals_and_pairs` returns for this stream and
        warm-up, when that pass ran elsewhere (a Dask cluster, pytest_kvreuse/cluster.py)."""
        self.stream = stream
        self.engine = engine
        self.denominator = denominator
        # The served model's KV bytes: what a size in bytes is in tokens (None: no model).
        self.kv = kv
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
        self._routed: dict[tuple, Routed] = {}
        self._replica_touches: dict[tuple, ReplicaTouches] = {}
        # Recovers prompts of a text trace (set by analyze()): the text of shared prefixes
        # and of departures. None: hash ids, or a pipe whose bytes are gone.
        self.prompts: PromptSource | None = None

    @property
    def block_size(self) -> int:
        return self.stream.block_size

    @property
    def bytes_per_token(self) -> int | None:
        """KV bytes per token of the served model (None when no model is known)."""
        return None if self.kv is None else self.kv.bytes_per_token

    def tokens(self, size: object, what: str = "cache size") -> float:
        """A cache size in tokens: numbers as they are, text as the user writes it
        (``"345,792"``, ``"64GiB"``: bytes need the model, :attr:`kv`)."""
        if isinstance(size, (str, ByteSize)):
            return resolve_size(what, size, self.bytes_per_token, self.block_size)
        return size  # type: ignore[return-value]

    def size_bytes(self, tokens: float | None) -> int | None:
        """What ``tokens`` of cache hold in bytes for the served model (None: no model)."""
        if tokens is None or self.kv is None or not math.isfinite(tokens):
            return None
        return int(tokens) * self.kv.bytes_per_token

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
    def prompt_tokens(self) -> int:
        """All prompt tokens of all requests, partial tails included (vLLM's denominator)."""
        return int(np.asarray(self.stream.prompt_tokens, dtype=np.int64).sum())

    @property
    def counted_prompt_tokens(self) -> int:
        """Prompt tokens of the counted requests, partial tails included."""
        prompts = np.asarray(self.stream.prompt_tokens, dtype=np.int64)
        return int(prompts[self.warmup_requests:].sum())

    @property
    def reuse_count(self) -> int:
        return int(self.intervals.size)

    @property
    def _fraction_tokens(self) -> int:
        # The denominator of the fractions, in the stream's own blocks (a sample's are
        # fewer than counted_tokens: docs/sampling.md).
        return self.counted_tokens

    def _share(self, tokens: int) -> float:
        return tokens / self._fraction_tokens if self._fraction_tokens else math.nan

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
        gpu_cache_tokens = self.tokens(gpu_cache_tokens)
        capacity_blocks(gpu_cache_tokens, self.block_size)  # refuse a negative or NaN size
        return self._share(tokens_beyond(self.intervals, gpu_cache_tokens, self.block_size))

    def ccdf(self) -> tuple[np.ndarray, np.ndarray]:
        """``(x, F(x))``: at every distinct interval x, the share of tokens reused > x apart."""
        return interval_ccdf(self.intervals, self.block_size, self._fraction_tokens)

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
        profile = lru_profile(self.stream, warmup_requests=self.warmup_requests,
                              engine=self.engine, denominator=self.denominator)
        self.timings["lru_s"] = time.perf_counter() - start
        return profile

    def lru_hit_fraction(self, cache_tokens: float) -> float:
        """Share of tokens an LRU cache of ``cache_tokens`` tokens serves: touches whose
        stack distance is below ``M = floor(cache_tokens / block_size)``."""
        return self.lru.hit_fraction(self.tokens(cache_tokens))

    def lru_hit_tokens(self, cache_tokens: float) -> int:
        """Tokens an LRU cache of ``cache_tokens`` tokens serves: hit blocks * block size,
        the numerator of every hit fraction (vLLM's hit tokens with ``engine="vllm"``)."""
        return self.lru.hit_blocks(self.tokens(cache_tokens)) * self.block_size

    def lru_hit_prompt_fraction(self, cache_tokens: float) -> float:
        """:meth:`lru_hit_tokens` over all prompt tokens of the counted requests, partial
        tails included: with ``engine="vllm"``, the prefix cache hit rate vLLM reports."""
        prompts = self.counted_prompt_tokens
        return self.lru_hit_tokens(cache_tokens) / prompts if prompts else math.nan

    def lru_offloadable_fraction(self, gpu_cache_tokens: float,
                                 lower_tier_tokens: float | None = None) -> float:
        """Share of tokens seen before that an LRU GPU cache of ``gpu_cache_tokens`` no
        longer holds (distance ``>= M``). With ``lower_tier_tokens`` (an exclusive CPU/SSD
        tier below it), only those the lower tier still holds:
        ``M <= distance < M + floor(lower_tier_tokens / block_size)``.

        ``lru_hit_fraction(C) + lru_offloadable_fraction(C) + compulsory_fraction == 1``.
        """
        return self.lru.offloadable_fraction(self.tokens(gpu_cache_tokens),
                                             self._lower(lower_tier_tokens))

    def _lower(self, lower_tier_tokens: object) -> float | None:
        return None if lower_tier_tokens is None else self.tokens(lower_tier_tokens,
                                                                   "lower tier size")

    def lru_capacity_for(self, hit: float) -> int | None:
        """The smallest LRU cache, in tokens (whole blocks), whose hit fraction reaches
        ``hit``; None when no cache does (``hit`` above ``1 - compulsory_fraction``). Bytes
        for the served model: :meth:`size_bytes`."""
        return self.lru.capacity_for(hit)

    def lru_capacity_reachable(self, share: float) -> int | None:
        """The smallest LRU cache (tokens) reaching ``share`` of the reachable hit rate,
        the hit of an unbounded cache (``1 - compulsory_fraction``); None when nothing is
        counted."""
        if not self.counted_tokens:
            return None
        return self.lru_capacity_for(share * (1.0 - self.compulsory_fraction))

    def lru_lower_tier_for(self, gpu_cache_tokens: object, share: float = 0.99) -> int | None:
        """The smallest lower tier, in tokens, below an LRU GPU cache of
        ``gpu_cache_tokens`` that serves ``share`` of what an unbounded lower tier would
        (beyond it, more tier buys at most ``1 - share`` of that); None when nothing is
        left to serve."""
        return self.lru.lower_tier_for(self.tokens(gpu_cache_tokens), share)

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
        return self.lru.hit_split(self.tokens(cache_tokens))

    def lru_offloadable_split(self, gpu_cache_tokens: float,
                              lower_tier_tokens: float | None = None,
                              ) -> dict[str, float] | None:
        """:meth:`lru_offloadable_fraction` split like :meth:`lru_hit_split`."""
        return self.lru.offloadable_split(self.tokens(gpu_cache_tokens),
                                          self._lower(lower_tier_tokens))

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
        return self.opt.hit_fraction(self.tokens(cache_tokens))

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
        if times is None or times.size == 0 or not self._fraction_tokens:
            return np.zeros(0, dtype=np.float64), np.zeros(0, dtype=np.float64)
        t, first = np.unique(times, return_index=True)
        above = times.size - np.append(first[1:], times.size)
        return t, above * self.block_size / self._fraction_tokens

    # -- other eviction policies (libCacheSim) ------------------------------------------

    def policy_hit_fraction(self, policy: str, cache_tokens: float) -> float:
        """Share of tokens libCacheSim's ``policy`` (``"arc"``, ``"s3fifo"``, ...) with
        ``cache_tokens`` tokens serves on the tail-first touch stream. Block-level: it may
        keep a block whose prefix it evicted, which a prefix cache cannot use. Needs
        ``pip install "pytest-kvreuse[policies]"``."""
        cache_tokens = self.tokens(cache_tokens)
        m = capacity_blocks(cache_tokens, self.block_size, "cache size")
        key = (str(policy).lower(), m)
        if key not in self._policy_hits:
            start = time.perf_counter()
            self._policy_hits[key] = policy_hits(self.stream, policy, cache_tokens,
                                                 warmup_requests=self.warmup_requests)
            self.timings[f"policy_{key[0]}_s"] = (self.timings.get(f"policy_{key[0]}_s", 0.0)
                                                  + time.perf_counter() - start)
        return self._share(self._policy_hits[key] * self.block_size)

    # -- replicas behind a router (docs/replicas.md) ------------------------------------

    def routed(self, cache_tokens: float, *, replicas: int, routing: str = "round-robin",
               seed: int = 0, load_slack: float = 0.25) -> Routed:
        """``replicas`` replicas, each with its own tail-first LRU cache of
        ``cache_tokens`` tokens, behind a router: requests, counted touches and hits per
        replica, the hit fraction and the load imbalance. ``routing``: ``round-robin``,
        ``prefix`` (the replica holding the longest head run of the request among those
        under ``ceil((1 + load_slack) * (i + 1) / N)`` requests), ``session`` (a stable
        hash of the session; the trace must carry sessions) or ``random`` (``seed``)."""
        cache_tokens = self.tokens(cache_tokens)
        m = capacity_blocks(cache_tokens, self.block_size, "GPU cache size")
        n, routing = check_replicas(replicas), check_routing(routing)
        slack = check_load_slack(load_slack)
        key = (n, routing, int(seed), slack, m)
        if key not in self._routed:
            start = time.perf_counter()
            if routing == "prefix" and n > 1:
                assignment, hits = prefix_replicas(self.stream, n, m, slack,
                                                   warmup_requests=self.warmup_requests)
            else:
                t = self._touches(n, routing, int(seed), slack, m)
                assignment, hits = None, t.hits(m)
            self._routed[key] = self._routed_result(n, routing, cache_tokens, assignment,
                                                    hits, key)
            self.timings["routed_s"] = (self.timings.get("routed_s", 0.0)
                                        + time.perf_counter() - start)
        return self._routed[key]

    def routed_hit_fraction(self, cache_tokens: float, *, replicas: int,
                            routing: str = "round-robin", seed: int = 0,
                            load_slack: float = 0.25) -> float:
        """Share of tokens the replicas' caches hit, all replicas together (see
        :meth:`routed`)."""
        return self.routed(cache_tokens, replicas=replicas, routing=routing, seed=seed,
                           load_slack=load_slack).hit_fraction

    def routed_tier_fractions(self, cache_tokens: float, lower_tier_tokens: float, *,
                              replicas: int, routing: str = "round-robin", seed: int = 0,
                              load_slack: float = 0.25) -> dict[str, float]:
        """With a write-through lower tier of ``lower_tier_tokens`` shared by all replicas
        (every touch also goes to it, in trace order): the GPU hit, shared-tier hit and
        miss shares (they add up to 1); and beside them the same with a private tier of
        ``lower_tier_tokens // replicas`` per replica (``private_tier_hit``,
        ``private_miss``)."""
        cache_tokens = self.tokens(cache_tokens)
        lower_tier_tokens = self.tokens(lower_tier_tokens)
        m = capacity_blocks(cache_tokens, self.block_size, "GPU cache size")
        shared = capacity_blocks(lower_tier_tokens, self.block_size, "lower tier size")
        n, routing = check_replicas(replicas), check_routing(routing)
        slack = check_load_slack(load_slack)
        private = shared if math.isinf(lower_tier_tokens) else \
            int(lower_tier_tokens) // n // self.block_size
        pooled = self._pooled_distance[self._counted_from:]
        counts = tier_counts(self._touches(n, routing, int(seed), slack, m), pooled, m,
                             shared, private)
        total = counts.pop("total")
        return {k: v / total if total else math.nan for k, v in counts.items()}

    def _touches(self, n: int, routing: str, seed: int, slack: float,
                 m: int) -> ReplicaTouches:
        """Every counted touch's replica and distances; the partition depends on the cache
        size only under prefix routing."""
        key = (n, routing, seed, slack, m if routing == "prefix" and n > 1 else None)
        if key not in self._replica_touches:
            assignment = route(self.stream, n, routing, cache_blocks=m, seed=seed,
                               load_slack=slack)
            self._replica_touches[key] = replica_touches(
                self.stream, assignment, n, routing, warmup_requests=self.warmup_requests)
        return self._replica_touches[key]

    @cached_property
    def _pooled_distance(self) -> np.ndarray:
        # Every touch's stack distance in one cache fed the whole stream: the shared tier.
        return sequence_stack_distances(self.stream.keys[touch_order(self.stream)])[0]

    def _routed_result(self, n: int, routing: str, cache_tokens: float,
                       assignment: np.ndarray | None, hits: np.ndarray,
                       key: tuple) -> Routed:
        if assignment is None:
            t = self._replica_touches[(*key[:4], None)]
            requests, touches = t.requests, t.touches()
        else:
            requests = np.bincount(assignment, minlength=n)
            blocks = np.diff(self.stream.request_starts)[self.warmup_requests:]
            touches = np.bincount(assignment[self.warmup_requests:], weights=blocks,
                                  minlength=n)
        return Routed(replicas=n, routing=routing, cache_tokens=cache_tokens,
                      block_size=self.block_size, counted_tokens=self.counted_tokens,
                      requests=tuple(int(x) for x in requests),
                      touches=tuple(int(x) for x in touches),
                      hits=tuple(int(x) for x in hits))

    # -- where reuse comes from, where it breaks (docs/causes.md) -----------------------

    @cached_property
    def _previous(self) -> np.ndarray:
        return previous_occurrence(self.stream.keys)

    def top_prefixes(self, n: int = 10, *, text: bool = True) -> list[SharedPrefix]:
        """The ``n`` shared prefixes (trie nodes compressed along unary paths) carrying
        the most reused tokens; on a text trace with ``text``, each with its first 80
        characters, decoded."""
        found = top_prefixes(self.stream, int(n), counted_from=self._counted_from,
                             prev=self._previous)
        if text and found and self.prompts is not None:
            found = prefix_texts(found, self.prompts)
        return found

    @property
    def category_names(self) -> tuple[str, ...]:
        """What :meth:`reuse_by_category` groups requests by: the format's own categories
        (Qwen-Bailian ``type``; Weka ``model``, ``type``, ...), else ``"session"`` when
        requests carry session ids; empty otherwise."""
        if self.stream.categories:
            return tuple(self.stream.categories)
        return ("session",) if self.stream.has_sessions else ()

    def reuse_by_category(self, sizes: tuple[int, ...] | list[int] = (), *,
                          by: str | None = None, limit: int = 10) -> list[CategoryRow] | None:
        """Reused and offloadable (interval > size, at each of ``sizes``) shares of each
        category's own counted tokens, by the category ``by`` (default: the first of
        :attr:`category_names`; ``"session"`` for sessions); None when there is none."""
        names = self.category_names
        if by is None:
            if not names:
                return None
            by = names[0]
        if by == "session" and self.stream.has_sessions:
            sessions = np.asarray(self.stream.sessions, dtype=np.int64)
            # Dense ids: session s is label s, and "no session" the last.
            top = int(sessions.max()) + 1
            codes = np.where(sessions >= 0, sessions, top)
            labels: tuple[str, ...] = (*(f"session {s}" for s in range(top)), "no session")
            noun = "sessions"
        elif by in self.stream.categories:
            cat = self.stream.categories[by]
            codes, labels, noun = cat.codes, cat.labels, "categories"
        else:
            known = ", ".join(names) or "none: the trace has no categories or sessions"
            raise KvReuseError(f"unknown category {by!r} (known: {known})")
        return category_breakdown(self.stream, codes, labels, sizes=list(sizes),
                                  counted_from=self._counted_from,
                                  warmup_requests=self.warmup_requests, limit=limit,
                                  prev=self._previous, noun=noun)

    @property
    def breaks_reason(self) -> str | None:
        """Why there are no turn breaks to find (None when there are)."""
        if not self.stream.has_sessions:
            return NO_SESSIONS
        if self.params.get("prompt") == "per-message":
            return "per-message prompts are messages, not turns"
        return None

    @cached_property
    def turn_breaks(self) -> TurnBreaks | None:
        """Every counted session turn against the previous one; None without sessions."""
        if self.breaks_reason is not None:
            return None
        return turn_breaks(self.stream, warmup_requests=self.warmup_requests)

    @property
    def broken_reuse_fraction(self) -> float:
        """Share of tokens in full blocks of the previous turn's prompt that a turn did not
        re-send (NaN without sessions)."""
        breaks = self.turn_breaks
        return math.nan if breaks is None else self._share(breaks.lost_tokens)

    def why(self, limit: int = 1000) -> tuple[list[BreakCause], int] | None:
        """The broken turns' departures grouped by cause (text traces that can be read
        again), with how many turns were explained (at most ``limit``, those losing most);
        None when there is no text to explain them with."""
        breaks = self.turn_breaks
        if breaks is None or self.prompts is None:
            return None
        return explain_breaks(breaks, self.stream.sessions, self.prompts, limit=limit)

    def to_dict(self) -> dict:
        """The parameters and every figure without arguments, JSON-ready and deterministic
        (the full result document, sizes and curves included, is
        :meth:`pytest_kvreuse.TraceResult.from_analysis`)."""
        figures = {m.name: m.value(self) for m in METRICS.values() if not m.args}
        return {"params": {k: self.params[k] for k in sorted(self.params)}, **figures}

    def __repr__(self) -> str:
        return (f"ReuseAnalysis(requests={self.num_requests}, blocks={self.num_blocks}, "
                f"block_size={self.block_size}, reuses={self.reuse_count})")

