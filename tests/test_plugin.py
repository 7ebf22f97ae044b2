"""The pytest plugin driven through pytester: marker, fixtures, manifests, thresholds,
summary, junitxml, xdist, cache and report wiring."""

from __future__ import annotations

import inspect
import re
import xml.etree.ElementTree as ET

import pytest

import pytest_kvreuse.api
import pytest_kvreuse.output.report

# Two requests, 512-token hash blocks cut into 64-token blocks: request 2 re-reads the 16
# blocks of request 1, each 960 tokens after its first use (15 other blocks in between).
# total 2,560 tokens; reused 40 %; offloadable 40 % below 960 tokens, 0 % from 960 on.
TINY = ('{"input_length": 1024, "hash_ids": [1, 2]}\n'
        '{"input_length": 1536, "hash_ids": [1, 2, 3]}\n')
# Four requests, no shared prefix: nothing reused.
COLD = "".join(f'{{"input_length": 512, "hash_ids": [{i}]}}\n' for i in range(10, 14))

MANIFEST = """\
[defaults]
block_size = 64

[[trace]]
name = "tiny"
path = "tiny.jsonl"

[[trace.check]]
metric = "offloadable_fraction"
at = 512
min = 0.3
max = 0.5

[[trace.check]]
metric = "reused_fraction"
min = 0.35
"""


@pytest.fixture
def tiny(pytester: pytest.Pytester):
    pytester.makefile(".jsonl", tiny=TINY)
    return pytester


def summary_block(output: str) -> list[str]:
    """The lines of the kvreuse summary section of a terminal output."""
    lines = output.splitlines()
    starts = [i for i, line in enumerate(lines) if "kvreuse summary" in line]
    assert len(starts) == 1, output
    block = []
    for line in lines[starts[0] + 1:]:
        if line.startswith("===") or line.startswith("kvreuse: report") or not line.strip():
            break
        block.append(line)
    return block


# -- marker and fixtures -------------------------------------------------------------------

def test_marker_fixture_gives_the_analysis_and_bounds_pass(tiny: pytest.Pytester) -> None:
    tiny.makepyfile("""
        import pytest

        @pytest.mark.kvreuse("tiny.jsonl", block_size=64, gpu_cache_tokens=512,
                             min_offloadable=0.3, max_offloadable=0.5)
        def test_tiny(kvreuse):
            assert kvreuse.num_requests == 2
            assert kvreuse.total_tokens == 2560
            assert kvreuse.offloadable_fraction(512) == pytest.approx(0.4)
    """)
    result = tiny.runpytest()
    result.assert_outcomes(passed=1)
    assert summary_block(result.stdout.str())[1].split() == [
        "tiny.jsonl", "64", "2", "2,560", "40.00", "40.00", "passed", "1/1"]


def test_marker_bound_violated_fails_with_one_paragraph(tiny: pytest.Pytester) -> None:
    tiny.makepyfile("""
        import pytest

        @pytest.mark.kvreuse("tiny.jsonl", gpu_cache_tokens=512, max_offloadable=0.25)
        def test_tiny(kvreuse):
            assert kvreuse.num_requests == 2
    """)
    result = tiny.runpytest()
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert ("kvreuse: trace 'tiny.jsonl' (tiny.jsonl): offloadable_fraction at 512 tokens is "
            "0.4 (40.00 %), above the maximum 0.25 (block size 64, tokenizer none (hash ids), "
            "2 requests, 2,560 tokens).") in out
    # No plugin frames, no traceback: the paragraph is the whole failure.
    assert "plugin.py" not in out and "Traceback" not in out and "raise " not in out


def test_marker_bounds_are_checked_after_the_body_only_when_it_passed(
        tiny: pytest.Pytester) -> None:
    tiny.makepyfile("""
        import pytest

        @pytest.mark.kvreuse("tiny.jsonl", gpu_cache_tokens=512, min_offloadable=0.9)
        def test_body_fails(kvreuse):
            assert kvreuse.num_requests == 3

        @pytest.mark.kvreuse("tiny.jsonl", gpu_cache_tokens=512, min_offloadable=0.9)
        def test_without_fixture():
            pass
    """)
    result = tiny.runpytest()
    result.assert_outcomes(failed=2)
    out = result.stdout.str()
    # The body's own assertion is reported as usual ...
    assert "assert 2 == 3" in out
    # ... and the bound only for the test whose body passed (even without the fixture).
    # (Counted in the failure reports only: under CI pytest repeats whole messages in its
    # short summary.)
    reports = [line for line in out.splitlines() if line.startswith("kvreuse: trace")]
    assert len(reports) == 1 and "below the minimum 0.9" in reports[0]


