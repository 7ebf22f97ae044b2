"""Sampled analysis (docs/sampling.md): a fixed hash, the exact invariants of a spatial
sample (kept keys' intervals and reuse times exact, counts and distances scaled by the
rate), rate 1 equal to the exact analysis, the reference trace within its error, and the
sample marked as such in the CLI, JSON, manifest checks."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from oracle_lru import naive_stack_distances

from pytest_kvreuse import KvReuseError, analyze
from pytest_kvreuse.checks import Check, evaluate
from pytest_kvreuse.cli import main
from pytest_kvreuse.core.analysis import ReuseAnalysis
from pytest_kvreuse.core.blocks import BlockStream
from pytest_kvreuse.core.sampled import SampledAnalysis
from pytest_kvreuse.core.sampling import (
    GROUPS,
    keep_below,
    key_hash,
    mix64,
    rate_threshold,
    sample_stream,
)
from pytest_kvreuse.loaders import sampled as sampled_loader
from pytest_kvreuse.metrics import METRICS, NOT_SAMPLED, sampling_of
from pytest_kvreuse.params import AnalysisParams, ParamError
from pytest_kvreuse.plugin.manifest import load_manifest

SIZES = (345_792, 1_000_000, 4_000_000, 16_000_000)
SHARED = "mooncake_synthetic_trace.jsonl"


def make_stream(requests: list[list[int]], block_size: int = 4) -> BlockStream:
    keys = [k for req in requests for k in req]
    owner = [r for r, req in enumerate(requests) for _ in req]
    return BlockStream(
        keys=np.asarray(keys, dtype=np.int64), request=np.asarray(owner, dtype=np.int64),
        block_size=block_size,
        prompt_tokens=np.asarray([len(r) * block_size for r in requests], dtype=np.int64),
        timestamps=np.arange(len(requests), dtype=np.float64) * 1.5,
        sessions=np.full(len(requests), -1, dtype=np.int64))


def sampled(stream: BlockStream, rate: float, max_keys: int | None = None,
            warmup: float = 0.0) -> SampledAnalysis:
    s, sample = sample_stream(stream, key_hash(stream.keys), rate, max_keys)
    return SampledAnalysis(s, sample, warmup=warmup)


# -- the hash ----------------------------------------------------------------------------


def test_hash_is_fixed() -> None:
    # splitmix64 seeded 0: its first output is mix64(golden gamma), a published constant.
    assert int(mix64(np.array([0x9E3779B97F4A7C15], dtype=np.uint64))[0]) \
        == 0xE220A8397B1DCDAF
    got = key_hash(np.array([0, 1, 2**62, -1]), np.array([0, 1, 2, 7]))
    assert [int(x) for x in got] == [0xE220A8397B1DCDAF, 0x5F552CE482F2AA47,
                                     0xD5F47EA3BAA374AB, 0xC62E5652A694833F]
    assert key_hash(np.array([5]))[0] == key_hash(np.array([5]), 0)[0]


def test_rate_threshold_bounds() -> None:
    assert keep_below(np.array([2**64 - 1], dtype=np.uint64), rate_threshold(1.0)).all()
    assert int(rate_threshold(0.5)) == 2**63
    with pytest.raises(ValueError):
        rate_threshold(0.0)


def test_hash_spreads_small_ids() -> None:
    # Dense ids 0, 1, 2, ... must not all land on one side of a threshold.
    kept = keep_below(key_hash(np.arange(100_000)), rate_threshold(0.01)).mean()
    assert 0.008 < kept < 0.012


# -- exact invariants on random traces ---------------------------------------------------


def oracle_pairs(requests: list[list[int]]) -> list[tuple[int, int, int, int]]:
    """(key, interval in blocks, request of a, request of b) of every cross-request pair."""
    last: dict[int, tuple[int, int]] = {}
    out = []
    pos = 0
    for r, req in enumerate(requests):
        for k in req:
            if k in last and last[k][1] != r:
                out.append((k, pos - last[k][0] - 1, last[k][1], r))
            last[k] = (pos, r)
            pos += 1
    return out


traces = st.lists(st.lists(st.integers(0, 15), max_size=6), min_size=1, max_size=14)


@settings(max_examples=150, deadline=None)
@given(requests=traces, rate=st.sampled_from([0.15, 0.4, 0.7, 1.0]))
def test_kept_keys_are_exact_and_counts_scale(requests: list[list[int]], rate: float) -> None:
    stream = make_stream(requests)
    a = sampled(stream, rate)
    threshold = rate_threshold(rate)
    keys = sorted({k for req in requests for k in req})
    kept = {k for k, h in zip(keys, key_hash(np.asarray(keys, dtype=np.int64)), strict=True)
            if keep_below(np.asarray([h]), threshold)[0]}
    pairs = [p for p in oracle_pairs(requests) if p[0] in kept]
    # Intervals and reuse times of kept keys: those of the whole stream, exactly.
    assert a.intervals.tolist() == sorted(p[1] * 4 for p in pairs)
    assert (a.reuse_times.tolist() if a.reuse_times is not None else []) == sorted(
        (p[3] - p[2]) * 1.5 for p in pairs)
    assert a.num_blocks == stream.num_blocks and a.total_tokens == stream.total_tokens
    assert a.reuse_count == round(len(pairs) / a.rate)
    assert a.unique_blocks == round(len(kept) / a.rate)
    kept_blocks = sum(k in kept for req in requests for k in req)
    assert a.sample.kept_blocks == kept_blocks
    for c in (0, 4, 9, 40):
        beyond = sum(p[1] * 4 > c for p in pairs)
        expect = beyond / kept_blocks if kept_blocks else math.nan
        assert a.offloadable_fraction(c) == pytest.approx(expect, nan_ok=True)
    # Stack distances measured on the kept touches (tail first), divided by the rate.
    touched = [k for req in requests for k in reversed(req) if k in kept]
    dist = sorted(math.floor(d / a.rate) if a.rate < 1 else d
                  for d in naive_stack_distances(touched) if d is not None)
    assert a.lru.distances.tolist() == dist


@settings(max_examples=60, deadline=None)
@given(requests=traces, warmup=st.sampled_from([0.0, 0.3]))
def test_rate_one_is_the_exact_analysis(requests: list[list[int]], warmup: float) -> None:
    stream = make_stream(requests)
    exact = ReuseAnalysis(stream, warmup=warmup)
    a = sampled(stream, 1.0, warmup=warmup)
    for m in METRICS.values():
        if m.name in NOT_SAMPLED or m.name == "policy_hit_fraction":
            continue
        for args in ({},) if not m.args else [{"at": s} for s in (0, 4, 8, 30)]:
            if m.args and m.args[0].name != "at" or len(m.args) > 1:
                continue
            assert m.value(a, **args) == pytest.approx(m.value(exact, **args)), m.name
    assert a.figure_error("lru_hit_fraction", at=8) in (None, 0.0)


def test_fixed_size_keeps_at_most_the_budget() -> None:
    rng = np.random.default_rng(3)
    requests = [list(rng.integers(0, 5000, 20)) for _ in range(400)]
    stream = make_stream(requests)
    for budget in (10, 100, 1000):
        a = sampled(stream, 1.0, max_keys=budget)
        assert a.sample.kept_keys == budget
        # The final sample is the fixed-rate one at the final threshold.
        hashes = key_hash(stream.keys)
        kept_keys = np.unique(hashes[hashes < rate_threshold(a.rate)])
        assert kept_keys.shape[0] in (budget, budget + 1)  # rate -> threshold rounding


# -- the shared trace ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def exact(shared_traces: Path) -> ReuseAnalysis:
    return analyze(shared_traces / SHARED)


def test_rate_one_on_the_reference_trace(shared_traces: Path, exact: ReuseAnalysis) -> None:
    a = analyze(shared_traces / SHARED, sample=1.0)
    # docs/definitions.md §4, reproduced through the sampled path.
    assert a.reuse_count == 622_601 and a.unique_blocks == 331_666
    assert round(a.offloadable_fraction(345_792) * 100, 4) == 59.4846
    for c in SIZES:
        assert a.offloadable_fraction(c) == exact.offloadable_fraction(c)
        assert a.lru_hit_fraction(c) == exact.lru_hit_fraction(c)
    assert a.ttl_hit_fraction(60) == exact.ttl_hit_fraction(60)


def test_reference_trace_within_its_error_at_rate_0_1(shared_traces: Path,
                                                      exact: ReuseAnalysis) -> None:
    a = analyze(shared_traces / SHARED, sample=0.1)
    assert 0.095 < a.sample.kept_keys / exact.unique_blocks < 0.105
    for c in SIZES:
        for name in ("offloadable_fraction", "lru_hit_fraction"):
            got, want = METRICS[name].value(a, at=c), METRICS[name].value(exact, at=c)
            error = a.figure_error(name, at=c)
            # Measured (bench/bench_sampling.py): under 0.2 points at this rate.
            assert abs(got - want) < 0.005, (name, c)
            assert 0 < error < 0.01 and abs(got - want) < 4 * error, (name, c, error)


def test_chunks_do_not_change_the_sample(shared_traces: Path, monkeypatch) -> None:
    whole = analyze(shared_traces / SHARED, sample=0.05, block_size=512)
    monkeypatch.setattr(sampled_loader, "CHUNK_REQUESTS", 7)
    for params in ({"sample": 0.05, "block_size": 512}, {"sample_keys": 300}):
        chunked = analyze(shared_traces / SHARED, **params)
        if "sample_keys" in params:
            assert chunked.sample.kept_keys == 300
            continue
        assert np.array_equal(chunked.stream.positions, whole.stream.positions)
        assert chunked.lru_hit_fraction(10**6) == whole.lru_hit_fraction(10**6)


@pytest.mark.parametrize("block_size", [64, 512, 1024])
def test_sample_follows_the_original_keys(shared_traces: Path, block_size: int) -> None:
    """The kept blocks are exactly those whose (hash id, sub-block) hashes below the rate:
    a plain loop over the records, the oracle."""
    path = shared_traces / SHARED
    rate = 0.02
    keys, subs = [], []
    with open(path) as fh:
        for line in fh:
            rec = json.loads(line)
            ids = rec["hash_ids"]
            for j in range(rec["input_length"] // block_size):
                if block_size <= 512:
                    keys.append(ids[j * block_size // 512])
                    subs.append((j * block_size % 512) // block_size)
                else:
                    keys.append(ids[(j + 1) * block_size // 512 - 1])
                    subs.append(0)
    hashes = key_hash(np.asarray(keys, dtype=np.int64), np.asarray(subs))
    expect = np.flatnonzero(hashes < rate_threshold(rate))
    a = analyze(path, sample=rate, block_size=block_size)
    assert a.stream.positions.tolist() == expect.tolist() and a.num_blocks == len(keys)


def test_sampled_figures_say_so(shared_traces: Path) -> None:
    assert sampling_of("num_blocks") == "exact" and sampling_of("interval_min") == "none"
    a = analyze(shared_traces / SHARED, sample=0.01)
    assert a.interval_min is None and a.interval_max is None
    assert len(a.groups) == GROUPS
    value, message = evaluate(a, Check("lru_hit_fraction", 1_000_000, None, 0.01))
    assert "sampled at rate 0.01" in message and "standard error" in message
    assert "points" in message
    _, message = evaluate(a, Check("num_blocks", None, None, 10))
    assert "sampled" not in message  # counted exactly


def test_params_and_manifest_key(tmp_path: Path) -> None:
    assert AnalysisParams(sample=0.01).sampled
    assert "sampled at rate 0.01" in AnalysisParams(sample=0.01).describe("mooncake")
    for bad in (0, 1.5, -0.1, True, "x"):
        with pytest.raises(ParamError, match="sampling rate"):
            AnalysisParams(sample=bad)
    with pytest.raises(ParamError):
        AnalysisParams(sample_keys=0)
    path = tmp_path / "kvreuse.toml"
    path.write_text('[[trace]]\npath = "t.jsonl"\nsample = 0.01\nsample_keys = 1000000\n')
    (t,) = load_manifest(path).traces
    assert t.params == AnalysisParams(sample=0.01, sample_keys=1_000_000)


def test_cli_prints_sampled_figures_with_their_error(shared_traces: Path, tmp_path: Path,
                                                     capsys) -> None:
    out_json = tmp_path / "r.json"
    code = main(["analyze", str(shared_traces / SHARED), "--sample", "0.01",
                 "--gpu-kv-cache-size", "1000000", "--json", str(out_json)])
    out = capsys.readouterr().out
    assert code == 0
    assert "SHARDS, sampled at rate 0.01" in out
    assert "LRU hit at 1,000,000 tokens: " in out and "± " in out and "points" in out
    assert "min not sampled" in out
    trace = json.loads(out_json.read_text())["traces"][0]
    assert trace["sample"]["rate"] == 0.01
    assert trace["sample"]["errors"]["lru_hit_fraction"]["1000000"] > 0
    assert "interval_min" in trace["sample"]["not_sampled"]
    assert trace["figures"]["num_blocks"] == 954_267  # counted, not estimated


def test_cli_refuses_a_bad_rate(shared_traces: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["analyze", str(shared_traces / SHARED), "--sample", "2"])
    assert exc.value.code == 2
    assert "sampling rate in (0, 1]" in capsys.readouterr().err


def test_plugin_manifest_check_on_a_sampled_figure_says_so(pytester: pytest.Pytester,
                                                           shared_traces: Path) -> None:
    pytester.makefile(".toml", kvreuse=f"""\
[[trace]]
name = "synthetic"
path = "{shared_traces / SHARED}"
sample = 0.01
gpu_cache_tokens = 1000000

[[trace.check]]
metric = "lru_hit_fraction"
max = 0.01
""")
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "sampled at rate 0.01" in out and "standard error" in out
    assert "~" in out  # the summary marks the estimates


def test_figures_a_sample_cannot_give_say_why(shared_traces):
    trace = shared_traces / "mooncake_synthetic_trace.jsonl"
    exact = analyze(trace)
    a = analyze(trace, sample=0.5)
    # Hit tokens are an estimate of the exact count, scaled as every count is.
    assert abs(a.lru_hit_tokens(345_792) - exact.lru_hit_tokens(345_792)) \
        < 0.2 * exact.lru_hit_tokens(345_792)
    with pytest.raises(KvReuseError, match="router's choice"):
        a.routed(1_000_000, replicas=4, routing="prefix")
    assert a.turn_breaks is None and "sample keeps only some" in a.breaks_reason
    with pytest.raises(KvReuseError, match="top prefixes"):
        a.top_prefixes(3)
