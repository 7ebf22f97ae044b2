"""Parameters, metrics and results declared once: one analysis per content and effective
parameters, one row per declared trace, values refused where they are written, and files
of 0.1 still read."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from test_plugin import MANIFEST, TINY, summary_block

import pytest_kvreuse.api
from pytest_kvreuse import AnalysisParams, analyze
from pytest_kvreuse.baselines.drift import compare_runs, parse_tolerances
from pytest_kvreuse.baselines.storage import BaselineStorage, load_results
from pytest_kvreuse.checks import Check, evaluate
from pytest_kvreuse.cli import main
from pytest_kvreuse.metrics import METRICS, MetricError, metric
from pytest_kvreuse.params import PARAMS, ParamError
from pytest_kvreuse.result import Results, TraceResult

REPO = Path(__file__).resolve().parents[1]
V01 = Path(__file__).resolve().parent / "data" / "v0_1"
EXAMPLE = REPO / "example_traces"


# -- AnalysisParams -------------------------------------------------------------------------

def test_params_have_one_declaration_each():
    assert [p.name for p in PARAMS] == list(AnalysisParams().to_dict())
    assert AnalysisParams().to_dict() == {p.name: p.default for p in PARAMS}


@pytest.mark.parametrize("values, message", [
    ({"warmup": 1.5}, "warmup must be a fraction in [0, 1)"),
    ({"prompt": "fancy"}, "unknown prompt 'fancy' (known: raw, chat, per-message)"),
    ({"block_size": 0}, "block size must be a positive integer, got 0"),
    ({"format": "csv"}, "unknown format 'csv'"),
    ({"blocksize": 64}, "unknown argument 'blocksize'"),
])
def test_bad_values_are_refused(values, message):
    with pytest.raises(ParamError) as info:
        AnalysisParams.from_mapping(values)
    assert message in info.value.one_line()


def test_hash_id_traces_ignore_tokenizer_and_prompt_in_the_memo_key():
    a = AnalysisParams(tokenizer="deepseek-v3")
    b = AnalysisParams(tokenizer="some/other", prompt="chat")
    assert a.key("mooncake") == b.key("mooncake")
    assert a.key("aiperf") != b.key("aiperf")
    assert AnalysisParams().key() == AnalysisParams(tokenizer="deepseek-v3").key()


def test_marker_and_manifest_with_the_default_spelled_out_share_one_analysis(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = pytest_kvreuse.api.analyze

    def counting(path, params=None, **kw):
        calls.append(Path(path).name)
        return real(path, params, **kw)

    monkeypatch.setattr(pytest_kvreuse.api, "analyze", counting)
    pytester.makefile(".jsonl", tiny=TINY)
    pytester.makefile(".toml", kvreuse=MANIFEST)
    pytester.makepyfile("""
        import pytest

        @pytest.mark.kvreuse("tiny.jsonl", block_size=64, tokenizer="deepseek-v3",
                             prompt="raw", gpu_cache_tokens=512, max_offloadable=0.5)
        def test_marked(kvreuse):
            assert kvreuse.num_requests == 2
    """)
    pytester.runpytest_inprocess().assert_outcomes(passed=3)
    assert calls == ["tiny.jsonl"]


@pytest.mark.parametrize("entry, line, message", [
    ('warmup = 1.5\n', 4, "'warmup' must be a fraction in [0, 1)"),
    ('prompt = "fancy"\n', 4, "unknown 'prompt' 'fancy'"),
])
def test_a_bad_manifest_value_is_refused_at_collection_naming_file_and_line(
        pytester: pytest.Pytester, entry: str, line: int, message: str) -> None:
    pytester.makefile(".jsonl", tiny=TINY)
    pytester.makefile(".toml", kvreuse=f'[[trace]]\nname = "t"\npath = "tiny.jsonl"\n{entry}'
                                       'check = [{ metric = "reused_fraction", min = 0.1 }]\n')
    result = pytester.runpytest("--collect-only")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    out = result.stdout.str()
    assert f"kvreuse.toml:{line}: {message}" in out and "Traceback" not in out


# -- the metric registry --------------------------------------------------------------------

def test_a_name_that_is_no_scalar_metric_is_refused_listing_the_valid_ones():
    with pytest.raises(MetricError) as info:
        metric("lru_curve")
    text = info.value.one_line()
    assert "unknown metric 'lru_curve'" in text
    assert all(name in text for name in METRICS)


def test_lru_curve_in_a_manifest_fails_at_collection(pytester: pytest.Pytester) -> None:
    pytester.makefile(".jsonl", tiny=TINY)
    pytester.makefile(".toml", kvreuse='[[trace]]\npath = "tiny.jsonl"\n[[trace.check]]\n'
                                       'metric = "lru_curve"\nmax = 1\n')
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.INTERRUPTED
    out = result.stdout.str()
    assert "kvreuse.toml:3: unknown metric 'lru_curve'" in out
    assert "lru_hit_fraction" in out and "TypeError" not in out and "Traceback" not in out


def test_every_metric_computes_on_an_analysis_and_formats():
    a = analyze(EXAMPLE / "chat_sessions.mooncake.jsonl")
    args = {"at": 16384, "lower_tier": 100000, "hit": 0.3, "share": 0.9, "replicas": 4,
            "routing": "prefix"}
    for m in METRICS.values():
        if "policy" in m.arg_names:
            continue  # needs the [policies] extra: tests of its own
        value = m.value(a, **{k: v for k, v in args.items() if k in m.arg_names})
        assert value is None or isinstance(value, (int, float)), m.name
        assert isinstance(m.text(value), str) and m.label and m.help


def test_a_split_without_sessions_says_why_it_is_undefined():
    a = analyze(EXAMPLE / "chat_sessions.mooncake.jsonl")  # Mooncake: no session ids
    value, message = evaluate(a, Check("lru_hit_same_session_fraction", 16384, 0.1))
    assert value != value
    assert message.endswith("is undefined: the trace carries no session ids")


# -- one result per declared trace ----------------------------------------------------------

def test_two_entries_of_one_content_are_two_traces_sharing_one_analysis(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = pytest_kvreuse.api.analyze
    monkeypatch.setattr(pytest_kvreuse.api, "analyze",
                        lambda path, params=None, **kw: calls.append(path) or real(
                            path, params, **kw))
    pytester.makefile(".jsonl", tiny=TINY, copy=TINY)
    pytester.makefile(".toml", kvreuse="""\
