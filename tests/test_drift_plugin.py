"""Saved baselines through pytest: --kvreuse-save / --kvreuse-compare and friends."""

from __future__ import annotations

import os
import shutil

import orjson
import pytest

from pytest_kvreuse.api import analyze
from pytest_kvreuse.baselines.drift import format_value
from pytest_kvreuse.synthetic import Workload, generate, write_mooncake

GPU = 16384
MANIFEST = f"""
[[trace]]
name = "chat"
path = "chat.jsonl"
gpu_cache_tokens = [{GPU}]

[[trace.check]]
metric = "reused_fraction"
min = 0.0

[[trace.check]]
metric = "offloadable_fraction"
at = {GPU}
max = 1.0
"""


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """Two exports of one chat workload: the accepted one, and one whose sessions attach
    long documents far more often (its reuse moved)."""
    d = tmp_path_factory.mktemp("exports")
    write_mooncake(generate(Workload(sessions=30, seed=1)), d / "old.jsonl")
    write_mooncake(generate(Workload(sessions=30, seed=1, document_share=0.9)), d / "new.jsonl")
    return d


@pytest.fixture
def project(pytester, exports):
    pytester.makefile(".toml", kvreuse=MANIFEST)
    shutil.copy(exports / "old.jsonl", pytester.path / "chat.jsonl")
    return pytester


def new_export(project, exports):
    shutil.copy(exports / "new.jsonl", project.path / "chat.jsonl")


def saved(project, storage=".kvreuse"):
    d = project.path / storage
    return sorted(p.name for p in d.iterdir()) if d.is_dir() else []


def offload(path) -> float:
    return analyze(path, block_size=64).offloadable_fraction(GPU)


def test_save_then_compare_unchanged_passes(project):
    r = project.runpytest("--kvreuse-save=main")
    r.assert_outcomes(passed=2)
    assert saved(project) == ["0001_main.json"]
    r.stdout.fnmatch_lines(["kvreuse: run saved as baseline 0001_main (*0001_main.json)"])
    doc = orjson.loads((project.path / ".kvreuse" / "0001_main.json").read_bytes())
    assert doc["traces"][0]["name"] == "chat" and doc["versions"]["pytest-kvreuse"]
    assert doc["traces"][0]["content_sha256"] and doc["python"] and doc["saved"]

    r = project.runpytest("--kvreuse-compare", "--kvreuse-compare-fail=offloadable_fraction:0")
    r.assert_outcomes(passed=2)
    r.stdout.fnmatch_lines(["*= kvreuse baseline comparison =*",
                            "baseline: *0001_main.json (saved *)",
                            f"chat *offloadable_fraction@{GPU} * ±0 * ok",
                            "chat: within tolerance; same trace content"])
    assert saved(project) == ["0001_main.json"]  # comparing saves nothing


def test_changed_trace_beyond_tolerance_fails_its_items(project, exports):
    project.runpytest("--kvreuse-save=main").assert_outcomes(passed=2)
    new_export(project, exports)
    before, after = offload(exports / "old.jsonl"), offload(exports / "new.jsonl")
    assert abs(after - before) > 0.01  # the new export really moved
    r = project.runpytest("--kvreuse-compare=main",
                          "--kvreuse-compare-fail=offloadable_fraction:0.01")
    r.assert_outcomes(failed=2)
    assert r.ret == pytest.ExitCode.TESTS_FAILED
    delta = after - before
    r.stdout.fnmatch_lines([
        "*trace 'chat' drifted from the baseline (trace changed: content sha256 * -> *):",
        f"*offloadable_fraction@{GPU}: baseline {format_value(before)}, current "
        f"{format_value(after)}, delta {delta:+.6g} (*%), tolerance ±0.01",
        "chat: DRIFTED (1 figure(s) beyond tolerance); trace changed *",
    ])
    assert "Traceback" not in r.stdout.str()


def test_changed_trace_within_tolerance_passes(project, exports):
    project.runpytest("--kvreuse-save=main").assert_outcomes(passed=2)
    new_export(project, exports)
    r = project.runpytest("--kvreuse-compare", "--kvreuse-compare-fail=offloadable_fraction:0.5",
                          "--kvreuse-compare-fail=reused_fraction:50%")
    r.assert_outcomes(passed=2)
    r.stdout.fnmatch_lines(["chat: within tolerance; trace changed (content sha256 *"])


def test_relative_form_fails_and_names_its_limit(project, exports):
    project.runpytest("--kvreuse-save").assert_outcomes(passed=2)
    new_export(project, exports)
    r = project.runpytest("--kvreuse-compare", "--kvreuse-compare-fail=unique_blocks:1%")
    r.assert_outcomes(failed=2)
    r.stdout.fnmatch_lines(["*unique_blocks: baseline *, current *, delta * (*%), "
                            "tolerance 1% (±*)"])


