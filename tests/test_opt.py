"""Belady-optimal distances: equal to a heap OPT replay at every size, and the section 6
reference figures."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from oracle_lru import make_stream
from oracle_opt import opt_replay, track_engine_distances

from pytest_kvreuse import load_block_stream
from pytest_kvreuse.core.lru import lru_profile, touch_order
from pytest_kvreuse.core.opt import opt_profile, sequence_opt_distances

B = 4

requests_st = st.lists(st.lists(st.integers(0, 9), max_size=6), max_size=12)


@settings(max_examples=200, deadline=None)
@given(requests_st, st.integers(0, 12))
def test_engine_equals_heap_oracle_at_every_size(requests, warmup):
    stream = make_stream(requests, block_size=B)
    prof = opt_profile(stream, warmup_requests=warmup)
    touches = sum(len(r) for r in requests[warmup:])
    assert prof.counted_tokens == touches * B
    for m in range(0, 2 + sum(len(r) for r in requests)):
        assert prof.hits(m * B) == opt_replay(requests, m, warmup)
        assert prof.hits(m * B + B - 1) == prof.hits(m * B)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(0, 5), max_size=40))
def test_plain_sequences(keys):
    dist = sequence_opt_distances(np.asarray(keys, dtype=np.int64))
    for m in range(1, 8):
        assert int((dist < m).sum()) == opt_replay([[k] for k in keys], m)


@settings(max_examples=100, deadline=None)
@given(requests_st, st.integers(0, 4))
def test_opt_never_below_lru(requests, warmup):
    stream = make_stream(requests, block_size=B)
    opt = opt_profile(stream, warmup_requests=warmup)
    lru = lru_profile(stream, warmup_requests=warmup)
    for m in range(0, 2 + stream.num_blocks):
        assert opt.hits(m * B) >= int(np.searchsorted(lru.distances, m))


@settings(max_examples=60, deadline=None)
@given(requests_st)
def test_curve_steps_are_the_hit_fraction(requests):
    prof = opt_profile(make_stream(requests, block_size=B))
    x, y = prof.curve()
    for xi, yi in zip(x.tolist(), y.tolist(), strict=True):
        assert yi == prof.hit_fraction(xi)
        assert prof.hit_fraction(xi - 1) < yi
    assert np.all(np.diff(y) > 0)


def test_empty_and_nothing_counted():
    prof = opt_profile(make_stream([[], []]))
    assert prof.hits(100) == 0 and math.isnan(prof.hit_fraction(100))
    assert prof.curve()[0].size == 0
    prof = opt_profile(make_stream([[1, 2], [1, 2]]), warmup_requests=5)
    assert math.isnan(prof.hit_fraction(100))


@pytest.mark.parametrize("seed", range(6))
def test_equals_first_engine_on_larger_random_traces(seed):
    # Prefix-sharing shape: requests re-touch random-length heads of a few shared paths.
    rng = np.random.default_rng(seed)
    requests = []
    for _ in range(300):
        path = int(rng.integers(0, 12))
        length = int(rng.integers(1, 30))
        requests.append([path * 100 + j for j in range(length)])
    stream = make_stream(requests, block_size=B)
    keys = stream.keys[touch_order(stream)]
    assert np.array_equal(sequence_opt_distances(keys), track_engine_distances(keys))
    noise = rng.integers(0, 400, size=3000)
    assert np.array_equal(sequence_opt_distances(noise), track_engine_distances(noise))


def test_worked_example():
    # a b c a: OPT with 2 blocks keeps a (b, c are never used again), LRU needs 3.
    dist = sequence_opt_distances(np.array([0, 1, 2, 0]))
    assert dist[3] == 1


@pytest.mark.parametrize("bad", [-1, float("nan"), "x"])
def test_bad_sizes(bad):
    from pytest_kvreuse.errors import KvReuseError

    with pytest.raises(KvReuseError):
        opt_profile(make_stream([[1]])).hits(bad)


@pytest.fixture(scope="module")
def mooncake_opt(request):
    shared = request.getfixturevalue("shared_traces")
    stream = load_block_stream(shared / "mooncake_synthetic_trace.jsonl", block_size=64)
    return stream, opt_profile(stream)


@pytest.mark.parametrize("cache, hits, percent", [
    (345_792, 224_820, 23.5594), (1_000_000, 365_992, 38.3532),
    (4_000_000, 576_777, 60.4419), (16_000_000, 622_601, 65.2439)])
def test_reference_figures(mooncake_opt, cache, hits, percent):
    stream, prof = mooncake_opt
    assert stream.total_tokens == 61_073_088
    assert prof.hits(cache) == hits
    assert round(prof.hit_fraction(cache) * 100, 4) == percent
