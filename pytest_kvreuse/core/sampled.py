"""SampledAnalysis: the figures of a trace estimated from a spatial sample of its keys.

docs/sampling.md. The stream holds only the blocks of kept keys, at their places in the
whole stream, so a kept key's intervals and reuse times are exact. Fractions are shares of
the sample's own counted blocks (the counts and the blocks both divided by the rate: a
ratio, exact at rate 1, and free of the noise in how many blocks the sample happened to
get); counts (unique blocks, reuses) are divided by the rate; stack and OPT distances
measured on the sample are divided by the rate (an LRU cache of ``M`` blocks on the whole
stream behaves like one of ``M * rate`` blocks on the sample). Blocks, tokens and requests
are counted on the whole stream, not estimated.

Every estimate carries a standard error (:meth:`SampledAnalysis.figure_error`): the kept
keys fall into ``GROUPS`` independent hash sub-samples; the figure on each is an estimate
at ``rate / GROUPS``, and the spread of those, ``std / sqrt(GROUPS)``, is the error of
their mean (the random-groups estimate of variance), times ``sqrt((1 - R) / (1 - R /
GROUPS))`` for the share of the keys sampled (0 at rate 1).
"""

from __future__ import annotations

import math
from dataclasses import replace
from functools import cached_property

import numpy as np

from ..errors import KvReuseError
from ..metrics import METRICS, NOT_SAMPLED, sampling_of
from ..models import KvGeometry
from .analysis import ReuseAnalysis
from .blocks import BlockStream
from .lru import LruProfile
from .opt import OptProfile
from .sampling import GROUPS, Sample, sub_sample

# Below this many keys in a sub-sample the error is unknown rather than estimated.
MIN_GROUP_KEYS = 10


def _scaled(distances: np.ndarray | None, rate: float) -> np.ndarray | None:
    # floor(d / R) < M  <=>  d < M * R: the sample's distance against the whole cache.
    if distances is None or rate >= 1.0:
        return distances
    return np.floor(distances / rate).astype(np.int64)


