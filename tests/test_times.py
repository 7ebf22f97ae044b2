"""Reuse times in seconds and TTL caches (docs/times.md): the engine equals the plain
oracle, the reference figures hold, and a trace without timestamps is undefined."""

from __future__ import annotations

import dataclasses
import json
import math
from collections import Counter
from fractions import Fraction
from pathlib import Path

import numpy as np
import oracle_ttl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_kvreuse import load_block_stream
from pytest_kvreuse.core.blocks import BlockStream, request_index
from pytest_kvreuse.core.intervals import reuse_intervals, reuse_intervals_and_pairs
from pytest_kvreuse.core.times import ReuseTimes, reuse_times
from pytest_kvreuse.errors import KvReuseError

import oracle

QUANTILES = (0.0, 0.1, 0.25, 0.3, 0.5, 0.9, 0.99)


def write_jsonl(records: list[dict], path: Path) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def stream_of(blocks: list[list[int]], stamps: list[float], block_size: int = 4
              ) -> BlockStream:
    """A BlockStream straight from per-request keys, whatever the stamps are."""
    counts = np.asarray([len(b) for b in blocks], dtype=np.int64)
    keys = np.asarray([k for b in blocks for k in b], dtype=np.int64)
    return BlockStream(keys=keys, request=request_index(counts), block_size=block_size,
                       prompt_tokens=counts * block_size,
                       timestamps=np.asarray(stamps, dtype=np.float64),
                       sessions=np.full(len(blocks), -1, dtype=np.int64))


def flat(blocks: list[list[int]]) -> list[tuple[int, int]]:
    return [(k, r) for r, b in enumerate(blocks) for k in b]


def ttl_values(times) -> list[float]:
    """Thresholds worth testing: 0, infinity, and every reuse time and its neighbours
    (a time equal to T must be a hit)."""
    out = {0.0, 0.001, 1.5, math.inf}
    for t in (times or [])[:8]:
        out.update({float(t), float(t) + 0.001, max(float(t) - 0.001, 0.0)})
    return sorted(out)


def check_against_oracle(got: ReuseTimes, blocks: list[tuple[object, int]],
                         stamps: list[float], warmup: int, block_size: int,
                         counted_tokens: int) -> None:
    want = oracle_ttl.reuse_times(blocks, stamps, warmup)
    if want is None:
        assert got.times is None and got.reason
        assert got.count is None
        assert all(got.quantile(q) is None for q in QUANTILES)
    else:
        assert got.times is not None
        assert got.times.tolist() == [float(t) for t in want]
        for q in QUANTILES:
            expect = float(want[math.floor(Fraction(str(q)) * len(want))]) if want else None
            assert got.quantile(q) == expect
    for ttl in ttl_values(want):
        hit = oracle_ttl.ttl_hit_fraction(want, ttl, block_size, counted_tokens)
        if math.isnan(hit):
            assert math.isnan(got.ttl_hit_fraction(ttl))
        else:
            assert got.ttl_hit_fraction(ttl) == hit
        assert got.ttl_peak_tokens(ttl) == oracle_ttl.ttl_peak_tokens(
            blocks, stamps, ttl, block_size, warmup)


# --- engine == oracle ---------------------------------------------------------------

ID = st.integers(0, 6)


@st.composite
def mooncake_traces(draw):
    """Small Mooncake traces: millisecond stamps, non-decreasing with ties, requests
    without blocks, native/analysis block sizes taking the slot or the block path."""
    native = draw(st.sampled_from([4, 8, 16]))
    block = draw(st.sampled_from([b for b in (1, 2, 4, 8, 16, 32)
                                  if native % b == 0 or b % native == 0]))
    n = draw(st.integers(1, 10))
    steps = draw(st.lists(st.sampled_from([0, 0, 1, 7, 250, 1000, 1001, 60_000]),
                          min_size=n, max_size=n))
    records, now = [], draw(st.integers(0, 5_000))
    for step in steps:
        now += step
        ids = draw(st.lists(ID, max_size=6))
        length = draw(st.integers(0, len(ids) * native))
        records.append({"timestamp": now, "input_length": length, "hash_ids": ids})
    return native, block, records