def test_relative_marker_path_resolves_against_the_test_file(
        pytester: pytest.Pytester) -> None:
    sub = pytester.mkpydir("suite")
    (sub / "tiny.jsonl").write_text(TINY)
    (sub / "test_sub.py").write_text(
        "import pytest\n\n"
        "@pytest.mark.kvreuse('tiny.jsonl')\n"
        "def test_sub(kvreuse):\n"
        "    assert kvreuse.num_requests == 2\n")
    pytester.runpytest().assert_outcomes(passed=1)


@pytest.mark.parametrize("marker, message", [
    ("()", "@pytest.mark.kvreuse needs the trace path"),
    ("('tiny.jsonl', min_offloadable=0.2)", "need gpu_cache_tokens"),
    ("('tiny.jsonl', blocksize=16)", "unknown argument 'blocksize' of @pytest.mark.kvreuse"),
    ("('tiny.jsonl', gpu_cache_tokens=512, min_offloadable=30)",
     "min = 30 for offloadable_fraction is not a fraction between 0 and 1"),
])
def test_marker_misuse_is_one_line(tiny: pytest.Pytester, marker: str, message: str) -> None:
    tiny.makepyfile(f"""
        import pytest

        @pytest.mark.kvreuse{marker}
        def test_it(kvreuse):
            pass
    """)
    result = tiny.runpytest()
    result.assert_outcomes(errors=1)
    assert message in result.stdout.str()
    assert "Traceback" not in result.stdout.str()


def test_fixture_without_marker_is_a_clear_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_it(kvreuse):\n    pass\n")
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*the kvreuse fixture needs @pytest.mark.kvreuse(path, ...)*"])