[[trace]]
name = "first"
path = "tiny.jsonl"
check = [{ metric = "reused_fraction", min = 0.1 }]

[[trace]]
name = "second"
path = "copy.jsonl"
check = [{ metric = "reused_fraction", min = 0.9 }]
""")
    result = pytester.runpytest_inprocess("--kvreuse-json=r.json")
    result.assert_outcomes(passed=1, failed=1)
    assert len(calls) == 1
    out = result.stdout.str()
    # The failure blames the second entry, by its own name and path.
    assert "kvreuse: trace 'second' (copy.jsonl): reused_fraction is 0.4" in out
    table = [line for line in summary_block(out) if "written to" not in line]
    assert [row.split()[0] for row in table[1:-1]] == ["first", "second"]
    assert table[-1] == "kvreuse: 2 traces, 2 checks: 1 passed, 1 failed"
    traces = json.loads((pytester.path / "r.json").read_text())["traces"]
    assert [(t["name"], t["path"]) for t in traces] == [("first", "tiny.jsonl"),
                                                         ("second", "copy.jsonl")]
    assert traces[0]["figures"] == traces[1]["figures"]


def test_the_summary_shows_the_value_of_every_checked_figure(pytester: pytest.Pytester):
    pytester.makefile(".jsonl", tiny=TINY)
    pytester.makefile(".toml", kvreuse='[[trace]]\nname = "t"\npath = "tiny.jsonl"\n'
                                       'check = [{ metric = "lru_hit_fraction", at = 2048, '
                                       'min = 0.9 }]\n')
    result = pytester.runpytest_inprocess()
    result.assert_outcomes(failed=1)
    header, row = summary_block(result.stdout.str())[:2]
    assert "LRU hit % @2,048" in header
    value = analyze(pytester.path / "tiny.jsonl").lru_hit_fraction(2048) * 100
    assert f"{value:.2f}" in row.split() and row.endswith("FAILED 1/1")


def test_drift_failures_are_counted_as_pytest_counts_them(pytester: pytest.Pytester):
    pytester.makefile(".jsonl", tiny=TINY)
    pytester.makefile(".toml", kvreuse=MANIFEST)
    pytester.runpytest("--kvreuse-save=main").assert_outcomes(passed=2)
    (pytester.path / "tiny.jsonl").write_text(TINY + '{"input_length": 512, "hash_ids": [9]}\n')
    result = pytester.runpytest("--kvreuse-compare", "--kvreuse-compare-fail=unique_blocks:0")
    result.assert_outcomes(failed=2)
    assert summary_block(result.stdout.str())[-1] == \
        "kvreuse: 1 trace, 2 checks: 0 passed, 2 failed"


# -- one result document --------------------------------------------------------------------

def test_results_saved_by_0_1_still_load_and_compare(tmp_path: Path) -> None:
    """Files written by pytest-kvreuse 0.1 (tests/data/v0_1): a saved baseline, the
    plugin's --kvreuse-json and kvreuse analyze --json."""
    saved, doc = load_results(V01 / "0001_main.json")
    assert [t.name for t in saved] == ["chat-hash-ids", "chat-text"]
    assert doc["versions"]["pytest-kvreuse"] == "0.1.0"
    hashed = {t.name: t for t in saved}["chat-hash-ids"]
    assert hashed.value("offloadable_fraction", at=345792) == pytest.approx(0.2671, abs=1e-4)
    assert hashed.value("lru_offloadable_fraction", at=345792) == pytest.approx(0.1618,
                                                                              abs=1e-4)
    assert hashed.content_sha256 and hashed.path == "chat_sessions.mooncake.jsonl"
    assert len(hashed.checks) == 4
    [plugin_json] = [Results.from_json(json.loads((V01 / "kvreuse-json.json").read_text()))]
    assert [t.name for t in plugin_json.traces] == ["chat-hash-ids", "chat-text"]
    [cli] = load_results(V01 / "analyze.json")[0]
    assert cli.value("lower_tier_hit_fraction", at=16384, lower_tier=100000) is not None

    # Today's run of the same traces matches 0.1's figures: a drift-free comparison.
    storage = tmp_path / ".kvreuse"
    storage.mkdir()
    shutil.copy(V01 / "0001_main.json", storage / "0001_main.json")
    now = [TraceResult.from_analysis(analyze(EXAMPLE / "chat_sessions.mooncake.jsonl"),
                                     name="chat-hash-ids", path="chat_sessions.mooncake.jsonl",
                                     sizes=[16384, 345792], content_sha256=hashed.content_sha256)]
    base = BaselineStorage(storage).load()[1].traces
    comparison = compare_runs(base, now, parse_tolerances(
        ["offloadable_fraction:0", "lru_hit_fraction:0", "reused_fraction:0"]))
    verdict = comparison.by_name()["chat-hash-ids"]
    assert verdict.status == "within tolerance" and verdict.changed is False
    assert len(verdict.figures) >= 7