@settings(max_examples=200, deadline=None)
@given(mooncake_traces(), st.data())
def test_mooncake_engine_equals_oracle(tmp_path_factory, trace, data):
    native, block, records = trace
    path = write_jsonl(records, tmp_path_factory.mktemp("ttl") / "t.jsonl")
    stream = load_block_stream(path, block_size=block, format="mooncake",
                               hash_block_size=native)
    warmup = data.draw(st.integers(0, len(records)))
    blocks = oracle.hash_id_blocks(records, block, native)
    stamps = [r["timestamp"] / 1000 for r in records]
    counted = sum(1 for _, r in blocks if r >= warmup) * block
    for s in (stream, dataclasses.replace(stream, layout=None)):  # slot and block paths
        got = ReuseTimes(s, warmup_requests=warmup)
        check_against_oracle(got, blocks, stamps, warmup, block, counted)


STAMP = st.one_of(st.integers(0, 40).map(lambda k: k / 4),
                  st.integers(0, 3_000).map(lambda k: k / 1000))


@st.composite
def raw_streams(draw):
    """BlockStreams with any stamps: sorted with ties, out of order, or some unknown."""
    n = draw(st.integers(0, 9))
    blocks = [draw(st.lists(st.integers(0, 5), max_size=5)) for _ in range(n)]
    stamps = draw(st.lists(STAMP, min_size=n, max_size=n))
    mode = draw(st.sampled_from(["sorted", "sorted", "as drawn", "unknown"]))
    if mode != "as drawn":
        stamps.sort()
    if mode == "unknown" and n:
        for r in draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=3)):
            stamps[r] = math.nan
    return blocks, stamps


@settings(max_examples=300, deadline=None)
@given(raw_streams(), st.data())
def test_any_stamps_engine_equals_oracle(raw, data):
    blocks, stamps = raw
    stream = stream_of(blocks, stamps)
    warmup = data.draw(st.integers(0, len(blocks)))
    counted = sum(len(b) for b in blocks[warmup:]) * stream.block_size
    got = ReuseTimes(stream, warmup_requests=warmup)
    check_against_oracle(got, flat(blocks), stamps, warmup, stream.block_size, counted)


@settings(max_examples=150, deadline=None)
@given(mooncake_traces(), st.integers(0, 10))
def test_pairs_come_from_the_interval_pass(tmp_path_factory, trace, counted_request):
    """The pairs of the same sort: the intervals are unchanged, and the pairs are every
    consecutive occurrence pair, on the slot path and on the block path."""
    native, block, records = trace
    path = write_jsonl(records, tmp_path_factory.mktemp("pairs") / "t.jsonl")
    stream = load_block_stream(path, block_size=block, format="mooncake",
                               hash_block_size=native)
    blocks = oracle.hash_id_blocks(records, block, native)
    last: dict[object, int] = {}
    want = Counter()
    for key, req in blocks:
        if key in last:
            want[(last[key], req)] += 1
        last[key] = req
    counted_from = int(np.searchsorted(stream.request, counted_request))
    for s in (stream, dataclasses.replace(stream, layout=None)):
        intervals, unique, pairs = reuse_intervals_and_pairs(s, counted_from=counted_from)
        alone, alone_unique = reuse_intervals(s, counted_from=counted_from)
        assert intervals.tolist() == alone.tolist() and unique == alone_unique
        repeats = pairs.repeats if pairs.repeats is not None else np.ones_like(pairs.first)
        got = Counter()
        for a, b, k in zip(pairs.first.tolist(), pairs.second.tolist(), repeats.tolist(),
                           strict=True):
            got[(a, b)] += k
        assert got == want
        assert pairs.count == sum(want.values())


def test_given_pairs_are_used_as_they_are():
    stream = stream_of([[1, 2], [1, 2], [2]], [0.0, 1.0, 4.0])
    _, _, pairs = reuse_intervals_and_pairs(stream)
    assert reuse_times(stream, pairs=pairs).times.tolist() == [1.0, 1.0, 3.0]


# --- the definitions, by hand -----------------------------------------------------------

def test_times_by_hand():
    # Key 1 in requests 0, 0, 2: the pair inside request 0 is skipped, but its second
    # block is still the previous occurrence of the pair that crosses to request 2.
    stream = stream_of([[1, 1, 5], [], [1, 5, 5]], [10.0, 11.0, 12.5])
    r = ReuseTimes(stream)
    assert r.times.tolist() == [2.5, 2.5]
    assert r.quantile(0.5) == 2.5
    assert r.ttl_hit_fraction(2.5) == 2 * 4 / 24
    assert r.ttl_hit_fraction(2.4) == 0.0
    # At request 2's arrival keys 1 and 5 are resident (from request 0, or touched now).
    assert r.ttl_peak_tokens(0) == 2 * 4
    assert r.ttl_peak_tokens(math.inf) == 2 * 4


