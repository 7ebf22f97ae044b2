"""Capacity planning: the smallest LRU cache reaching a hit fraction, and the lower tier
beyond which more serves under 1 %: equal to a plain scan over every size, on random traces
and on the shared synthetic trace."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from oracle_lru import make_stream

from pytest_kvreuse import KvReuseError, analyze
from pytest_kvreuse.cli import main
from pytest_kvreuse.core.analysis import ReuseAnalysis
from pytest_kvreuse.plugin.manifest import ManifestError, load_manifest

B = 4
EXAMPLE = Path(__file__).resolve().parents[1] / "example_traces" / "chat_sessions.mooncake.jsonl"
requests_st = st.lists(st.lists(st.integers(0, 9), max_size=6), max_size=12)


def scan_capacity(a: ReuseAnalysis, hit: float) -> int | None:
    """The oracle: try every cache size, smallest first."""
    for m in range(a.num_blocks + 2):
        if a.lru_hit_fraction(m * B) >= hit:
            return m * B
    return None


def scan_lower_tier(a: ReuseAnalysis, gpu: int, share: float) -> int | None:
    if not a.counted_tokens:
        return None
    unbounded = round(a.lru_offloadable_fraction(gpu) * a.counted_tokens / B)
    if unbounded == 0:
        return None
    for m2 in range(a.num_blocks + 2):
        served = round(a.lru_offloadable_fraction(gpu, m2 * B) * a.counted_tokens / B)
        if served >= share * unbounded - 1e-9:
            return m2 * B
    raise AssertionError("an unbounded tier serves everything")


@settings(max_examples=150, deadline=None)
@given(requests_st, st.integers(0, 4), st.floats(0, 1), st.sampled_from(["ideal", "vllm"]),
       st.sampled_from(["blocks", "prompt", "per-request"]))
def test_capacity_equals_a_scan_over_every_size(requests, warmup, hit, engine, denominator):
    a = ReuseAnalysis(make_stream(requests, block_size=B), warmup=min(warmup / 5, 0.8),
                      engine=engine, denominator=denominator)
    if not a.counted_tokens:
        assert a.lru_capacity_for(hit) is None
        return
    # The hit fractions a cache actually reaches, and the random target between them.
    reached = {a.lru_hit_fraction(m * B) for m in range(a.num_blocks + 2)}
    for target in (hit, *reached):
        assert a.lru_capacity_for(target) == scan_capacity(a, target), target


@settings(max_examples=100, deadline=None)
@given(requests_st, st.integers(0, 12), st.sampled_from([0.5, 0.9, 0.99, 1.0]))
def test_lower_tier_equals_a_scan(requests, gpu_blocks, share):
    a = ReuseAnalysis(make_stream(requests, block_size=B))
    gpu = gpu_blocks * B
    assert a.lru_lower_tier_for(gpu, share) == scan_lower_tier(a, gpu, share)


def test_small_cases_by_hand():
    # Requests [1, 2], [1, 2], [3]: touches tail first 2 1 | 2 1 | 3; the second request's
    # two touches have stack distance 1: a 2-block cache hits both, 1 block neither.
    a = ReuseAnalysis(make_stream([[1, 2], [1, 2], [3]], block_size=B))
    assert a.lru_hit_fraction(2 * B) == 2 / 5
    assert a.lru_capacity_for(0.0) == 0
    assert a.lru_capacity_for(0.1) == a.lru_capacity_for(0.4) == 2 * B
    assert a.lru_capacity_for(0.41) is None  # 3 of 5 touches are first touches
    assert a.lru_lower_tier_for(B) == B  # distance 1 beyond a 1-block cache: one more block
    assert a.lru_lower_tier_for(2 * B) is None  # nothing left to serve
    for bad in (-0.1, 1.5, float("nan"), "0.3"):
        with pytest.raises(KvReuseError):
            a.lru_capacity_for(bad)


def test_reference_figures(shared_traces):
    """The shared synthetic trace (docs/definitions.md §4), B = 64, DeepSeek-V3 in bf16."""
    a = analyze(shared_traces / "mooncake_synthetic_trace.jsonl", model="deepseek-v3")
    # The reference sizes' hit fractions (6.3034 %, 14.6358 %, 38.0759 %): the smallest
    # cache reaching each is at most that size.
    for size, hit in ((345_792, 0.063034), (1_000_000, 0.146358), (4_000_000, 0.380759)):
        assert a.lru_hit_fraction(size) == pytest.approx(hit, abs=5e-7)
        hit = a.lru_hit_fraction(size)
        c = a.lru_capacity_for(hit)
        assert c <= size and a.lru_hit_fraction(c) >= hit > a.lru_hit_fraction(c - 64)
    assert a.lru_capacity_for(0.3) == 2_758_400
    # 90 % of the reachable 65.2439 % (= 1 - compulsory 34.7561 %).
    assert a.lru_capacity_reachable(0.9) == 10_099_648
    assert a.lru_capacity_for(0.66) is None
    # 64 GiB of GPU cache (977,856 tokens): the lower tier serving 99 % of an unbounded one.
    assert a.tokens("64GiB") == 977_856
    assert a.lru_lower_tier_for("64GiB") == 16_233_792
    assert a.size_bytes(16_233_792) == 16_233_792 * 70272


def test_cli_target_hit(tmp_path, capsys):
    js = tmp_path / "a.json"
    assert main(["analyze", str(EXAMPLE), "--model", "deepseek-v3", "--gpu-kv-cache-size",
                 "16384", "--target-hit", "0.3", "--json", str(js)]) == 0
    out = capsys.readouterr().out
    a = analyze(EXAMPLE)
    c = a.lru_capacity_for(0.3)
    assert f"LRU hit 30.0000 % needs: {c:,} tokens (" in out
    reach = a.lru_capacity_reachable(0.9)
    assert "90 % of the reachable hit rate" in out and f"{reach:,} tokens (" in out
    tier = a.lru_lower_tier_for(16384)
    assert f"a lower tier of {tier:,} tokens (" in out and "serves 99 % of what" in out
    doc = json.loads(js.read_text())["traces"][0]
    assert doc["figures"]["lru_capacity_for"] == {"hit=0.3": c}
    assert doc["figures"]["lru_capacity_reachable"] == {"share=0.9": reach}
    assert doc["figures"]["lower_tier_capacity"] == {"16384": tier}
    assert doc["size_bytes"][str(c)] == c * 70272


def test_cli_unreachable_target_says_so(capsys):
    assert main(["analyze", str(EXAMPLE), "--target-hit", "0.99"]) == 0
    assert "LRU hit 99.0000 % needs: no cache reaches it" in capsys.readouterr().out


@pytest.mark.parametrize("bad", ["30", "-0.1", "lots"])
def test_cli_bad_target_hit(bad, capsys):
    with pytest.raises(SystemExit) as info:
        main(["analyze", str(EXAMPLE), "--target-hit", bad])
    assert info.value.code == 2
    assert "expected a hit fraction between 0 and 1" in capsys.readouterr().err


def write_manifest(tmp_path: Path, check: str, model: str = 'model = "deepseek-v3"\n') -> Path:
    (tmp_path / "t.jsonl").write_bytes(EXAMPLE.read_bytes())
    path = tmp_path / "kvreuse.toml"
    path.write_text(f'[[trace]]\npath = "t.jsonl"\n{model}\n[[trace.check]]\n{check}')
    return path


def test_manifest_bounds_the_capacity_in_bytes(tmp_path):
    m = load_manifest(write_manifest(tmp_path, 'metric = "lru_capacity_for"\nhit = 0.3\n'
                                               'max = "80GiB"\n'))
    check = m.traces[0].checks[0].check
    assert check.args == (("hit", 0.3),)
    assert check.max == (80 * 2**30 // (70272 * 64)) * 64


def test_manifest_capacity_bytes_need_the_model(tmp_path):
    path = write_manifest(tmp_path, 'metric = "lru_capacity_for"\nhit = 0.3\nmax = "80GiB"\n',
                          model="")
    with pytest.raises(ManifestError, match="is a size in bytes: name the model"):
        load_manifest(path)


def test_plugin_capacity_check(pytester: pytest.Pytester) -> None:
    pytester.makefile(".jsonl", t=EXAMPLE.read_text())
    pytester.makefile(".toml", kvreuse="""\
[[trace]]
path = "t.jsonl"
model = "deepseek-v3"

[[trace.check]]
metric = "lru_capacity_for"
hit = 0.3
max = "80GiB"

[[trace.check]]
metric = "lru_capacity_for"
hit = 0.5
max = "1GiB"

[[trace.check]]
metric = "lru_capacity_for"
hit = 0.99
max = 1000000
""")
    result = pytester.runpytest("-p", "no:cacheprovider", "--kvreuse-json", "out.json")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines([
        "*lru_capacity_for, hit 50.00 % is 173,632 tokens (11.36 GiB), above the maximum "
        "15,232 tokens (1,021 MiB)*",
        "*lru_capacity_for, hit 99.00 % is undefined: no cache size reaches that hit "
        "fraction*"])
    doc = json.loads((pytester.path / "out.json").read_text())
    [trace] = doc["traces"]
    assert set(trace["figures"]["lru_capacity_for"]) == {"hit=0.3", "hit=0.5", "hit=0.99"}
    result.stdout.fnmatch_lines(["trace * LRU cache for hit=0.3  LRU cache for hit=0.5 *"])