class SampledAnalysis(ReuseAnalysis):
    """A :class:`ReuseAnalysis` of a sampled stream (``sample``: what it stands for)."""

    def __init__(self, stream: BlockStream, sample: Sample, *, params: dict | None = None,
                 timings: dict | None = None, warmup: float = 0.0,
                 kv: KvGeometry | None = None) -> None:
        self.sample = sample
        super().__init__(stream, params=params, timings=timings, warmup=warmup, kv=kv)
        self._full_counted_from = int(sample.blocks_per_request[:self.warmup_requests].sum())

    @property
    def rate(self) -> float:
        return self.sample.rate

    @property
    def sampled_note(self) -> str:
        """``sampled at rate 0.01 (3,316 keys kept)``: how results say so."""
        budget = (f", at most {self.sample.max_keys:,} keys"
                  if self.sample.max_keys is not None else "")
        return (f"sampled at rate {self.rate:.6g} ({self.sample.kept_keys:,} keys kept"
                f"{budget})")

    error_method = f"one standard error, from {GROUPS} independent hash sub-samples"

    # -- counted on the whole stream ----------------------------------------------------

    @property
    def num_blocks(self) -> int:
        return self.sample.total_blocks

    @property
    def total_tokens(self) -> int:
        return self.num_blocks * self.block_size

    @property
    def counted_tokens(self) -> int:
        return (self.num_blocks - self._full_counted_from) * self.block_size

    @property
    def _fraction_tokens(self) -> int:
        return (self.stream.num_blocks - self._counted_from) * self.block_size

    # -- estimated from the sample ------------------------------------------------------

    @property
    def unique_blocks(self) -> int:  # type: ignore[override]
        return round(self._sampled_unique / self.rate)

    @unique_blocks.setter
    def unique_blocks(self, value: int) -> None:
        # The base class stores the sample's own count here.
        self._sampled_unique = value

    @property
    def reuse_count(self) -> int:
        return round(self.intervals.size / self.rate)

    @property
    def reused_fraction(self) -> float:
        return self._share(int(self.intervals.size) * self.block_size)

    @property
    def interval_min(self) -> int | None:
        return None  # the extremes of a few kept keys say nothing of the trace's

    @property
    def interval_max(self) -> int | None:
        return None

    @cached_property
    def compulsory_fraction(self) -> float:
        first = self._sampled_unique
        if self._counted_from:
            first -= int(np.unique(self.stream.keys[:self._counted_from]).size)
        return self._share(first * self.block_size)

    @cached_property
    def lru(self) -> LruProfile:
        profile = ReuseAnalysis.lru.func(self)  # type: ignore[attr-defined]
        return replace(profile, distances=_scaled(profile.distances, self.rate),
                       same_session=_scaled(profile.same_session, self.rate),
                       cross_session=_scaled(profile.cross_session, self.rate))

    @cached_property
    def opt(self) -> OptProfile:
        profile = ReuseAnalysis.opt.func(self)  # type: ignore[attr-defined]
        return replace(profile, distances=_scaled(profile.distances, self.rate))

    def ttl_peak_tokens(self, ttl_seconds: float) -> int | None:
        peak = super().ttl_peak_tokens(ttl_seconds)
        return None if peak is None else round(peak / self.rate)

    def lru_hit_tokens(self, cache_tokens: float) -> int:
        return round(self.lru.hit_blocks(self.tokens(cache_tokens)) / self.rate) \
            * self.block_size

    # A router's choices and a turn's prompt depend on every key of a request, which a
    # spatial sample does not keep: these figures are not estimated (NOT_SAMPLED says why).

    def routed(self, *args: object, **kwargs: object):  # type: ignore[override]
        raise KvReuseError(f"replicas: {NOT_SAMPLED['routed_hit_fraction']}")

    def routed_tier_fractions(self, *args: object, **kwargs: object):  # type: ignore[override]
        raise KvReuseError(f"replicas: {NOT_SAMPLED['routed_hit_fraction']}")

    @property
    def breaks_reason(self) -> str | None:
        return NOT_SAMPLED["broken_reuse_fraction"]

    def top_prefixes(self, *args: object, **kwargs: object):  # type: ignore[override]
        raise KvReuseError("top prefixes: a shared prefix is every block of it, and a sample "
                           "keeps only some (run without sampling)")

    def policy_hit_fraction(self, policy: str, cache_tokens: float) -> float:
        # Mini-simulation (Waldspurger et al., ATC'17): the policy on the sample with a
        # cache scaled by the rate.
        return super().policy_hit_fraction(policy, cache_tokens * self.rate)

    # -- the error of an estimate -------------------------------------------------------

    @cached_property
    def groups(self) -> list[SampledAnalysis]:
        """The analyses of the ``GROUPS`` hash sub-samples (built on first use)."""
        out = []
        for g in range(GROUPS):
            sub, sample = sub_sample(self.stream, self.sample, g)
            out.append(SampledAnalysis(sub, sample, params=self.params, warmup=self.warmup))
        return out

    def figure_error(self, metric: str, **args: object) -> float | None:
        """One standard error of the figure ``metric`` at ``args``, from the spread over the
        hash sub-samples; None for a figure counted exactly, one that has no estimate, or
        when a sub-sample holds fewer than ``MIN_GROUP_KEYS`` keys (unknown, not small)."""
        if sampling_of(metric) != "estimate":
            return None
        if min(g.sample.kept_keys for g in self.groups) < MIN_GROUP_KEYS:
            return None  # a spread over a handful of keys would claim a false precision
        m = METRICS[metric]
        values = [v for v in (m.value(g, **args) for g in self.groups) if v is not None]
        if len(values) < 2:
            return None
        spread = float(np.std(np.asarray(values, dtype=np.float64), ddof=1))
        # Finite-population correction: the sub-samples' spread is that of rate R / GROUPS,
        # the error of rate R shrinks as sqrt(1 - R) (none at rate 1: the whole stream).
        correction = math.sqrt(max(1.0 - self.rate, 0.0) / (1.0 - self.rate / GROUPS))
        return spread / math.sqrt(len(values)) * correction
