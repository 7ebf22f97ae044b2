"""The exact LRU figures against a literal OrderedDict replay, a naive stack distance and
the reference figures of analysis.md section 4."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from oracle_lru import make_stream, naive_intervals, naive_stack_distances, replay, touches

from pytest_kvreuse import ReuseAnalysis, analyze
from pytest_kvreuse.core.lru import (
    COLD,
    earlier_greater,
    sequence_stack_distances,
    stack_distances,
    touch_order,
)
from pytest_kvreuse.errors import KvReuseError

B = 4


@st.composite
def prefix_requests(draw) -> list[list[int]]:
    """Requests that share prefixes as chat traffic does: each one extends a prefix of an
    earlier request (or starts afresh) with new keys."""
    requests: list[list[int]] = []
    fresh = 0
    for _ in range(draw(st.integers(1, 18))):
        base: list[int] = []
        if requests and draw(st.booleans()):
            parent = requests[draw(st.integers(0, len(requests) - 1))]
            base = parent[:draw(st.integers(0, len(parent)))]
        extra = draw(st.integers(0, 5))
        requests.append(base + list(range(fresh, fresh + extra)))
        fresh += extra
    return requests


random_requests = st.lists(st.lists(st.integers(0, 9), max_size=7), min_size=1, max_size=18)


@st.composite
def workloads(draw) -> tuple[list[list[int]], list[int], int]:
    requests = draw(st.one_of(prefix_requests(), random_requests))
    sessions = draw(st.lists(st.integers(-1, 3), min_size=len(requests),
                             max_size=len(requests)))
    warmup = draw(st.integers(0, len(requests) - 1))
    return requests, sessions, warmup


def _blocks(fraction: float, analysis: ReuseAnalysis) -> int:
    """A fraction back as a count of counted blocks (exact for these small traces)."""
    value = fraction * analysis.counted_tokens / analysis.block_size
    assert abs(value - round(value)) < 1e-6
    return round(value)


# Concatenated slices of one sequence: long runs of re-touched keys that overlap, nest and
# cross each other, the case the run compression must get right.
sliced_keys = st.lists(st.tuples(st.integers(0, 15), st.integers(0, 12)), max_size=10).map(
    lambda cuts: [k for start, n in cuts for k in range(start, start + n)])


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.lists(st.integers(-3, 12), max_size=60), sliced_keys))
def test_sequence_stack_distances_match_naive(keys):
    dist, prev = sequence_stack_distances(np.asarray(keys, dtype=np.int64))
    expected = naive_stack_distances(keys)
    assert [None if d == COLD else int(d) for d in dist] == expected
    for t, p in enumerate(prev):
        earlier = [j for j in range(t) if keys[j] == keys[t]]
        assert p == (earlier[-1] if earlier else -1)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 300).flatmap(lambda n: st.tuples(
    st.permutations(list(range(n))), st.lists(st.integers(0, 50), min_size=n, max_size=n))))
def test_earlier_greater_matches_brute_force(case):
    values, weights = case
    v = np.asarray(values, dtype=np.int64)
    w = np.asarray(weights, dtype=np.int64)
    counts = [int(np.count_nonzero(v[:i] > v[i])) for i in range(v.size)]
    assert earlier_greater(v).tolist() == counts
    sums = [int(w[:i][v[:i] > v[i]].sum()) for i in range(v.size)]
    assert earlier_greater(v, w).tolist() == sums


@pytest.mark.parametrize("n", [15, 16, 17, 1023, 1024, 1025, 4099])
def test_earlier_greater_at_group_edges(n):
    v = np.random.default_rng(n).permutation(n)
    expected = np.array([np.count_nonzero(v[:i] > v[i]) for i in range(n)])
    assert np.array_equal(earlier_greater(v), expected)


def test_touch_order_is_tail_first():
    stream = make_stream([[10, 11, 12], [], [10, 13], [14]])
    assert touch_order(stream).tolist() == [2, 1, 0, 4, 3, 5]


@settings(max_examples=150, deadline=None)
@given(workloads())
def test_stack_distances_per_block(workload):
    requests, sessions, _ = workload
    stream = make_stream(requests, sessions, B)
    expected = naive_stack_distances([k for _, k in touches(requests)])
    # touches() lists each request tail first: map back to stream (head-first) order.
    per_block = []
    pos = 0
    for req in requests:
        per_block += expected[pos:pos + len(req)][::-1]
        pos += len(req)
    got = stack_distances(stream)
    assert [None if d == COLD else int(d) for d in got] == per_block


@settings(max_examples=300, deadline=None)
@given(workloads(), st.integers(0, 30 * B), st.one_of(st.none(), st.integers(0, 20 * B)))
def test_lru_figures_match_ordered_dict_replay(workload, cache_tokens, lower_tokens):
    requests, sessions, warmup = workload
    a = ReuseAnalysis(make_stream(requests, sessions, B), warmup=warmup / len(requests))
    assert a.warmup_requests == warmup
    counted = sum(len(r) for r in requests[warmup:])
    assert a.counted_tokens == counted * B
    m = cache_tokens // B
    ref = replay(requests, sessions, m, warmup_requests=warmup)
    if counted == 0:
        assert math.isnan(a.lru_hit_fraction(cache_tokens))
        assert math.isnan(a.compulsory_fraction)
        return
    assert _blocks(a.lru_hit_fraction(cache_tokens), a) == ref["hit"]
    assert _blocks(a.lru_offloadable_fraction(cache_tokens), a) == ref["beyond"]
    assert _blocks(a.compulsory_fraction, a) == ref["compulsory"]
    assert _blocks(a.lru.compulsory_fraction, a) == ref["compulsory"]
    if lower_tokens is not None:
        tiered = replay(requests, sessions, m, lower_tokens // B, warmup_requests=warmup)
        assert tiered["hit"] == ref["hit"]
        assert _blocks(a.lru_offloadable_fraction(cache_tokens, lower_tokens), a) \
            == tiered["lower"]
    hit_split = a.lru_hit_split(cache_tokens)
    off_split = a.lru_offloadable_split(cache_tokens)
    if not any(s >= 0 for s in sessions):
        assert hit_split is None and off_split is None
    else:
        assert _blocks(hit_split["same_session"], a) == ref[("hit", "same")]
        assert _blocks(hit_split["cross_session"], a) == ref[("hit", "cross")]
        assert _blocks(off_split["same_session"], a) == ref[("beyond", "same")]
        assert _blocks(off_split["cross_session"], a) == ref[("beyond", "cross")]
        if lower_tokens is not None:
            tiered_split = a.lru_offloadable_split(cache_tokens, lower_tokens)
            assert _blocks(tiered_split["same_session"], a) == tiered[("lower", "same")]
            assert _blocks(tiered_split["cross_session"], a) == tiered[("lower", "cross")]


@settings(max_examples=150, deadline=None)
@given(workloads())
def test_shares_add_up_at_every_capacity(workload):
    requests, sessions, warmup = workload
    a = ReuseAnalysis(make_stream(requests, sessions, B), warmup=warmup / len(requests))
    if a.counted_tokens == 0:
        return
    x, hit = a.lru_curve()
    capacities = sorted({0, 1, B - 1, B, 10 * B, 10**9, *x.tolist(), *(x - 1).tolist()})
    for c in capacities:
        total = a.lru_hit_fraction(c) + a.lru_offloadable_fraction(c) + a.compulsory_fraction
        assert total == pytest.approx(1.0)
    # The curve is the hit fraction, and holds from each step up to the next one.
    for i, c in enumerate(x.tolist()):
        assert a.lru_hit_fraction(c) == pytest.approx(hit[i])
        below = hit[i - 1] if i else 0.0
        assert a.lru_hit_fraction(c - 1) == pytest.approx(below)
    ox, off = a.lru_offloadable_curve()
    assert np.array_equal(ox, x)
    for c, y in zip(ox.tolist(), off.tolist(), strict=True):
        assert a.lru_offloadable_fraction(c) == pytest.approx(y)


@settings(max_examples=150, deadline=None)
@given(workloads(), st.integers(0, 40 * B))
def test_interval_figures_count_only_counted_requests(workload, cache_tokens):
    requests, sessions, warmup = workload
    a = ReuseAnalysis(make_stream(requests, sessions, B), warmup=warmup / len(requests))
    expected = naive_intervals(requests, B, warmup)
    assert a.intervals.tolist() == expected
    if a.counted_tokens:
        beyond = sum(1 for iv in expected if iv > cache_tokens)
        assert _blocks(a.offloadable_fraction(cache_tokens), a) == beyond
        x, y = a.ccdf()
        for xi, yi in zip(x.tolist(), y.tolist(), strict=True):
            assert _blocks(yi, a) == sum(1 for iv in expected if iv > xi)
    # The whole-trace figures do not move with the warm-up.
    assert a.num_blocks == sum(len(r) for r in requests)
    assert a.unique_blocks == len({k for r in requests for k in r})


def test_warmup_counts_floor_of_fraction():
    stream = make_stream([[i] for i in range(10)])
    assert ReuseAnalysis(stream, warmup=0.3).warmup_requests == 3
    assert ReuseAnalysis(stream, warmup=0.29).warmup_requests == 2
    assert ReuseAnalysis(stream, warmup=0.0).warmup_requests == 0


def test_warmup_fills_the_cache():
    # Request 0 is warm-up: its blocks are not counted but request 1 hits them.
    a = ReuseAnalysis(make_stream([[1, 2], [1, 2, 3]], block_size=B), warmup=0.5)
    assert a.counted_tokens == 3 * B
    assert a.lru_hit_fraction(10 * B) == pytest.approx(2 / 3)
    assert a.compulsory_fraction == pytest.approx(1 / 3)
    assert a.to_dict()["warmup_requests"] == 1


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5, float("nan"), "0.2", True, None])
def test_bad_warmup_is_a_clear_error(bad, tmp_path):
    with pytest.raises(KvReuseError, match="warmup"):
        ReuseAnalysis(make_stream([[1]]), warmup=bad)
    # Refused before the (missing) trace is read.
    with pytest.raises(KvReuseError, match="warmup"):
        analyze(tmp_path / "missing.jsonl", warmup=bad)


# "100" reads as 100 tokens (sizes as users write them); bytes need a model, none is named.
@pytest.mark.parametrize("bad", [-1, float("nan"), "100 apples", "1GiB", None])
def test_bad_capacity_is_a_clear_error(bad):
    a = ReuseAnalysis(make_stream([[1, 2], [1]]))
    with pytest.raises(KvReuseError):
        a.lru_hit_fraction(bad)
    with pytest.raises(KvReuseError):
        a.lru_offloadable_fraction(64, bad if bad is not None else -5)


def test_unbounded_cache_and_tier():
    a = ReuseAnalysis(make_stream([[1, 2], [1, 2]], block_size=B))
    assert a.lru_hit_fraction(math.inf) == pytest.approx(0.5)
    assert a.lru_offloadable_fraction(0, math.inf) == pytest.approx(0.5)


def test_no_full_block_gives_undefined_figures():
    a = ReuseAnalysis(make_stream([[], []]))
    assert math.isnan(a.lru_hit_fraction(100))
    assert math.isnan(a.lru_offloadable_fraction(100, 100))
    assert math.isnan(a.compulsory_fraction)
    assert a.lru_curve()[0].size == 0
    assert a.to_dict()["compulsory_fraction"] is None


def test_lru_is_computed_lazily():
    a = ReuseAnalysis(make_stream([[1, 2], [1, 3]]))
    a.to_dict()
    a.offloadable_fraction(8)
    a.ccdf()
    assert "lru" not in a.__dict__ and "lru_s" not in a.timings
    a.lru_hit_fraction(8)
    assert "lru_s" in a.timings


def test_reference_figures(shared_traces):
    """analysis.md section 4, to 4 decimals."""
    a = analyze(shared_traces / "mooncake_synthetic_trace.jsonl", block_size=64)
    expected = {345_792: (6.3034, 58.9405), 1_000_000: (14.6358, 50.6081),
                4_000_000: (38.0759, 27.1680)}
    for c, (hit, off) in expected.items():
        assert round(a.lru_hit_fraction(c) * 100, 4) == hit
        assert round(a.lru_offloadable_fraction(c) * 100, 4) == off
    assert round(a.compulsory_fraction * 100, 4) == 34.7561
    assert round(a.lru.compulsory_fraction * 100, 4) == 34.7561
    x, _ = a.lru_curve()
    for c in [0, 64, 16_384, *x[:: max(1, x.size // 50)].tolist(), 10**9]:
        total = a.lru_hit_fraction(c) + a.lru_offloadable_fraction(c) + a.compulsory_fraction
        assert total == pytest.approx(1.0, abs=1e-12)
    assert a.lru_hit_split(345_792) is None  # Mooncake traces carry no sessions