def test_own_new_blocks_count_at_arrival():
    stream = stream_of([[1, 2, 3], [4]], [0.0, 100.0])
    r = ReuseTimes(stream)
    assert r.times.tolist() == []
    assert r.quantile(0.5) is None
    assert r.ttl_peak_tokens(0) == 3 * 4  # request 0's own three blocks, at its arrival
    assert r.ttl_peak_tokens(99.999) == 3 * 4
    assert r.ttl_peak_tokens(100) == 4 * 4  # request 0's keys still resident at 100 s


def test_equal_timestamps_and_warmup():
    stream = stream_of([[1, 2], [1, 3], [1, 4]], [5.0, 5.0, 5.0])
    r = ReuseTimes(stream, warmup_requests=2)
    assert r.times.tolist() == [0.0]  # only the pair into request 2 is counted
    assert r.ttl_hit_fraction(0) == 4 / 8
    assert r.ttl_peak_tokens(0) == 4 * 4  # warm-up touches stay resident


def test_millisecond_stamps_subtract_exactly():
    # 100.1 - 100.0 is 0.09999999999999432 in floats; on the microsecond grid it is 0.1.
    stream = stream_of([[1], [1]], [100.0, 100.1])
    r = ReuseTimes(stream)
    assert r.times.tolist() == [0.1]
    assert r.ttl_hit_fraction(0.1) == 0.5
    assert r.ttl_peak_tokens(0.1) == 4


def test_quantile_reads_q_as_its_decimal():
    # Key k first at k seconds, all again at 10 s: times 1, 2, ..., 10.
    stream = stream_of([[k] for k in range(10)] + [list(range(10))],
                       [float(k) for k in range(11)])
    times = ReuseTimes(stream)
    assert times.times.tolist() == [float(k) for k in range(1, 11)]
    # sorted[floor(0.3 * 10)] = sorted[3], though 0.3 * 10 < 3 in floats.
    assert times.quantile(0.3) == 4.0
    assert times.quantile(0.5) == 6.0


# --- undefined, never an error ------------------------------------------------------------

def assert_undefined(r: ReuseTimes) -> None:
    assert not r.defined and r.times is None and r.count is None
    assert r.reason
    assert r.quantile(0.5) is None
    assert math.isnan(r.ttl_hit_fraction(60))
    assert r.ttl_peak_tokens(60) is None
    assert "undefined" in repr(r)


def test_no_timestamps_is_undefined(tmp_path):
    rows = [{"input_length": 64, "hash_ids": [1]}, {"input_length": 64, "hash_ids": [1]}]
    stream = load_block_stream(write_jsonl(rows, tmp_path / "t.jsonl"), block_size=16)
    assert np.isnan(stream.timestamps).all()
    assert_undefined(ReuseTimes(stream))


def test_one_counted_request_without_a_stamp_is_undefined():
    r = ReuseTimes(stream_of([[1], [2], [1]], [0.0, math.nan, 2.0]))
    assert_undefined(r)
    assert "request 1" in r.reason


def test_warmup_requests_without_blocks_need_no_stamp():
    r = ReuseTimes(stream_of([[1], [], [1]], [0.0, math.nan, 2.0]), warmup_requests=2)
    assert r.times.tolist() == [2.0]


def test_decreasing_stamps_are_undefined():
    r = ReuseTimes(stream_of([[1], [2], [1]], [0.0, 5.0, 3.0]))
    assert_undefined(r)
    assert "decrease at request 2" in r.reason


def test_out_of_order_stamp_of_an_idle_warmup_request_is_ignored():
    r = ReuseTimes(stream_of([[1], [], [1]], [0.0, 99.0, 3.0]), warmup_requests=2)
    assert r.times.tolist() == [3.0]


def test_empty_stream():
    r = ReuseTimes(stream_of([], []))
    assert r.times.tolist() == [] and r.quantile(0.5) is None
    assert math.isnan(r.ttl_hit_fraction(1)) and r.ttl_peak_tokens(1) is None


# --- bad arguments are errors -----------------------------------------------------------

@pytest.mark.parametrize("q", [1.0, -0.1, math.nan, 2, True, "0.5", None])
def test_bad_quantile(q):
    for stream in (stream_of([[1], [1]], [0.0, 1.0]), stream_of([[1], [1]], [math.nan] * 2)):
        with pytest.raises(KvReuseError, match="quantile"):
            ReuseTimes(stream).quantile(q)


