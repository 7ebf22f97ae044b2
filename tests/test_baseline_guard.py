"""BaselineGuard: what the pytest glue forwards to (pytest-free)."""

from __future__ import annotations

import pytest

from pytest_kvreuse.baselines.drift import DRIFTED, NEW, WITHIN, parse_tolerances
from pytest_kvreuse.baselines.guard import BaselineGuard
from pytest_kvreuse.baselines.storage import BaselineStorage, baseline_document, load_results
from pytest_kvreuse.errors import KvReuseError
from pytest_kvreuse.result import TraceResult

RUN = {"started": "2026-11-30T07:00:00+00:00", "git_commit": "c" * 40}


def trace(name="chat", reused=0.5, offload=0.4, sha="a" * 64) -> dict:
    return {"name": name, "params": {"content_sha256": sha},
            "figures": {"reused_fraction": reused, "unique_blocks": 100},
            "offloadable_fraction": {"16384": offload, "345792": offload / 2},
            "curves": {"ccdf": {"x": [1, 10], "y": [offload, 0.0]}}, "checks": [], "error": None}


@pytest.fixture
def storage(tmp_path):
    s = BaselineStorage(tmp_path / ".kvreuse")
    s.save(baseline_document([trace(reused=0.45)], RUN), "main")
    s.save(baseline_document([trace(), trace("other")], RUN), "main")
    return s


def test_without_compare_nothing_is_loaded(tmp_path):
    g = BaselineGuard(BaselineStorage(tmp_path / "none"))
    assert not g.comparing and g.describe() == "no baseline"


def test_compare_with_empty_storage_is_an_error(tmp_path):
    with pytest.raises(KvReuseError, match="no saved run to compare with"):
        BaselineGuard(BaselineStorage(tmp_path / "none"), compare=True)


def test_tolerance_on_unknown_metric_rejected_at_load(storage):
    with pytest.raises(KvReuseError, match="unknown metric 'offload'"):
        BaselineGuard(storage, parse_tolerances(["offload:1"]), compare=True)


def test_verdicts_per_trace(storage):
    g = BaselineGuard(storage, parse_tolerances(["offloadable_fraction:0.02"]), compare=True)
    assert g.saved_run.label == "0002_main"
    assert g.describe().startswith(str(storage.directory / "0002_main.json") + " (commit cccc")
    assert g.verdict(trace()).status == WITHIN
    v = g.verdict(trace(offload=0.5, sha="b" * 64))
    assert v.status == DRIFTED and v.changed
    assert "offloadable_fraction@16384: baseline 0.4, current 0.5" in v.message()
    assert g.verdict(trace("brand-new")).status == NEW
    assert g.baseline_sizes(trace("chat")) == [16384, 345792]
    assert g.baseline_sizes(trace("nope")) == []


def test_trace_found_by_path_and_parameters_under_another_name(storage):
    g = BaselineGuard(storage, parse_tolerances(["reused_fraction:0.01"]), compare=True)
    by_path = {**trace("traces/chat.jsonl", reused=0.7),
               "params": {"path": "chat.jsonl", "block_size": 64, "content_sha256": "b" * 64}}
    assert g.verdict(by_path).status == NEW  # the saved run recorded no path
    g.traces["chat"].path = "chat.jsonl"
    g.traces["chat"].params.update(block_size=64)
    assert g.verdict(by_path).status == DRIFTED
    assert g.baseline_sizes(by_path) == [16384, 345792]
    by_path["params"]["block_size"] = 16  # another analysis of the file: not the same trace
    assert g.verdict(by_path).status == NEW


def test_selector_picks_an_older_run(storage):
    g = BaselineGuard(storage, parse_tolerances(["reused_fraction:0.01"]), compare=True,
                      selector=1)
    assert g.verdict(trace()).status == DRIFTED
    assert "other" not in g.traces


def test_report_data(storage):
    g = BaselineGuard(storage, parse_tolerances(["reused_fraction:0.01"]), compare=True)
    results, run = g.report_data([trace(reused=0.6), trace("fresh")], RUN)
    block = results[0].extras["baseline"]
    assert block["run"] == "0002_main" and block["status"] == DRIFTED
    fig = next(f for f in block["figures"] if f["label"] == "reused_fraction")
    assert (fig["baseline"], fig["current"], fig["drifted"]) == (0.5, 0.6, True)
    # The baseline's CCDF beside the current one: the report draws every curve.
    assert results[0].curves["baseline 0002_main"] == {"x": [1, 10], "y": [0.4, 0.0]}
    assert results[0].curves["ccdf"] == trace()["curves"]["ccdf"]
    assert "baseline" not in results[1].extras  # new trace: nothing to show against
    # Drift under a tolerance is listed with the checks, bounds = baseline ± tolerance.
    [check] = results[0].checks
    assert check["metric"] == "reused_fraction" and check["passed"] is False
    assert check["min"] == pytest.approx(0.49) and check["max"] == pytest.approx(0.51)
    assert check["value"] == 0.6 and "baseline 0.5, current 0.6" in check["message"]
    assert check["nodeid"] == "--kvreuse-compare-fail=reused_fraction:0.01 against 0002_main"
    assert results[1].checks == []
    assert run["baseline"].startswith(str(storage.directory / "0002_main.json"))
    trend = results[0].extras["trend"]
    assert [p["run"] for p in trend] == ["0001_main", "0002_main", "this run"]
    assert [p["figures"]["reused_fraction"] for p in trend] == [0.45, 0.5, 0.6]
    assert trend[-1]["figures"]["offloadable_fraction@16384"] == 0.4
    assert "trend" not in results[1].extras  # in no saved run
    assert RUN.get("baseline") is None  # the caller's dicts are left alone


def test_report_data_without_storage_adds_nothing(tmp_path):
    g = BaselineGuard(BaselineStorage(tmp_path / "none"))
    results, run = g.report_data([trace()], RUN)
    assert results == [TraceResult.from_json(trace())] and run == RUN


def test_save_leaves_report_keys_out(storage):
    g = BaselineGuard(storage, compare=True)
    results, run = g.report_data([trace()], RUN)
    saved = g.save(results, run, "next")
    assert saved.label == "0003_next"
    traces, doc = load_results(saved.path)
    assert traces[0].extras == {}
    assert traces[0].checks == []
    assert list(traces[0].curves) == ["ccdf"]
    assert doc["commit"] == "c" * 40