def test_bad_expression_is_a_usage_error(project):
    r = project.runpytest("--kvreuse-compare-fail=offloadable_fraction=0.02")
    assert r.ret == pytest.ExitCode.USAGE_ERROR
    r.stderr.fnmatch_lines(["*kvreuse: bad drift tolerance 'offloadable_fraction=0.02'*"])


def test_bad_expression_in_ini_is_a_usage_error(project):
    project.makeini("[pytest]\nkvreuse_compare_fail =\n    reused_fraction:five%\n")
    r = project.runpytest()
    assert r.ret == pytest.ExitCode.USAGE_ERROR
    r.stderr.fnmatch_lines(["*bad drift tolerance 'reused_fraction:five%'*"])


def test_missing_baseline_is_a_usage_error(project):
    r = project.runpytest("--kvreuse-compare")
    assert r.ret == pytest.ExitCode.USAGE_ERROR
    r.stderr.fnmatch_lines(["*kvreuse: *.kvreuse: no saved run to compare with: save one "
                            "first with --kvreuse-save*"])
    project.runpytest("--kvreuse-save=main").assert_outcomes(passed=2)
    r = project.runpytest("--kvreuse-compare=nightly")
    assert r.ret == pytest.ExitCode.USAGE_ERROR
    r.stderr.fnmatch_lines(["*no saved run named 'nightly' (have: main)*"])


def test_unknown_metric_is_a_usage_error(project):
    project.runpytest("--kvreuse-save=main").assert_outcomes(passed=2)
    r = project.runpytest("--kvreuse-compare", "--kvreuse-compare-fail=offload:0.1")
    assert r.ret == pytest.ExitCode.USAGE_ERROR
    r.stderr.fnmatch_lines(["*unknown metric 'offload'*"])


def test_numbering_continues_across_runs(project):
    project.runpytest("--kvreuse-save=main").assert_outcomes(passed=2)
    project.runpytest("--kvreuse-save=feature/x").assert_outcomes(passed=2)
    project.runpytest("--kvreuse-autosave").assert_outcomes(passed=2)
    names = saved(project)
    assert names[:2] == ["0001_main.json", "0002_feature_x.json"]
    assert names[2].startswith("0003_nocommit_") and len(names) == 3
    # Compare by number picks that run.
    r = project.runpytest("--kvreuse-compare=2")
    r.assert_outcomes(passed=2)
    r.stdout.fnmatch_lines(["baseline: *0002_feature_x.json *"])


def test_storage_survives_a_failed_save(project, monkeypatch):
    project.runpytest("--kvreuse-save=main").assert_outcomes(passed=2)
    before = {p.name: p.read_bytes() for p in (project.path / ".kvreuse").iterdir()}

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as mp:
        mp.setattr(os, "fsync", disk_full)  # the in-process run's write fails
        r = project.runpytest("--kvreuse-save=next")
    r.stdout.fnmatch_lines(["kvreuse: error: baseline not saved: *0002_next.json: cannot "
                            "write: No space left on device"])
    assert r.ret == pytest.ExitCode.TESTS_FAILED  # a CI job must not believe it saved
    after = {p.name: p.read_bytes() for p in (project.path / ".kvreuse").iterdir()}
    assert after == before
    r = project.runpytest("--kvreuse-compare")
    r.assert_outcomes(passed=2)
    project.runpytest("--kvreuse-save=next").assert_outcomes(passed=2)
    assert saved(project) == ["0001_main.json", "0002_next.json"]
    doc = orjson.loads((project.path / ".kvreuse" / "0002_next.json").read_bytes())
    [t] = doc["traces"]  # the workers' results, merged on the controller
    assert t["name"] == "chat" and len(t["checks"]) == 2


def test_interrupted_run_saves_nothing(project):
    project.makepyfile(test_stop="import pytest\n\ndef test_stop():\n    pytest.exit('stop')\n")
    r = project.runpytest("--kvreuse-save=main")
    assert r.ret == pytest.ExitCode.INTERRUPTED
    assert saved(project) == []


def test_new_trace_is_reported_not_failed(project, exports):
    project.runpytest("--kvreuse-save=main").assert_outcomes(passed=2)
    shutil.copy(exports / "new.jsonl", project.path / "other.jsonl")
    project.makefile(".toml", kvreuse_more='[[trace]]\nname = "other"\npath = "other.jsonl"\n')
    r = project.runpytest("--kvreuse-compare", "--kvreuse-compare-fail=reused_fraction:0")
    r.assert_outcomes(passed=3)
    r.stdout.fnmatch_lines(["other: new (not in the baseline; not compared)"])