@pytest.mark.parametrize("ttl", [-1, -0.001, math.nan, -math.inf, True, "60", None])
def test_bad_ttl(ttl):
    r = ReuseTimes(stream_of([[1], [1]], [0.0, 1.0]))
    with pytest.raises(KvReuseError, match="TTL"):
        r.ttl_hit_fraction(ttl)
    with pytest.raises(KvReuseError, match="TTL"):
        r.ttl_peak_tokens(ttl)


@pytest.mark.parametrize("warmup", [-1, 4, 0.5, True])
def test_bad_warmup(warmup):
    with pytest.raises(KvReuseError, match="warmup_requests"):
        ReuseTimes(stream_of([[1], [1], [2]], [0.0, 1.0, 2.0]), warmup_requests=warmup)


# --- units ------------------------------------------------------------------------------

def test_mooncake_milliseconds_become_seconds(tmp_path):
    rows = [{"timestamp": 0, "input_length": 512, "hash_ids": [1]},
            {"timestamp": 59_355, "input_length": 512, "hash_ids": [1]}]
    stream = load_block_stream(write_jsonl(rows, tmp_path / "m.jsonl"), block_size=64)
    assert stream.timestamps.tolist() == [0.0, 59.355]
    assert ReuseTimes(stream).quantile(0.5) == 59.355


def test_bailian_seconds_stay_seconds(tmp_path):
    rows = [{"chat_id": 1, "parent_chat_id": -1, "timestamp": 0.25, "input_length": 16,
             "hash_ids": [1]},
            {"chat_id": 2, "parent_chat_id": 1, "timestamp": 61.5, "input_length": 16,
             "hash_ids": [1]}]
    stream = load_block_stream(write_jsonl(rows, tmp_path / "b.jsonl"), block_size=16)
    assert stream.meta["format"] == "bailian"
    assert ReuseTimes(stream).times.tolist() == [61.25]


def test_aiperf_payload_milliseconds_become_seconds(tmp_path):
    doc = {"data": [{"session_id": "s", "payloads": [
        {"messages": [{"role": "user", "content": "hello " * 20}], "timestamp": 1500},
        {"messages": [{"role": "user", "content": "hello " * 20}], "timestamp": 4000}]}]}
    path = tmp_path / "inputs.json"
    path.write_text(json.dumps(doc))
    stream = load_block_stream(path, block_size=4, cache_dir=tmp_path / "cache")
    assert stream.timestamps.tolist() == [1.5, 4.0]
    assert ReuseTimes(stream).quantile(0.0) == 2.5


def test_chat_jsonl_seconds_stay_seconds(tmp_path):
    rows = [{"messages": [{"role": "user", "content": "hello " * 20}], "timestamp": 10},
            {"messages": [{"role": "user", "content": "hello " * 20}], "timestamp": 12.5}]
    stream = load_block_stream(write_jsonl(rows, tmp_path / "c.jsonl"), block_size=4,
                               cache_dir=tmp_path / "cache")
    assert stream.timestamps.tolist() == [10.0, 12.5]


# --- reference figures (analysis.md section 7) ------------------------------------------

@pytest.fixture(scope="module")
def mooncake_times(request):
    shared = request.getfixturevalue("shared_traces")
    return ReuseTimes(load_block_stream(shared / "mooncake_synthetic_trace.jsonl",
                                        block_size=64))


def test_reference_reuse_times(mooncake_times):
    r = mooncake_times
    assert r.count == 622_601
    assert r.quantile(0.5) == 59.355
    assert r.quantile(0.9) == 281.764
    assert float(r.times[-1]) == 792.834


@pytest.mark.parametrize("ttl, percent", [(10, 10.91099), (60, 32.82645), (600, 64.66953)])
def test_reference_ttl_hit_fraction(mooncake_times, ttl, percent):
    assert round(mooncake_times.ttl_hit_fraction(ttl) * 100, 5) == percent


def test_reference_ttl_peak_bounds(mooncake_times):
    # An unbounded TTL keeps every key ever seen: the peak is all unique blocks.
    assert mooncake_times.ttl_peak_tokens(math.inf) == 331_666 * 64
    peaks = [mooncake_times.ttl_peak_tokens(t) for t in (0, 10, 60, 600)]
    assert peaks == sorted(peaks)
