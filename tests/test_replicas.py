"""Replicas behind a router (docs/replicas.md): the engine against one OrderedDict per
replica (tests/oracle_replicas.py) on random traces, for every routing policy; the
reference figures of the shared synthetic trace; errors."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from oracle_lru import make_stream
from oracle_replicas import requests_of, simulate

from pytest_kvreuse import analyze
from pytest_kvreuse.core.analysis import ReuseAnalysis
from pytest_kvreuse.core.replicas import (
    RoutingError,
    prefix_keyed,
    prefix_replicas,
    replica_touches,
    route,
)
from pytest_kvreuse.errors import KvReuseError
from pytest_kvreuse.metrics import ROUTINGS

B = 4

# Any keys: repeats inside a request, keys at several depths (the general path).
free_requests = st.lists(st.lists(st.integers(0, 12), max_size=8), min_size=1, max_size=30)


@st.composite
def chained_requests(draw) -> list[list[int]]:
    """Prefix-chained keys, as every loader makes them: a key names its whole prefix
    (the short path), drawn from a small tree so that requests share heads."""
    ids: dict[tuple, int] = {}
    out = []
    for _ in range(draw(st.integers(1, 30))):
        path: tuple = ()
        keys = []
        for _ in range(draw(st.integers(0, 8))):
            path = (*path, draw(st.integers(0, 2)))
            keys.append(ids.setdefault(path, len(ids)))
        out.append(keys)
    return out


any_requests = st.one_of(free_requests, chained_requests())


def _analysis(requests, sessions=None, warmup=0.0):
    return ReuseAnalysis(make_stream(requests, sessions, block_size=B), warmup=warmup)


@given(requests=any_requests, replicas=st.integers(1, 4), blocks=st.integers(0, 9),
       routing=st.sampled_from(ROUTINGS), seed=st.integers(0, 3),
       slack=st.sampled_from([0.0, 0.25, 1.0]), warmup=st.sampled_from([0.0, 0.3]),
       data=st.data())
def test_engine_equals_the_oracle(requests, replicas, blocks, routing, seed, slack, warmup,
                                  data):
    sessions = data.draw(st.lists(st.integers(-1, 5), min_size=len(requests),
                                  max_size=len(requests)))
    if routing == "session" and not any(s >= 0 for s in sessions):
        sessions[0] = 0
    a = _analysis(requests, sessions, warmup)
    n_warm = a.warmup_requests
    shared = data.draw(st.integers(0, 12))
    want = simulate(requests, replicas, blocks, routing, sessions=sessions, seed=seed,
                    load_slack=slack, shared_capacity=shared,
                    private_capacity=shared // replicas, warmup_requests=n_warm)
    r = a.routed(blocks * B, replicas=replicas, routing=routing, seed=seed,
                 load_slack=slack)
    assert list(r.hits) == want["hits"]
    assert list(r.requests) == want["requests"]
    assert r.imbalance == pytest.approx(max(want["requests"]) * replicas / len(requests))
    counted = want["tiers"].get("total", 0)
    if counted:
        assert r.hit_fraction == pytest.approx(sum(want["hits"]) / counted)
        tiers = a.routed_tier_fractions(blocks * B, shared * B, replicas=replicas,
                                        routing=routing, seed=seed, load_slack=slack)
        for name, value in tiers.items():
            assert value == pytest.approx(want["tiers"][name] / counted), name
        assert tiers["gpu_hit"] + tiers["shared_tier_hit"] + tiers["shared_miss"] == \
            pytest.approx(1.0)
    else:
        assert math.isnan(r.hit_fraction)
    assignment = route(a.stream, replicas, routing, cache_blocks=blocks, seed=seed,
                       load_slack=slack)
    assert assignment.tolist() == want["assignment"]


@given(requests=chained_requests(), replicas=st.integers(2, 4), blocks=st.integers(1, 9))
def test_prefix_hits_equal_the_partitioned_pass(requests, replicas, blocks):
    """The hits counted while routing are those of the stack-distance pass over the
    partition the routing made."""
    stream = make_stream(requests, block_size=B)
    assert prefix_keyed(stream)
    assignment, hits = prefix_replicas(stream, replicas, blocks)
    t = replica_touches(stream, assignment, replicas, "prefix")
    assert t.hits(blocks).tolist() == hits.tolist()


def test_repeated_keys_are_not_prefix_keyed():
    assert not prefix_keyed(make_stream([[1, 2, 1]]))
    assert not prefix_keyed(make_stream([[1, 2], [3, 2]]))
    assert prefix_keyed(make_stream([[1, 2], [1, 3], [], [1]]))


def test_one_replica_is_the_single_cache():
    requests = [[1, 2, 3], [1, 2, 4], [5], [1, 2, 3]]
    a = _analysis(requests)
    for routing in ("round-robin", "prefix", "random"):
        assert a.routed_hit_fraction(2 * B, replicas=1, routing=routing) == \
            a.lru_hit_fraction(2 * B)


def test_prefix_routing_follows_the_prefix_under_the_load_bound():
    # Request 2 shares request 0's head: replica 0 holds it, and is under the bound.
    a = _analysis([[1, 2], [7, 8], [1, 2, 3], [9]])
    r = a.routed(100 * B, replicas=2, routing="prefix")
    assert r.requests == (2, 2)
    assert r.hits == (2, 0)
    # Without slack the bound ceil((i + 1) / 2) sends request 1 elsewhere, and so on.
    assert route(a.stream, 2, "prefix", cache_blocks=100, load_slack=0.0).tolist() == \
        [0, 1, 0, 1]


def test_session_routing_is_stable_and_needs_sessions():
    a = _analysis([[1], [2], [3], [4]], sessions=[0, 1, 0, -1])
    first = route(a.stream, 3, "session").tolist()
    assert first == route(a.stream, 3, "session").tolist()
    assert first[0] == first[2]
    assert first[3] == 3 % 3  # no session: round-robin by index
    with pytest.raises(RoutingError, match="session routing needs session ids") as exc:
        _analysis([[1], [2]]).routed(4, replicas=2, routing="session")
    assert "\n" not in str(exc.value)


def test_random_routing_is_seeded():
    a = _analysis([[i] for i in range(50)])
    one = route(a.stream, 4, "random", seed=1)
    assert one.tolist() == route(a.stream, 4, "random", seed=1).tolist()
    assert one.tolist() != route(a.stream, 4, "random", seed=2).tolist()


@pytest.mark.parametrize("kwargs, message", [
    ({"replicas": 0}, "replicas must be a positive integer"),
    ({"replicas": True}, "replicas must be a positive integer"),
    ({"replicas": 2, "routing": "hash"}, "unknown routing 'hash'"),
    ({"replicas": 2, "load_slack": -1}, "load_slack must be a non-negative number"),
])
def test_bad_arguments_are_one_line(kwargs, message):
    with pytest.raises(KvReuseError, match=message):
        _analysis([[1]]).routed(8, **kwargs)


def test_empty_and_tiny_traces():
    a = _analysis([[], []])
    r = a.routed(8, replicas=3, routing="prefix")
    assert r.requests == (1, 1, 0) and math.isnan(r.hit_fraction)
    assert route(a.stream, 3, "prefix", cache_blocks=0).tolist() == [0, 1]


@pytest.fixture(scope="module")
def synthetic(request):
    shared = request.getfixturevalue("shared_traces")
    return analyze(shared / "mooncake_synthetic_trace.jsonl", block_size=64)


@pytest.mark.parametrize("replicas, routing, percent", [
    (4, "round-robin", "11.41211"), (4, "prefix", "36.65243"),
    (8, "round-robin", "10.88584"), (8, "prefix", "54.14669")])
def test_section8_reference_figures(synthetic, replicas, routing, percent):
    hit = synthetic.routed_hit_fraction(1_000_000, replicas=replicas, routing=routing)
    assert f"{hit * 100:.5f}" == percent


def test_section8_imbalance(synthetic):
    r = synthetic.routed(1_000_000, replicas=4, routing="prefix")
    assert f"{r.imbalance:.4f}" == "1.0068"
    assert sum(r.requests) == synthetic.num_requests


def test_section8_prefix_routing_equals_the_oracle(synthetic):
    want = simulate(requests_of(synthetic.stream), 4, 1_000_000 // 64, "prefix")
    r = synthetic.routed(1_000_000, replicas=4, routing="prefix")
    assert list(r.hits) == want["hits"] and list(r.requests) == want["requests"]


def test_one_replica_equals_lru_on_the_synthetic_trace(synthetic):
    assert synthetic.routed_hit_fraction(1_000_000, replicas=1) == \
        synthetic.lru_hit_fraction(1_000_000)


def test_pooled_distance_is_the_lru_pass(synthetic):
    d = synthetic._pooled_distance
    assert int(np.count_nonzero(d < 1_000_000 // 64)) * 64 / synthetic.counted_tokens == \
        synthetic.lru_hit_fraction(1_000_000)


def test_replica_cache_sizes_in_bytes_with_the_model():
    # deepseek-v3, bf16: 70,272 bytes per token; 10 MiB hold floor(10 MiB / (70272 * 64))
    # = 2 blocks per replica, the same figures as 128 tokens.
    a = analyze(Path(__file__).resolve().parents[1] / "example_traces"
                / "chat_sessions.mooncake.jsonl", model="deepseek-v3", block_size=64)
    assert a.tokens("10MiB") == 128
    assert a.routed_hit_fraction("10MiB", replicas=4, routing="prefix") == \
        a.routed_hit_fraction(128, replicas=4, routing="prefix")
    assert a.routed_tier_fractions("10MiB", "1GiB", replicas=2) == \
        a.routed_tier_fractions(128, a.tokens("1GiB"), replicas=2)
    with pytest.raises(KvReuseError, match="name the model"):
        analyze(Path(__file__).resolve().parents[1] / "example_traces"
                / "chat_sessions.mooncake.jsonl").routed("10MiB", replicas=2)
