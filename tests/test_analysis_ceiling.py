"""ReuseAnalysis wiring of issue 13: OPT (lazy), reuse times from the interval sort, TTL
figures, block-level policies; their registry entries, checks and result documents."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from oracle_lru import make_stream
from oracle_opt import opt_replay
from oracle_ttl import reuse_times as oracle_reuse_times
from oracle_ttl import ttl_hit_fraction as oracle_ttl_hit
from oracle_ttl import ttl_peak_tokens as oracle_ttl_peak

from pytest_kvreuse import analyze
from pytest_kvreuse.checks import Check, evaluate
from pytest_kvreuse.core import analysis as analysis_module
from pytest_kvreuse.core.analysis import ReuseAnalysis
from pytest_kvreuse.errors import KvReuseError
from pytest_kvreuse.formatting import SECONDS, seconds, value_text
from pytest_kvreuse.metrics import (
    METRICS,
    MetricError,
    figure_title,
    parse_name,
    parse_seconds,
)
from pytest_kvreuse.result import TraceResult

B = 4
requests_st = st.lists(st.lists(st.integers(0, 9), max_size=6), max_size=10)


def stamped(requests: list[list[int]], stamps: list[float]) -> ReuseAnalysis:
    stream = make_stream(requests, block_size=B)
    stream = dataclasses.replace(stream, timestamps=np.asarray(stamps, dtype=np.float64))
    return ReuseAnalysis(stream)


def test_opt_is_lazy_and_matches_the_oracle():
    requests = [[1, 2, 3], [1, 2, 4], [5, 1], [3, 2, 1]]
    a = ReuseAnalysis(make_stream(requests, block_size=B))
    assert not a.opt_computed and "opt_s" not in a.timings
    for m in range(0, 8):
        expected = opt_replay(requests, m) * B / a.counted_tokens
        assert a.opt_hit_fraction(m * B) == pytest.approx(expected)
        assert a.opt_hit_fraction(m * B) >= a.lru_hit_fraction(m * B)
    assert a.opt_computed and "opt_s" in a.timings
    x, hit = a.opt_curve()
    assert np.all(np.diff(hit) >= 0) and x.size == hit.size
    ox, share = a.opt_offloadable_curve()
    assert np.allclose(share, (1 - a.compulsory_fraction) - hit)


def test_interval_only_path_computes_no_opt(monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("OPT computed")

    monkeypatch.setattr(analysis_module, "opt_profile", boom)
    a = ReuseAnalysis(make_stream([[1, 2], [1, 2]], block_size=B))
    r = TraceResult.from_analysis(a, name="t", sizes=[8])
    assert "opt_hit_fraction" not in r.figures and "opt" not in r.curves
    assert a.lru_hit_fraction(8) == 0.5


def test_pairs_come_from_the_interval_sort(monkeypatch):
    from pytest_kvreuse.core import times as times_module

    def boom(*args, **kwargs):
        raise AssertionError("second pass over the blocks")

    monkeypatch.setattr(times_module, "reuse_intervals_and_pairs", boom)
    a = stamped([[1, 2], [1, 2], [2]], [0.0, 10.0, 70.0])
    assert a.reuse_times.tolist() == [10.0, 10.0, 60.0]


@settings(max_examples=150, deadline=None)
@given(requests_st, st.data())
def test_times_equal_the_plain_oracle(requests, data):
    gaps = data.draw(st.lists(st.sampled_from([0.0, 0.5, 1.0, 7.25, 60.0]),
                              min_size=len(requests), max_size=len(requests)))
    stamps = np.cumsum(gaps).tolist()
    a = stamped(requests, stamps)
    blocks = [(k, r) for r, req in enumerate(requests) for k in req]
    expected = oracle_reuse_times(blocks, stamps)
    assert [float(t) for t in expected] == a.reuse_times.tolist()
    for ttl in (0, 1, 7.25, 60, 1e9):
        got = a.ttl_hit_fraction(ttl)
        want = oracle_ttl_hit(expected, ttl, B, a.counted_tokens)
        assert (math.isnan(got) and math.isnan(want)) or got == pytest.approx(want)
        assert a.ttl_peak_tokens(ttl) == oracle_ttl_peak(blocks, stamps, ttl, B)
    if expected:
        assert a.reuse_time_quantile(0.5) == float(expected[len(expected) // 2])


def test_no_timestamps_is_undefined_and_a_check_says_why():
    a = ReuseAnalysis(make_stream([[1, 2], [1, 2]], block_size=B))
    assert a.reuse_times is None and a.reuse_time_quantile(0.5) is None
    assert math.isnan(a.ttl_hit_fraction(60)) and a.ttl_peak_tokens(60) is None
    assert a.times_reason == "the trace carries no timestamps"
    for check in (Check("ttl_hit_fraction", 600, min=0.1), Check("reuse_time_p50", max=5),
                  Check("ttl_peak_tokens", 60, max=100)):
        value, message = evaluate(a, check.validate())
        assert math.isnan(value)
        assert message.endswith("is undefined: the trace carries no timestamps"), message
    r = TraceResult.from_analysis(a, name="t", sizes=[8], ttls=[60])
    # Undefined where the trace cannot have them: left out, not an error.
    assert not any(k.startswith(("ttl_", "reuse_time_")) for k in r.figures)
    assert "reuse_time" not in r.curves


def test_decreasing_stamps_give_their_own_reason():
    a = stamped([[1], [1], [1]], [5.0, 1.0, 9.0])
    value, message = evaluate(a, Check("ttl_hit_fraction", 60, min=0.1).validate())
    assert "timestamps decrease at request 1" in message


def test_ttl_check_message_reads_seconds():
    a = stamped([[1, 2], [1, 2]], [0.0, 30.0])
    value, message = evaluate(a, Check("ttl_hit_fraction", 10, min=0.1).validate())
    assert value == 0.0
    assert message.startswith("ttl_hit_fraction at 10 s is 0"), message
    assert evaluate(a, Check("ttl_hit_fraction", 30, min=0.5).validate()) == (0.5, None)
    assert evaluate(a, Check("reuse_time_p50", max=30).validate()) == (30.0, None)


@pytest.mark.parametrize("text, seconds_", [
    ("600s", 600), ("10min", 600), ("1h", 3600), ("600", 600), (600, 600), ("1.5h", 5400),
    ("0.25", 0.25), (" 90 s ".replace(" s", "s"), 90), ("2 min", 120)])
def test_parse_seconds(text, seconds_):
    v = parse_seconds("at", text)
    assert v == seconds_ and type(v) is type(seconds_)


@pytest.mark.parametrize("bad", ["-1", "10d", "", "1e400", True, float("nan"), "h"])
def test_parse_seconds_refuses(bad):
    with pytest.raises(MetricError, match="'at' must be"):
        parse_seconds("at", bad)


def test_ttl_figure_key_is_whole_seconds():
    m = METRICS["ttl_hit_fraction"]
    args = m.read_args({"at": "10min"})
    assert args == {"at": 600}
    a = stamped([[1, 2], [1, 2]], [0.0, 30.0])
    r = TraceResult.from_analysis(a, name="t", ttls=["10min", "1h", 60])
    assert list(r.figures["ttl_hit_fraction"]) == ["60", "600", "3600"]
    assert r.value("ttl_hit_fraction", at="10min") == 0.5
    assert r.figures["ttl_peak_tokens"]["600"] == 2 * B
    assert figure_title("ttl_hit_fraction", {"at": 600}) == "TTL hit at 600 s"
    x = r.curves["reuse_time"]["x"]
    assert x == [30.0]


def test_seconds_unit_formats():
    assert seconds(59.355) == "59.355 s"
    assert seconds(3600) == "3,600 s"
    assert seconds(None) == "—" and seconds(float("nan"), "undefined") == "undefined"
    assert value_text(SECONDS, 0.0) == "0 s"
    assert METRICS["reuse_time_p90"].unit == SECONDS


def test_opt_only_when_asked():
    a = ReuseAnalysis(make_stream([[1, 2, 3], [1, 2], [3, 1]], block_size=B))
    plain = TraceResult.from_analysis(a, name="t", sizes=[8])
    assert not METRICS["opt_hit_fraction"].default
    assert "opt_hit_fraction" not in plain.figures and not a.opt_computed
    asked = TraceResult.from_analysis(a, name="t", sizes=[8, 12],
                                      include=("opt_hit_fraction", "opt_gap_fraction"))
    assert set(asked.figures["opt_hit_fraction"]) == {"8", "12"}
    gap = asked.figures["opt_gap_fraction"]["8"]
    assert gap == pytest.approx(a.opt_hit_fraction(8) - a.lru_hit_fraction(8))
    assert "opt" in asked.curves
    # A check naming OPT at one size computes that figure alone.
    checked = TraceResult.from_analysis(a, name="t", sizes=[8, 12],
                                        figures=[("opt_hit_fraction", {"at": 8})])
    assert list(checked.figures["opt_hit_fraction"]) == ["8"]
    with pytest.raises(MetricError, match="unknown metric"):
        TraceResult.from_analysis(a, name="t", include=("nope",))


def test_merge_keeps_the_curves_of_either_side():
    a = ReuseAnalysis(make_stream([[1, 2, 3], [1, 2], [3, 1]], block_size=B))
    mine = TraceResult.from_analysis(a, name="t", sizes=[8])
    other = TraceResult.from_analysis(a, name="t", sizes=[8], include=("opt_hit_fraction",))
    mine.merge(other)
    assert "opt" in mine.curves and "opt_hit_fraction" in mine.figures


def test_policy_argument_and_missing_extra(without_libcachesim):
    assert parse_name("policy", " S3FIFO ") == "s3fifo"
    with pytest.raises(MetricError):
        parse_name("policy", "arc; rm")
    m = METRICS["policy_hit_fraction"]
    assert m.read_args({"at": "345,792", "policy": "ARC"}) == {"at": 345792, "policy": "arc"}
    assert not m.sized
    assert figure_title("policy_hit_fraction", {"at": 8, "policy": "arc"}) == \
        "block-level hit at 8 tokens, policy arc"
    a = ReuseAnalysis(make_stream([[1, 2], [1, 2]], block_size=B))
    with pytest.raises(KvReuseError, match=r"pytest-kvreuse\[policies\]"):
        a.policy_hit_fraction("arc", 8)
    # A check on it is an error of one line naming the extra, not a failed bound.
    with pytest.raises(KvReuseError, match=r"pytest-kvreuse\[policies\]"):
        evaluate(a, Check("policy_hit_fraction", 8, min=0.1,
                          args=(("policy", "arc"),)).validate())
    # A result asked for it still builds: the figure is null, the check record says why.
    r = TraceResult.from_analysis(a, name="t", sizes=[8], policies=["arc"])
    assert r.figures["policy_hit_fraction"] == {"8,policy=arc": None}


def test_policy_hit_fraction_with_libcachesim():
    pytest.importorskip("libcachesim")
    requests = [[1, 2, 3], [1, 2, 4], [5, 1], [3, 2, 1]]
    a = ReuseAnalysis(make_stream(requests, block_size=B))
    for m in range(1, 6):
        assert a.policy_hit_fraction("belady", m * B) == pytest.approx(
            opt_replay(requests, m) * B / a.counted_tokens)


# -- reference figures (analysis.md sections 6 and 7) ------------------------------------

@pytest.fixture(scope="module")
def mooncake(request):
    shared = request.getfixturevalue("shared_traces")
    return analyze(shared / "mooncake_synthetic_trace.jsonl", block_size=64)


def test_section7_reference_figures(mooncake):
    a = mooncake
    assert a.reuse_times.size == 622_601
    assert a.reuse_time_quantile(0.5) == 59.355
    assert a.reuse_time_quantile(0.9) == 281.764
    assert float(a.reuse_times[-1]) == 792.834
    for ttl, pct in ((10, 10.91099), (60, 32.82645), (600, 64.66953)):
        assert round(a.ttl_hit_fraction(ttl) * 100, 5) == pct
    assert a.ttl_peak_tokens(math.inf) == 331_666 * 64
    r = TraceResult.from_analysis(a, name="m", sizes=[345_792], ttls=["10s", "1min", "10min"])
    assert r.figures["reuse_time_p50"] == 59.355
    assert [round(v * 100, 5) for v in r.figures["ttl_hit_fraction"].values()] == \
        [10.91099, 32.82645, 64.66953]


def test_section6_reference_figures(mooncake):
    a = mooncake
    for cache, pct in ((345_792, 23.5594), (1_000_000, 38.3532), (4_000_000, 60.4419),
                       (16_000_000, 65.2439)):
        assert round(a.opt_hit_fraction(cache) * 100, 4) == pct
    assert a.opt.hits(345_792) == 224_820
    # The gap docs/opt.md quotes: 23.5594 % - 6.3034 % at 345,792 tokens.
    assert round((a.opt_hit_fraction(345_792) - a.lru_hit_fraction(345_792)) * 100, 4) == 17.2561
