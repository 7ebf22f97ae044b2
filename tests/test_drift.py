"""Drift tolerances and the comparison of two runs' trace results."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_kvreuse.baselines.drift import (
    DRIFTED,
    ERROR,
    MISSING,
    NEW,
    WITHIN,
    FigureDrift,
    Tolerance,
    compare_runs,
    format_comparison,
    metric_values,
    parse_tolerance,
    parse_tolerances,
)
from pytest_kvreuse.errors import KvReuseError


def result(name="chat", *, reused=0.5, offload=None, unique=1000, sha="a" * 64,
           error=None, **extra) -> dict:
    """A trace result shaped like results.trace_result(...) plus checks/error."""
    offload = {"16384": 0.6, "345792": 0.4} if offload is None else offload
    return {
        "name": name,
        "params": {"path": f"/traces/{name}.jsonl", "block_size": 64, "content_sha256": sha},
        "figures": {"num_requests": 10, "unique_blocks": unique, "reused_fraction": reused,
                    "interval_median": 4096},
        "offloadable_fraction": offload,
        "curves": {"ccdf": {"x": [1, 2], "y": [0.5, 0.1]}},
        "timings": {"load_s": 0.1},
        "checks": [],
        "error": error,
        **extra,
    }


# -- parsing ------------------------------------------------------------------------------

@pytest.mark.parametrize("text, metric, amount, relative, at", [
    ("offloadable_fraction:0.02", "offloadable_fraction", 0.02, False, None),
    ("reused_fraction:5%", "reused_fraction", 5.0, True, None),
    (" unique_blocks : 2.5 % ", "unique_blocks", 2.5, True, None),
    ("offloadable_fraction@345792:0.01", "offloadable_fraction", 0.01, False, 345792),
    ("offloadable_fraction@345_792:1%", "offloadable_fraction", 1.0, True, 345792),
    ("lru_hit_fraction:0", "lru_hit_fraction", 0.0, False, None),
    ("x:1e-3", "x", 0.001, False, None),
    ("x:.5", "x", 0.5, False, None),
])
def test_parse_tolerance(text, metric, amount, relative, at):
    tol = parse_tolerance(text)
    assert (tol.metric, tol.amount, tol.relative, tol.at) == (metric, amount, relative, at)
    assert tol.text == text.strip()


@pytest.mark.parametrize("text", [
    "", "offloadable_fraction", "offloadable_fraction:", ":0.02", "offloadable_fraction:abc",
    "offloadable_fraction:-0.02", "offloadable_fraction:5%%", "1metric:0.1",
    "offloadable_fraction=0.02", "offloadable_fraction:inf", "offloadable_fraction:nan",
    "offloadable_fraction@:0.1", "offloadable_fraction@big:0.1", "a b:1",
])
def test_parse_tolerance_rejects_bad_syntax(text):
    with pytest.raises(KvReuseError, match="bad drift tolerance.*METRIC:AMOUNT"):
        parse_tolerance(text)


def test_parse_tolerances_stops_at_first_bad():
    with pytest.raises(KvReuseError, match="'bad'"):
        parse_tolerances(["reused_fraction:1%", "bad"])


def test_tolerance_limits():
    assert Tolerance("m", 0.02).limit(0.5) == 0.02
    assert Tolerance("m", 10, relative=True).limit(-0.5) == pytest.approx(0.05)
    assert Tolerance("m", 10, relative=True).describe() == "10%"
    assert Tolerance("m", 0.02).describe() == "0.02"


# -- metric lookup ------------------------------------------------------------------------

def test_metric_values_scalar_map_and_lru_block():
    # The shape of results.trace_result(..., lru=True).
    r = result(lru={"hit_fraction": {"16384": 0.01, "345792": 0.06},
                    "offloadable_fraction": {"16384": 0.59, "345792": None}})
    r["figures"]["compulsory_fraction"] = 0.35
    assert metric_values(r, "reused_fraction") == {None: 0.5}
    assert metric_values(r, "unique_blocks") == {None: 1000}
    assert metric_values(r, "offloadable_fraction") == {16384: 0.6, 345792: 0.4}
    assert metric_values(r, "lru_hit_fraction") == {16384: 0.01, 345792: 0.06}
    assert metric_values(r, "lru_offloadable_fraction") == {16384: 0.59, 345792: None}
    assert metric_values(r, "lru_miss_fraction") is None
    assert metric_values(r, "compulsory_fraction") == {None: 0.35}
    assert metric_values(r, "nope") is None
    assert metric_values(result(lru={}), "lru_hit_fraction") == {}
    assert metric_values(result(), "lru_hit_fraction") is None
    # Plain dicts and strings of a result are not figures.
    assert metric_values(r, "params") is None
    assert metric_values(r, "name") is None
    assert metric_values(result(offload={}), "offloadable_fraction") == {}


def test_metric_values_undefined_figure_is_none():
    r = result(reused=None, offload={"16384": None})
    assert metric_values(r, "reused_fraction") == {None: None}
    assert metric_values(r, "offloadable_fraction") == {16384: None}


# -- comparison ---------------------------------------------------------------------------

def only(comparison, name="chat"):
    return comparison.by_name()[name]


def test_unchanged_run_is_within_tolerance():
    c = compare_runs([result()], [result()], parse_tolerances(["offloadable_fraction:0"]))
    t = only(c)
    assert t.status == WITHIN and not c.failed
    assert t.changed is False
    assert {f.label for f in t.figures} >= {"offloadable_fraction@16384",
                                            "offloadable_fraction@345792", "reused_fraction"}


def test_absolute_drift_beyond_tolerance_fails_with_figures():
    c = compare_runs([result()], [result(offload={"16384": 0.6, "345792": 0.45})],
                     parse_tolerances(["offloadable_fraction:0.02"]))
    t = only(c)
    assert c.failed and t.status == DRIFTED
    [f] = t.drifted
    assert (f.label, f.baseline, f.current) == ("offloadable_fraction@345792", 0.4, 0.45)
    assert f.delta == pytest.approx(0.05)
    msg = t.message()
    assert "trace 'chat' drifted from the baseline" in msg
    assert ("offloadable_fraction@345792: baseline 0.4, current 0.45, delta +0.05 (+12.50%), "
            "tolerance ±0.02") in msg


def test_within_absolute_tolerance_passes():
    c = compare_runs([result()], [result(offload={"16384": 0.61, "345792": 0.39})],
                     parse_tolerances(["offloadable_fraction:0.02"]))
    assert only(c).status == WITHIN and not c.failed


def test_exactly_at_tolerance_is_not_drift_despite_float_rounding():
    # 0.52 - 0.5 == 0.020000000000000018 in binary floating point.
    c = compare_runs([result(reused=0.5)], [result(reused=0.52)],
                     parse_tolerances(["reused_fraction:0.02"]))
    assert not c.failed
    c = compare_runs([result(reused=0.5)], [result(reused=0.5201)],
                     parse_tolerances(["reused_fraction:0.02"]))
    assert c.failed


def test_relative_tolerance():
    tol = parse_tolerances(["unique_blocks:5%"])
    assert not compare_runs([result(unique=1000)], [result(unique=1050)], tol).failed
    assert not compare_runs([result(unique=1000)], [result(unique=950)], tol).failed
    c = compare_runs([result(unique=1000)], [result(unique=1051)], tol)
    assert c.failed
    [f] = only(c).drifted
    assert f.message() == ("unique_blocks: baseline 1,000, current 1,051, delta +51 (+5.10%), "
                           "tolerance 5% (±50)")


def test_relative_tolerance_on_zero_baseline():
    tol = parse_tolerances(["reused_fraction:50%"])
    assert not compare_runs([result(reused=0.0)], [result(reused=0.0)], tol).failed
    assert compare_runs([result(reused=0.0)], [result(reused=0.001)], tol).failed


def test_figure_becoming_undefined_is_drift():
    tol = parse_tolerances(["reused_fraction:1"])
    c = compare_runs([result(reused=0.5)], [result(reused=None)], tol)
    assert c.failed
    assert "current undefined, delta -" in only(c).drifted[0].message()
    assert not compare_runs([result(reused=None)], [result(reused=None)], tol).failed


def test_sizes_measured_by_one_run_only_are_skipped():
    c = compare_runs([result(offload={"16384": 0.6})],
                     [result(offload={"16384": 0.6, "1000000": 0.1})],
                     parse_tolerances(["offloadable_fraction:0"]))
    labels = [f.label for f in only(c).figures]
    assert "offloadable_fraction@16384" in labels
    assert "offloadable_fraction@1000000" not in labels
    assert not c.failed


def test_size_restricted_tolerance_applies_to_that_size_only():
    base = [result()]
    cur = [result(offload={"16384": 0.9, "345792": 0.41})]
    c = compare_runs(base, cur, parse_tolerances(["offloadable_fraction@345792:0.02"]))
    assert not c.failed
    by_label = {f.label: f for f in only(c).figures}
    assert by_label["offloadable_fraction@16384"].tolerance is None
    c = compare_runs(base, cur, parse_tolerances(["offloadable_fraction@16384:0.02"]))
    assert [f.label for f in only(c).drifted] == ["offloadable_fraction@16384"]


def test_first_matching_tolerance_wins():
    tols = parse_tolerances(["offloadable_fraction@16384:0.5", "offloadable_fraction:0.01"])
    c = compare_runs([result()], [result(offload={"16384": 0.8, "345792": 0.4})], tols)
    assert not c.failed


def test_changed_trace_reported_beside_its_drift():
    c = compare_runs([result(sha="a" * 64)], [result(sha="b" * 64, reused=0.7)],
                     parse_tolerances(["reused_fraction:0.1"]))
    t = only(c)
    assert t.changed is True and t.status == DRIFTED
    assert "trace changed: content sha256 aaaaaaaaaaaa -> bbbbbbbbbbbb" in t.message()
    text = format_comparison(c)
    assert "chat: DRIFTED (1 figure(s) beyond tolerance); trace changed" in text
    # A new export that did not drift is changed, and still passes.
    c = compare_runs([result(sha="a" * 64)], [result(sha="b" * 64)],
                     parse_tolerances(["reused_fraction:0.1"]))
    assert only(c).status == WITHIN and only(c).changed and not c.failed
    assert "chat: within tolerance; trace changed" in format_comparison(c)


def test_unknown_hash_is_neither_changed_nor_same():
    c = compare_runs([result(sha=None)], [result()])
    assert only(c).changed is None


def test_new_trace_reported_not_failed_and_missing_reported():
    c = compare_runs([result("old")], [result("fresh", reused=0.99)],
                     parse_tolerances(["reused_fraction:0.01"]))
    assert only(c, "fresh").status == NEW
    assert only(c, "old").status == MISSING
    assert not c.failed
    text = format_comparison(c)
    assert "fresh: new (not in the baseline; not compared)" in text
    assert "old: missing from this run" in text


def test_trace_with_error_is_not_compared():
    c = compare_runs([result()], [result(error="x.jsonl:3: bad JSON")],
                     parse_tolerances(["reused_fraction:0"]))
    assert only(c).status == ERROR and not c.failed


def test_pair_single_matches_two_differently_named_traces():
    base, cur = [result("a", reused=0.1)], [result("b", reused=0.9)]
    tol = parse_tolerances(["reused_fraction:0.1"])
    assert not compare_runs(base, cur, tol).failed  # new + missing
    c = compare_runs(base, cur, tol, pair_single=True)
    assert c.failed and only(c, "b").status == DRIFTED


def test_unknown_metric_is_a_clear_error():
    with pytest.raises(KvReuseError, match=r"unknown metric 'offloadable' .*"
                                           r"offloadable_fraction.*reused_fraction"):
        compare_runs([result()], [result()], parse_tolerances(["offloadable:0.1"]))


def test_unmeasured_size_is_a_clear_error():
    with pytest.raises(KvReuseError, match=r"no trace measured offloadable_fraction at 999 "
                                           r"\(sizes: 16384, 345792\)"):
        compare_runs([result()], [result()], parse_tolerances(["offloadable_fraction@999:0"]))


def test_nameless_trace_is_an_error():
    with pytest.raises(KvReuseError, match="has no name"):
        compare_runs([{"figures": {}}], [result()])


def test_lru_figures_compared_when_present():
    base = result(lru={"hit_fraction": {"345792": 0.063},
                       "offloadable_fraction": {"345792": 0.589}})
    cur = result(lru={"hit_fraction": {"345792": 0.09},
                      "offloadable_fraction": {"345792": 0.589}})
    c = compare_runs([base], [cur], parse_tolerances(["lru_hit_fraction:10%"]))
    assert [f.label for f in only(c).drifted] == ["lru_hit_fraction@345792"]
    labels = [f.label for f in only(c).figures]
    assert "lru_offloadable_fraction@345792" in labels  # a headline figure, shown
    with pytest.raises(KvReuseError, match="lru_hit_fraction, lru_offloadable_fraction"):
        compare_runs([base], [cur], parse_tolerances(["lru_typo_fraction:1"]))


def test_plain_compare_shows_headline_figures_and_never_fails():
    c = compare_runs([result()], [result(reused=0.9, unique=5)])
    text = format_comparison(c)
    assert not c.failed
    assert "reused_fraction" in text and "unique_blocks" in text
    assert "nothing can fail" in text
    assert "compared (no tolerance applies)" in text


def test_format_comparison_table_columns():
    c = compare_runs([result()], [result(reused=0.6)], parse_tolerances(["reused_fraction:0.05"]))
    lines = format_comparison(c).splitlines()
    assert lines[0].split() == ["trace", "figure", "baseline", "current", "delta", "tolerance",
                                "result"]
    row = next(line for line in lines if "reused_fraction" in line)
    assert row.split()[:4] == ["chat", "reused_fraction", "0.5", "0.6"]
    assert row.split()[-1] == "DRIFT"
    assert lines[-1] == "1 figure(s) of 1 trace(s) drifted beyond tolerance."


def test_comparison_to_dict_is_plain_data():
    c = compare_runs([result()], [result(reused=0.6)], parse_tolerances(["reused_fraction:0.05"]))
    d = c.to_dict()
    assert d["failed"] is True and d["tolerances"] == ["reused_fraction:0.05"]
    fig = next(f for f in d["traces"][0]["figures"] if f["label"] == "reused_fraction")
    assert fig["drifted"] and fig["limit"] == 0.05 and fig["delta"] == pytest.approx(0.1)


# -- property: drift decision against exact rational arithmetic ----------------------------

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)


@given(finite, finite, st.floats(min_value=0, max_value=1e3), st.booleans())
def test_drift_decision_matches_exact_reference(baseline, current, amount, relative):
    tol = Tolerance("m", amount, relative=relative)
    f = FigureDrift("m", None, baseline, current, tol)
    exact_delta = abs(Fraction(current) - Fraction(baseline))
    exact_limit = (abs(Fraction(baseline)) * Fraction(amount) / 100 if relative
                   else Fraction(amount))
    margin = exact_delta - exact_limit
    scale = max(1.0, abs(baseline), abs(current))
    # Within rounding distance of the boundary either answer is acceptable.
    if abs(margin) > Fraction(1e-9) * Fraction(scale):
        assert f.drifted == (margin > 0)


def test_pairing_falls_back_to_path_and_parameters():
    base = result("chat")
    base["params"]["path"] = "chat.jsonl"
    cur = result("chat.jsonl", reused=0.9, sha="b" * 64)
    cur["params"]["path"] = "chat.jsonl"
    c = compare_runs([base], [cur], parse_tolerances(["reused_fraction:0.1"]))
    assert [t.status for t in c.traces] == [DRIFTED]
    assert only(c, "chat.jsonl").changed
    # A name match wins over a path match, and a baseline trace pairs once.
    named = result("chat.jsonl")
    named["params"]["path"] = "chat.jsonl"
    c = compare_runs([base, named], [cur], parse_tolerances(["reused_fraction:0.1"]))
    assert {t.name: t.status for t in c.traces} == {"chat.jsonl": DRIFTED, "chat": MISSING}
