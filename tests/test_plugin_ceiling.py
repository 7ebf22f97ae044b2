"""Plugin options --kvreuse-opt, --kvreuse-ttl, --kvreuse-policies (and ini keys), checks
on OPT and TTL figures from manifests, and the report's OPT curve and reuse-time plot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_kvreuse.output import report

# Request 2 re-reads request 1's two blocks 30 s later; request 3 reads block 1 600 s after.
STAMPED = ('{"timestamp": 0, "input_length": 128, "hash_ids": [1]}\n'
           '{"timestamp": 30000, "input_length": 128, "hash_ids": [1]}\n'
           '{"timestamp": 630000, "input_length": 128, "hash_ids": [1]}\n')
PLAIN = ('{"input_length": 128, "hash_ids": [1]}\n'
         '{"input_length": 128, "hash_ids": [1]}\n')
MANIFEST = """\
[defaults]
block_size = 64
gpu_cache_tokens = 128

[[trace]]
name = "stamped"
path = "stamped.jsonl"
"""
TEMPLATES = Path(__file__).resolve().parents[1] / "templates"


@pytest.fixture
def traces(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makefile(".jsonl", stamped=STAMPED, plain=PLAIN)
    return pytester


def _results(pytester: pytest.Pytester, *args: str) -> dict:
    result = pytester.runpytest("--kvreuse-json=out.json", *args)
    assert result.ret == 0, result.stdout.str()
    return json.loads((pytester.path / "out.json").read_text())["traces"][0]


def test_defaults_compute_no_opt_but_the_reuse_times(traces):
    traces.makefile(".toml", kvreuse=MANIFEST + '[[trace.check]]\nmetric = "reused_fraction"'
                                                "\nmin = 0.1\n")
    doc = _results(traces)
    assert "opt_hit_fraction" not in doc["figures"] and "opt" not in doc["curves"]
    assert doc["figures"]["reuse_time_p50"] == 600.0
    assert "ttl_hit_fraction" not in doc["figures"]


def test_options_decide_what_is_computed(traces):
    traces.makefile(".toml", kvreuse=MANIFEST + '[[trace.check]]\nmetric = "reused_fraction"'
                                                "\nmin = 0.1\n")
    doc = _results(traces, "--kvreuse-opt", "--kvreuse-ttl=60,10min")
    fig = doc["figures"]
    assert fig["opt_hit_fraction"] == {"128": pytest.approx(2 / 3)}
    assert "opt_gap_fraction" in fig and "opt" in doc["curves"]
    assert fig["ttl_hit_fraction"] == {"60": pytest.approx(1 / 3), "600": pytest.approx(2 / 3)}
    assert fig["ttl_peak_tokens"] == {"60": 128, "600": 128}


def test_ini_keys(traces):
    traces.makefile(".toml", kvreuse=MANIFEST + '[[trace.check]]\nmetric = "reused_fraction"'
                                                "\nmin = 0.1\n")
    traces.makeini("[pytest]\nkvreuse_opt = true\nkvreuse_ttl = 1h\n")
    doc = _results(traces)
    assert "opt_hit_fraction" in doc["figures"]
    assert list(doc["figures"]["ttl_hit_fraction"]) == ["3600"]


def test_bad_ttl_option_is_a_usage_error(traces):
    result = traces.runpytest("--kvreuse-ttl=soon")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "'--kvreuse-ttl' must be a duration such as 600s" in result.stderr.str()


def test_policies_without_the_extra_is_one_note(traces, monkeypatch):
    pytest.importorskip("pytest")
    try:
        import libcachesim  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("libcachesim is installed")
    traces.makefile(".toml", kvreuse=MANIFEST + '[[trace.check]]\nmetric = "reused_fraction"'
                                                "\nmin = 0.1\n")
    result = traces.runpytest("--kvreuse-policies=arc,s3fifo", "--kvreuse-json=out.json")
    assert result.ret == 0
    out = result.stdout.str()
    assert out.count('pip install "pytest-kvreuse[policies]"') == 1
    doc = json.loads((traces.path / "out.json").read_text())["traces"][0]
    assert "policy_hit_fraction" not in doc["figures"]


def test_manifest_checks_on_opt_and_ttl(traces):
    traces.makefile(".toml", kvreuse=MANIFEST + """
[[trace.check]]
metric = "opt_hit_fraction"
min = 0.6

[[trace.check]]
metric = "ttl_hit_fraction"
at = "10min"
min = 0.6

[[trace.check]]
metric = "ttl_peak_tokens"
at = "1min"
max = 128

[[trace]]
name = "plain"
path = "plain.jsonl"

[[trace.check]]
metric = "ttl_hit_fraction"
at = "600s"
min = 0.1
""")
    result = traces.runpytest("-v", "--kvreuse-json=out.json")
    result.assert_outcomes(passed=3, failed=1)
    out = result.stdout.str()
    result.stdout.fnmatch_lines(["*stamped::opt_hit_fraction@128 PASSED*",
                                 "*stamped::ttl_hit_fraction@600 PASSED*",
                                 "*stamped::ttl_peak_tokens@60 PASSED*",
                                 "*plain::ttl_hit_fraction@600 FAILED*"])
    assert "ttl_hit_fraction at 600 s is undefined: the trace carries no timestamps" in out
    docs = json.loads((traces.path / "out.json").read_text())["traces"]
    stamped = docs[0]
    # The OPT check computed OPT at its size; the TTL checks their figures; the TTL
    # seconds are no GPU sizes.
    assert stamped["sizes"] == [128]
    assert stamped["figures"]["opt_hit_fraction"] == {"128": pytest.approx(2 / 3)}
    assert stamped["figures"]["ttl_hit_fraction"] == {"600": pytest.approx(2 / 3)}


def test_report_draws_opt_and_reuse_time_plots(traces, tmp_path):
    traces.makefile(".toml", kvreuse=MANIFEST + '[[trace.check]]\nmetric = "reused_fraction"'
                                                "\nmin = 0.1\n")
    doc = _results(traces, "--kvreuse-opt", "--kvreuse-ttl=60")
    html = report.render_report([doc], {}, template_dir=TEMPLATES)
    assert html.count("data:image/svg+xml") == 2
    assert "CCDF of reuse times of stamped" in html and "TTL lines at TTL 60 s" in html
    assert "OPT - LRU gap" in html  # the per-size table's column


def test_summary_headers_of_ttl_and_policy_checks():
    from pytest_kvreuse.output.summary import summary_table
    from pytest_kvreuse.result import TraceResult

    r = TraceResult(name="t", sizes=[128], figures={
        "ttl_hit_fraction": {"0.25": 0.5}, "policy_hit_fraction": {"128,policy=arc": 0.25}},
        checks=[{"nodeid": "a", "metric": "ttl_hit_fraction", "at": 0.25, "args": None,
                 "passed": True},
                {"nodeid": "b", "metric": "policy_hit_fraction", "at": 128,
                 "args": {"policy": "arc"}, "passed": True}])
    header = summary_table([r])[0]
    assert "TTL hit % @0.25s" in header and "block hit % @128 policy=arc" in header
    assert summary_table([r])[1].split()[-4:-2] == ["25.00", "50.00"]