def test_analyses_are_memoized_across_tests_fixtures_and_manifests(
        tiny: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    loads = []
    real = pytest_kvreuse.api.load_block_stream

    def counting(path, **kw):
        loads.append((str(path), kw.get("block_size")))
        return real(path, **kw)

    monkeypatch.setattr(pytest_kvreuse.api, "load_block_stream", counting)
    tiny.makefile(".toml", kvreuse=MANIFEST)
    # Same content under another name: still one analysis.
    tiny.makefile(".jsonl", copy=TINY)
    tiny.makepyfile("""
        import pytest

        @pytest.mark.kvreuse("tiny.jsonl", gpu_cache_tokens=512, min_offloadable=0.3)
        def test_one(kvreuse):
            assert kvreuse.num_requests == 2

        @pytest.mark.kvreuse("copy.jsonl", block_size=64)
        def test_two(kvreuse):
            assert kvreuse.num_requests == 2

        def test_factory(kvreuse_analyze):
            a = kvreuse_analyze("tiny.jsonl")
            assert a is kvreuse_analyze("tiny.jsonl", block_size=64)
            assert kvreuse_analyze("tiny.jsonl", block_size=128).block_size == 128
    """)
    result = tiny.runpytest_inprocess()
    result.assert_outcomes(passed=5)
    # One load at block size 64 (two tests, the factory and two manifest checks) and one
    # at 128.
    assert sorted(b for _, b in loads) == [64, 128]


# -- manifests -----------------------------------------------------------------------------

def test_manifest_items_have_readable_node_ids(tiny: pytest.Pytester) -> None:
    tiny.makefile(".toml", kvreuse=MANIFEST)
    result = tiny.runpytest("--collect-only", "-q")
    result.stdout.fnmatch_lines([
        "kvreuse.toml::tiny::offloadable_fraction@512",
        "kvreuse.toml::tiny::reused_fraction",
    ])


def test_manifest_checks_pass_and_report_file_and_line(tiny: pytest.Pytester) -> None:
    tiny.makefile(".toml", kvreuse=MANIFEST)
    reprec = tiny.inline_run()
    reprec.assertoutcome(passed=2)
    locations = {r.nodeid: r.location for r in reprec.getreports("pytest_runtest_logreport")
                 if r.when == "call"}
    # reportinfo: 0-based line of each [[trace.check]] header.
    assert locations["kvreuse.toml::tiny::offloadable_fraction@512"] == (
        "kvreuse.toml", 7, "tiny offloadable_fraction@512")
    assert locations["kvreuse.toml::tiny::reused_fraction"][1] == 13


def test_manifest_threshold_failure_message(tiny: pytest.Pytester) -> None:
    tiny.makefile(".toml", kvreuse=MANIFEST.replace("min = 0.35", "min = 0.5"))
    result = tiny.runpytest("-v")
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    assert ("kvreuse: trace 'tiny' (tiny.jsonl): reused_fraction is 0.4 (40.00 %), below "
            "the minimum 0.5 (block size 64, tokenizer none (hash ids), 2 requests, "
            "2,560 tokens).") in out
    assert "Traceback" not in out and "items.py" not in out


def test_manifest_inline_checks_pattern_option_and_ini(tiny: pytest.Pytester) -> None:
    tiny.makefile(".toml", guards="""\
[[trace]]
path = "tiny.jsonl"
check = [{ metric = "offloadable_fraction", at = 959, min = 0.4 },
         { metric = "num_requests", min = 2, max = 2 }]
""")
    result = tiny.runpytest("--collect-only", "-q")
    assert "guards.toml" not in result.stdout.str()
    result = tiny.runpytest("--kvreuse-manifest-pattern=guards*.toml", "-v")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*guards.toml::tiny.jsonl::offloadable_fraction@959 PASSED*"])
    tiny.makeini("[pytest]\nkvreuse_manifest_pattern = guards*.toml\n")
    tiny.runpytest().assert_outcomes(passed=2)


def test_bad_manifest_is_a_one_line_collection_error(tiny: pytest.Pytester) -> None:
    tiny.makefile(".toml", kvreuse=MANIFEST.replace("min = 0.35", "minimum = 0.35"))
    result = tiny.runpytest()
    assert result.ret == pytest.ExitCode.INTERRUPTED
    out = result.stdout.str()
    assert ("kvreuse.toml:16: unknown key 'minimum' in [[trace.check]] (allowed: metric, at, "
            "min, max, policy, replicas, routing, lower_tier, share, hit)") in out
    assert "Traceback" not in out and "manifest.py" not in out


def test_unreadable_trace_fails_only_its_own_items(tiny: pytest.Pytester) -> None:
    tiny.makefile(".jsonl", broken='{"input_length": 512, "hash_ids": [1]}\n{"input_len\n')
    tiny.makefile(".toml", kvreuse=MANIFEST + """
[[trace]]
name = "broken"
path = "broken.jsonl"
[[trace.check]]
metric = "reused_fraction"
min = 0.1
[[trace.check]]
metric = "offloadable_fraction"
at = 512
max = 0.9

[[trace]]
name = "missing"
path = "nowhere.jsonl"
""")
    result = tiny.runpytest("-v")
    result.assert_outcomes(passed=2, failed=3)
    out = result.stdout.str()
    result.stdout.fnmatch_lines([
        "*kvreuse.toml::tiny::offloadable_fraction@512 PASSED*",
        "*kvreuse.toml::broken::reused_fraction FAILED*",
        "*kvreuse.toml::missing::analysis FAILED*",
    ])
    # The loader's one line, with the line of the bad record.
    assert re.search(r"kvreuse: \S*broken\.jsonl:2: ", out), out
    assert "Traceback" not in out
    table = summary_block(out)
    # Declaration order; pytest's count: the unreadable traces' three items failed.
    assert [row.split()[0] for row in table[1:-1]] == ["tiny", "broken", "missing"]
    assert [row.split()[-1] for row in table[1:-1]] == ["2/2", "ERROR", "ERROR"]
    assert table[-1] == "kvreuse: 3 traces, 5 checks: 2 passed, 3 failed, 2 unreadable"


def test_plugin_can_be_disabled(tiny: pytest.Pytester) -> None:
    tiny.makefile(".toml", kvreuse=MANIFEST)
    result = tiny.runpytest("-p", "no:kvreuse")
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED
    assert "kvreuse summary" not in result.stdout.str()
    result = tiny.runpytest("-p", "no:kvreuse", "--kvreuse-report")
    assert result.ret == pytest.ExitCode.USAGE_ERROR


# -- summary, junitxml, xdist --------------------------------------------------------------

def test_summary_table_and_quiet(tiny: pytest.Pytester) -> None:
    tiny.makefile(".jsonl", cold=COLD)
    tiny.makefile(".toml", kvreuse=MANIFEST + """
[[trace]]
name = "cold"
path = "cold.jsonl"
gpu_cache_tokens = 2048
check = [{ metric = "reused_fraction", max = 0.0 }]
""")
    result = tiny.runpytest()
    assert summary_block(result.stdout.str()) == [
        "trace  block  requests  tokens  reused %  offload % @512  offload % @2,048  result",
        "tiny      64         2   2,560     40.00           40.00                    passed 2/2",
        "cold      64         4   2,048      0.00                              0.00  passed 1/1",
        "kvreuse: 2 traces, 3 checks: 3 passed, 0 failed",
    ]
    quiet = tiny.runpytest("-q", "-q")
    assert "kvreuse" not in quiet.stdout.str()


def test_summary_never_raises(tiny: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    import pytest_kvreuse.output.summary

    def broken(results):
        raise ValueError("boom")

    monkeypatch.setattr(pytest_kvreuse.output.summary, "summary_table", broken)
    tiny.makefile(".toml", kvreuse=MANIFEST)
    result = tiny.runpytest_inprocess()
    result.assert_outcomes(passed=2)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["kvreuse: summary not shown: ValueError: boom"])


def test_junitxml_records_key_figures(tiny: pytest.Pytester) -> None:
    tiny.makefile(".toml", kvreuse=MANIFEST)
    tiny.makepyfile("""
        import pytest

        @pytest.mark.kvreuse("tiny.jsonl", gpu_cache_tokens=512, min_offloadable=0.3)
        def test_marked():
            pass
    """)
    xml = tiny.path / "junit.xml"
    tiny.runpytest(f"--junitxml={xml}").assert_outcomes(passed=3)
    cases = {}
    for case in ET.parse(xml).getroot().iter("testcase"):
        cases[case.get("name")] = {p.get("name"): p.get("value")
                                   for p in case.iter("property")}
    check = cases["offloadable_fraction@512"]
    assert check["kvreuse_trace"] == "tiny"
    assert check["kvreuse_requests"] == "2"
    assert check["kvreuse_tokens"] == "2560"
    assert check["kvreuse_reused_fraction"] == "0.4"
    assert check["kvreuse_offloadable_fraction@512"] == "0.4"
    assert check["kvreuse_check_offloadable_fraction@512"] == "0.4"
    marked = cases["test_marked"]
    assert marked["kvreuse_trace"] == "tiny.jsonl"
    assert marked["kvreuse_offloadable_fraction@512"] == "0.4"
    assert marked["kvreuse_check_offloadable_fraction@512"] == "0.4"


def test_xdist_summary_equals_serial(tiny: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    tiny.makefile(".jsonl", cold=COLD)
    tiny.makefile(".toml", kvreuse=MANIFEST + """
[[trace]]
name = "cold"
path = "cold.jsonl"
check = [{ metric = "reused_fraction", max = 0.0 },
         { metric = "offloadable_fraction", at = 4096, max = 0.5 }]
""")
    tiny.makepyfile("""
        import pytest

        @pytest.mark.kvreuse("tiny.jsonl", gpu_cache_tokens=2048, max_offloadable=0.1)
        def test_marked(kvreuse):
            pass
    """)
    serial = tiny.runpytest_subprocess("-p", "no:randomly")
    parallel = tiny.runpytest_subprocess("-n", "2", "-p", "no:randomly")
    serial.assert_outcomes(passed=5)
    parallel.assert_outcomes(passed=5)
    block = summary_block(parallel.stdout.str())
    assert block == summary_block(serial.stdout.str())
    # The manifest's "tiny" and the marker's "tiny.jsonl" are two declared traces of one
    # file: two rows, one analysis.
    assert block[-1] == "kvreuse: 3 traces, 5 checks: 5 passed, 0 failed"
    assert [row.split()[0] for row in block[1:-1]] == ["tiny", "cold", "tiny.jsonl"]
    assert parallel.stdout.str().count("kvreuse summary") == 1


# -- tokenization cache --------------------------------------------------------------------

def _fake_cached_analyze(calls: list):
    real = pytest_kvreuse.api.analyze

    def analyze(path, params=None, *, cache_dir=None, use_cache=True, **options):
        calls.append({"cache_dir": cache_dir, "use_cache": use_cache})
        return real(path, params, cache_dir=cache_dir, use_cache=use_cache, **options)

    return analyze


def test_cache_dir_is_pytests_cache_when_analyze_supports_it(
        tiny: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list = []
    monkeypatch.setattr(pytest_kvreuse.api, "analyze", _fake_cached_analyze(calls))
    tiny.makefile(".toml", kvreuse=MANIFEST)
    tiny.runpytest_inprocess().assert_outcomes(passed=2)
    assert calls == [{"cache_dir": tiny.path / ".pytest_cache" / "d" / "kvreuse",
                      "use_cache": True}]
    assert calls[0]["cache_dir"].is_dir()
    calls.clear()
    tiny.runpytest_inprocess("--kvreuse-no-cache").assert_outcomes(passed=2)
    assert calls == [{"cache_dir": None, "use_cache": False}]
    calls.clear()
    tiny.makeini("[pytest]\nkvreuse_no_cache = true\n")
    tiny.runpytest_inprocess().assert_outcomes(passed=2)
    assert calls == [{"cache_dir": None, "use_cache": False}]


def test_second_run_hits_the_tokenization_cache(pytester: pytest.Pytester,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    params = inspect.signature(pytest_kvreuse.api.analyze).parameters
    if "cache_dir" not in params:
        pytest.skip("analyze() has no cache_dir yet: the tokenization cache comes with the "
                    "text-trace loaders (issue 3); the plugin passes it once it exists")
    textblocks = pytest.importorskip("pytest_kvreuse.text.blocks")
    pytester.makefile(".jsonl", chat="\n".join(
        '{"messages": [{"role": "user", "content": "%s"}]}' % ("hello world " * (40 + i))
        for i in range(6)) + "\n")
    pytester.makefile(".toml", kvreuse="""\
[[trace]]
path = "chat.jsonl"
check = [{ metric = "num_requests", min = 6, max = 6 }]
""")
    pytester.runpytest_inprocess().assert_outcomes(passed=1)
    cache = pytester.path / ".pytest_cache" / "d" / "kvreuse"
    assert any(p.is_file() for p in cache.rglob("*")), "the first run cached nothing"

    def tokenize_again(*args, **kwargs):
        raise AssertionError("tokenized again")

    monkeypatch.setattr(textblocks, "text_block_stream", tokenize_again)
    # Served from pytest's cache: the tokenizer is not called ...
    pytester.runpytest_inprocess().assert_outcomes(passed=1)
    # ... and without the cache it would have been.
    result = pytester.runpytest_inprocess("--kvreuse-no-cache")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*tokenized again*"])


# -- report and JSON outputs ---------------------------------------------------------------

@pytest.fixture
def outputs(monkeypatch: pytest.MonkeyPatch) -> list:
    calls: list = []

    def write_report(path, results, run, *, template_dir=None):
        calls.append(("report", path, [r.to_json() for r in results], run, template_dir))

    def write_json(path, results, run):
        calls.append(("json", path, [r.to_json() for r in results], run))

    monkeypatch.setattr(pytest_kvreuse.output.report, "write_report", write_report)
    monkeypatch.setattr(pytest_kvreuse.output.report, "write_json", write_json)
    return calls


def test_report_and_json_are_written_with_results_and_run(
        tiny: pytest.Pytester, outputs: list) -> None:
    tiny.makefile(".toml", kvreuse=MANIFEST.replace("min = 0.35", "min = 0.5"))
    result = tiny.runpytest_inprocess("--kvreuse-report", "--kvreuse-json=out/r.json",
                                      "--kvreuse-template-dir=tpl")
    result.assert_outcomes(passed=1, failed=1)
    (kind_j, json_path, results, run), report = outputs[0], outputs[1]
    assert kind_j == "json" and json_path == tiny.path / "out" / "r.json"
    assert report[0] == "report" and report[1] == tiny.path / "kvreuse-report.html"
    assert report[4] == "tpl" and report[2] == results
    [trace] = results
    assert trace["name"] == "tiny" and trace["error"] is None
    assert trace["path"] == "tiny.jsonl" and trace["params"]["block_size"] == 64
    assert trace["figures"]["total_tokens"] == 2560
    assert trace["figures"]["offloadable_fraction"] == {"512": 0.4}
    assert [(c["nodeid"], c["passed"]) for c in trace["checks"]] == [
        ("kvreuse.toml::tiny::offloadable_fraction@512", True),
        ("kvreuse.toml::tiny::reused_fraction", False)]
    assert "below the minimum 0.5" in trace["checks"][1]["message"]
    assert set(run) == {"started", "duration_s", "args", "git_commit", "plugin_version",
                        "python", "timings"}
    assert "timings" not in trace and set(run["timings"]) == {"tiny"}
    assert run["timings"]["tiny"]["load_s"] >= 0
    assert run["args"][0] == "--kvreuse-report"
    result.stdout.fnmatch_lines([f"kvreuse: report written to {tiny.path}/kvreuse-report.html"])


def test_report_paths_from_ini(tiny: pytest.Pytester, outputs: list) -> None:
    tiny.makefile(".toml", kvreuse=MANIFEST)
    tiny.makeini("[pytest]\nkvreuse_report = artifacts/r.html\nkvreuse_json = r.json\n")
    tiny.runpytest_inprocess().assert_outcomes(passed=2)
    assert [(c[0], c[1]) for c in outputs] == [
        ("json", tiny.path / "r.json"), ("report", tiny.path / "artifacts" / "r.html")]


def test_report_write_failure_is_one_warning(tiny: pytest.Pytester,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    def write_report(path, results, run, *, template_dir=None):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(pytest_kvreuse.output.report, "write_report", write_report)
    tiny.makefile(".toml", kvreuse=MANIFEST)
    result = tiny.runpytest_inprocess("--kvreuse-report=r.html")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["kvreuse: warning: report not written: *r.html: "
                                 "Permission denied"])


@pytest.mark.parametrize("args", [("--kvreuse-report", "suite"),
                                  ("--kvreuse-report", "test_keep.py"),
                                  ("--kvreuse-report=out.txt",)])
def test_report_path_that_is_not_html_is_a_usage_error(tiny: pytest.Pytester,
                                                        args: tuple) -> None:
    tiny.mkdir("suite")
    keep = tiny.makepyfile(test_keep="def test_keep():\n    pass\n")
    before = keep.read_text()
    result = tiny.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*the kvreuse report path must end in .html, got*"])
    # The test file taken for the report path is untouched.
    assert keep.read_text() == before


def test_report_is_written_once_under_xdist(tiny: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    tiny.makeconftest("""
        import os
        import pytest_kvreuse.output.report

        def write_report(path, results, run, *, template_dir=None):
            with open("calls.txt", "a") as fh:
                fh.write(f"{path} {len(results)} {len(results[0].checks)}\\n")

        pytest_kvreuse.output.report.write_report = write_report
    """)
    tiny.makefile(".toml", kvreuse=MANIFEST)
    tiny.runpytest_subprocess("-n", "2", "--kvreuse-report").assert_outcomes(passed=2)
    [line] = (tiny.path / "calls.txt").read_text().splitlines()
    assert line.split() == [str(tiny.path / "kvreuse-report.html"), "1", "2"]


def test_checks_of_an_unreadable_trace_reach_the_results_as_failed(
        pytester: pytest.Pytester, outputs: list) -> None:
    pytester.makepyfile("""
        import pytest

        @pytest.mark.kvreuse("gone.jsonl", gpu_cache_tokens=512, min_offloadable=0.1,
                             max_offloadable=0.9)
        def test_gone():
            pass
    """)
    result = pytester.runpytest_inprocess("--kvreuse-json=r.json")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["kvreuse: *gone.jsonl: cannot read the trace: *"])
    [(_, _, [trace], _)] = outputs
    assert trace["error"].endswith("gone.jsonl: cannot read the trace: No such file or "
                                   "directory")
    assert trace["path"] == "gone.jsonl"
    [check] = trace["checks"]
    assert (check["metric"], check["at"], check["min"], check["max"], check["passed"],
            check["value"]) == ("offloadable_fraction", 512, 0.1, 0.9, False, None)
    assert check["message"] == trace["error"]