def test_marker_test_fails_on_drift(project, exports):
    project.makepyfile(test_chat=f"""
        import pytest

        @pytest.mark.kvreuse("chat.jsonl", gpu_cache_tokens={GPU})
        def test_chat(kvreuse):
            assert kvreuse.num_requests > 0
    """)
    project.runpytest("--kvreuse-save=main").assert_outcomes(passed=3)
    new_export(project, exports)
    r = project.runpytest("-p", "no:cacheprovider", "--kvreuse-compare",
                          "--kvreuse-compare-fail=offloadable_fraction:0.01", "test_chat.py")
    r.assert_outcomes(failed=1)
    r.stdout.fnmatch_lines(["*trace 'chat.jsonl' drifted from the baseline*",
                            f"*offloadable_fraction@{GPU}: baseline *"])


def test_ini_keys(project, exports):
    project.makeini("[pytest]\nkvreuse_storage = baselines\nkvreuse_save = main\n")
    project.runpytest().assert_outcomes(passed=2)
    assert saved(project, "baselines") == ["0001_main.json"]
    project.makeini("[pytest]\nkvreuse_storage = baselines\nkvreuse_compare = latest\n"
                    "kvreuse_compare_fail =\n    offloadable_fraction:0.01\n")
    new_export(project, exports)
    project.runpytest().assert_outcomes(failed=2)
    # The command line replaces the ini's tolerances.
    project.runpytest("--kvreuse-compare-fail=offloadable_fraction:0.9").assert_outcomes(
        passed=2)


def test_bare_flag_does_not_swallow_a_test_path(project):
    project.mkdir("sub")
    r = project.runpytest("--kvreuse-save", "sub")
    assert r.ret == pytest.ExitCode.USAGE_ERROR
    r.stderr.fnmatch_lines(["*--kvreuse-save took 'sub' (a path) as its value*"])


def test_no_kvreuse_disables_baselines(project):
    r = project.runpytest("-p", "no:kvreuse", "--kvreuse-save=main")
    assert r.ret == pytest.ExitCode.USAGE_ERROR  # the option is unknown without the plugin
    assert saved(project) == []


def test_report_data_reaches_the_json(project, exports, monkeypatch):
    written = {}
    import pytest_kvreuse.output.report as report

    monkeypatch.setattr(report, "write_json",
                        lambda path, results, run: written.update(
                            results=[r.to_json() for r in results], run=run))
    project.runpytest("--kvreuse-save=main").assert_outcomes(passed=2)
    new_export(project, exports)
    project.runpytest("--kvreuse-compare", "--kvreuse-compare-fail=offloadable_fraction:0.01",
                      "--kvreuse-json=out.json")
    [r] = written["results"]
    base = r["extras"]["baseline"]
    assert base["run"] == "0001_main" and base["status"] == "drifted"
    assert base["changed"] is True
    fig = next(f for f in base["figures"] if f["label"] == f"offloadable_fraction@{GPU}")
    assert fig["baseline"] == pytest.approx(offload(exports / "old.jsonl"))
    assert fig["current"] == pytest.approx(offload(exports / "new.jsonl"))
    assert r["curves"]["baseline 0001_main"]["x"]
    assert [p["run"] for p in r["extras"]["trend"]] == ["0001_main", "this run"]
    assert written["run"]["baseline"].startswith(".kvreuse/0001_main.json (saved ")


def test_xdist_compares_on_workers_and_saves_once_on_the_controller(project, exports):
    pytest.importorskip("xdist")
    project.runpytest("--kvreuse-save=main").assert_outcomes(passed=2)
    new_export(project, exports)
    # One run under xdist both compares (on the workers) and saves (on the controller).
    r = project.runpytest("-n", "2", "--kvreuse-compare", "--kvreuse-save=next",
                          "--kvreuse-compare-fail=offloadable_fraction:0.01")
    r.assert_outcomes(failed=2)
    r.stdout.fnmatch_lines(["*trace 'chat' drifted from the baseline*"])
    assert r.stdout.str().count("kvreuse baseline comparison") == 1
    assert saved(project) == ["0001_main.json", "0002_next.json"]


def test_drift_of_a_trace_no_item_checks_still_fails_the_run(project, exports):
    project.makepyfile(test_factory="""
        def test_uses_factory(kvreuse_analyze):
            assert kvreuse_analyze("chat.jsonl").num_requests > 0
    """)
    project.runpytest("--kvreuse-save=main", "test_factory.py").assert_outcomes(passed=1)
    new_export(project, exports)
    r = project.runpytest("--kvreuse-compare", "--kvreuse-compare-fail=reused_fraction:0.001",
                          "test_factory.py")
    r.assert_outcomes(passed=1)
    assert r.ret == pytest.ExitCode.TESTS_FAILED
    r.stdout.fnmatch_lines(["chat.jsonl: DRIFTED (1 figure(s) beyond tolerance)*"])


def test_tolerance_without_compare_is_noted(project):
    r = project.runpytest("--kvreuse-compare-fail=reused_fraction:1%")
    r.assert_outcomes(passed=2)
    r.stdout.fnmatch_lines(["kvreuse: --kvreuse-compare-fail has no effect without "
                            "--kvreuse-compare"])