def test_cli_json_plugin_json_and_baselines_are_one_document(tmp_path: Path,
                                                            pytester: pytest.Pytester):
    out = tmp_path / "cli.json"
    assert main(["analyze", str(EXAMPLE / "chat_sessions.mooncake.jsonl"), "-q",
                 "--gpu-kv-cache-size", "345792", "--json", str(out)]) == 0
    cli = json.loads(out.read_text())
    pytester.makefile(".jsonl", tiny=TINY)
    pytester.makefile(".toml", kvreuse=MANIFEST)
    pytester.runpytest_inprocess("--kvreuse-json=p.json", "--kvreuse-save=main")
    plugin = json.loads((pytester.path / "p.json").read_text())
    [saved] = (pytester.path / ".kvreuse").glob("*.json")
    baseline = json.loads(saved.read_text())
    for doc in (cli, plugin, baseline):
        assert doc["schema_version"] == 1 and doc["kind"] == "kvreuse-results"
        [trace] = doc["traces"]
        assert set(trace) >= {"name", "path", "params", "content_sha256", "sizes", "figures",
                              "curves", "checks", "error"}
        assert Results.from_json(doc).traces[0].to_json(extras=False) == {
            k: v for k, v in trace.items() if k != "extras"}


def test_marker_bounds_reach_every_metric_of_the_registry(pytester: pytest.Pytester):
    pytester.makefile(".jsonl", tiny=TINY)
    pytester.makepyfile("""
        import pytest

        @pytest.mark.kvreuse("tiny.jsonl", gpu_cache_tokens=512, min_reused_fraction=0.35,
                             max_lru_hit_fraction=0.9, max_unique_blocks=100)
        def test_bounds(kvreuse):
            pass

        @pytest.mark.kvreuse("tiny.jsonl", min_unique_blocks=1000)
        def test_too_few(kvreuse):
            pass
    """)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    assert "unique_blocks is 24, below the minimum 1000" in result.stdout.str()
