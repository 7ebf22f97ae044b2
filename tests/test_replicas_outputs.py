"""Replicas behind a router in every output: the CLI's table and JSON, manifest and marker
checks through the plugin, drift, and the report's plot."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from oracle_lru import make_stream
from report_html import parse

from pytest_kvreuse.cli import main
from pytest_kvreuse.core.analysis import ReuseAnalysis
from pytest_kvreuse.core.replicas import _column_counts, prefix_replicas
from pytest_kvreuse.metrics import METRICS, figure_title, parse_arg_key
from pytest_kvreuse.output import report
from pytest_kvreuse.result import TraceResult

# Round-robin sends each follow-up to the other replica; prefix routing to its prefix.
TRACE = ('{"input_length": 192, "hash_ids": [1, 2, 3]}\n'
         '{"input_length": 256, "hash_ids": [1, 2, 3, 7]}\n'
         '{"input_length": 192, "hash_ids": [4, 5, 6]}\n'
         '{"input_length": 256, "hash_ids": [4, 5, 6, 8]}\n')
# The source tree's templates: an editable install may map the package to another checkout.
TEMPLATES = Path(__file__).resolve().parents[1] / "templates"
RUN = {"started": "2026-01-01T00:00:00+00:00", "args": ["kvreuse"], "version": "test"}


@pytest.fixture
def trace(tmp_path: Path) -> Path:
    path = tmp_path / "t.mooncake.jsonl"
    path.write_text(TRACE)
    return path


def _cli(trace: Path, *flags: str) -> list[str]:
    return ["analyze", str(trace), "--block-size", "64", "--hash-block-size", "64", *flags]


def test_cli_table(trace, capsys):
    assert main(_cli(trace, "--gpu-kv-cache-size", "512", "--replicas", "1,2",
                     "--routing", "round-robin,prefix")) == 0
    out = capsys.readouterr().out
    table = out[out.index("replicas behind a router"):].splitlines()
    assert table[0] == "replicas behind a router, a GPU cache of 512 tokens each:"
    assert table[1].split() == ["replicas", "round-robin", "hit", "round-robin", "imbalance",
                                "prefix", "hit", "prefix", "imbalance", "pooled", "N", "x",
                                "C", "hit"]
    # 1 replica: every routing is the single cache (6 hits of 14 blocks).
    assert table[2].split() == ["1", "42.8571", "%", "1.0000", "42.8571", "%", "1.0000",
                                "42.8571", "%"]
    # 2 replicas: round-robin splits both prefixes away from their reuse, prefix follows them.
    assert table[3].split() == ["2", "0.0000", "%", "1.0000", "42.8571", "%", "1.0000",
                                "42.8571", "%"]


def test_cli_default_routings_and_json(trace, tmp_path, capsys):
    out = tmp_path / "r.json"
    assert main(_cli(trace, "--gpu-kv-cache-size", "512", "--replicas", "2",
                     "--json", str(out), "-q")) == 0
    figures = json.loads(out.read_text())["traces"][0]["figures"]
    assert figures["routed_hit_fraction"] == {
        "512,replicas=2,routing=prefix": pytest.approx(6 / 14),
        "512,replicas=2,routing=round-robin": 0.0}
    assert figures["routed_load_imbalance"]["512,replicas=2,routing=prefix"] == 1.0
    assert figures["lru_hit_fraction"]["1024"] == pytest.approx(6 / 14)


def test_cli_session_routing_without_sessions_says_why(trace, capsys):
    # Mooncake traces carry no session ids.
    assert main(_cli(trace, "--gpu-kv-cache-size", "512", "--replicas", "1,2",
                     "--routing", "session")) == 0
    out = capsys.readouterr().out
    assert "undefined" in out
    assert out.count("session routing needs session ids") == 1


@pytest.mark.parametrize("flags, message", [
    (["--replicas", "2"], "--replicas needs --gpu-kv-cache-size"),
    (["--routing", "prefix"], "--routing needs --replicas"),
    (["--gpu-kv-cache-size", "512", "--replicas", "0"], "positive number of replicas"),
    (["--gpu-kv-cache-size", "512", "--replicas", "2", "--routing", "hash"],
     "must be a routing policy"),
])
def test_cli_bad_flags_are_one_line(trace, capsys, flags, message):
    with pytest.raises(SystemExit) as exc:
        main(_cli(trace, *flags))
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_metric_entries_and_titles():
    m = METRICS["routed_hit_fraction"]
    assert m.arg_names == ("at", "replicas", "routing")
    assert m.read_args({"at": "1,000,000", "replicas": "8", "routing": "Prefix"}) == \
        {"at": 1_000_000, "replicas": 8, "routing": "prefix"}
    assert parse_arg_key(m, "1000000,replicas=8,routing=prefix") == \
        {"at": 1_000_000, "replicas": 8, "routing": "prefix"}
    assert figure_title("routed_hit_fraction", {"at": 1_000_000, "replicas": 8,
                                                "routing": "prefix"}) == \
        "routed hit at 1,000,000 tokens, replicas 8, routing prefix"
    assert METRICS["routed_load_imbalance"].text(1.00676) == "1.0068"


MANIFEST = """\
[defaults]
block_size = 64
hash_block_size = 64
gpu_cache_tokens = 512

[[trace]]
name = "fleet"
path = "fleet.jsonl"
check = [{{ metric = "routed_hit_fraction", replicas = 2, routing = "prefix", min = {low} }},
         {{ metric = "routed_load_imbalance", replicas = 2, routing = "round-robin", max = 1.0 }}]
"""


def test_manifest_checks_pass_and_fail(pytester: pytest.Pytester):
    pytester.makefile(".jsonl", fleet=TRACE)
    pytester.makefile(".toml", kvreuse=MANIFEST.format(low=0.4))
    result = pytester.runpytest("--kvreuse-json=out.json")
    assert result.ret == 0, result.stdout.str()
    doc = json.loads((pytester.path / "out.json").read_text())["traces"][0]
    assert doc["figures"]["routed_hit_fraction"]["512,replicas=2,routing=prefix"] == \
        pytest.approx(6 / 14)
    pytester.makefile(".toml", kvreuse=MANIFEST.format(low=0.5))
    result = pytester.runpytest()
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*routed_hit_fraction at 512 tokens, replicas 2, routing "
                                 "prefix is 0.428571 (42.86 %), below the minimum 0.5*"])


def test_marker_check(pytester: pytest.Pytester):
    pytester.makefile(".jsonl", fleet=TRACE)
    pytester.makepyfile("""
        import pytest

        @pytest.mark.kvreuse("fleet.jsonl", block_size=64, hash_block_size=64,
                             gpu_cache_tokens=512)
        def test_fleet(kvreuse):
            assert kvreuse.routed_hit_fraction(512, replicas=2, routing="prefix") == 6 / 14
            assert kvreuse.routed(512, replicas=2, routing="prefix").requests == (2, 2)
    """)
    result = pytester.runpytest()
    assert result.ret == 0, result.stdout.str()


def test_report_plots_hit_against_replicas(trace, tmp_path):
    a = ReuseAnalysis(make_stream([[1, 2, 3], [1, 2, 3, 7], [4, 5, 6], [4, 5, 6, 8]],
                                  block_size=64))
    a.params["path"] = "t"
    r = TraceResult.from_analysis(a, name="t", sizes=[256, 512], replicas=[1, 2, 4],
                                  routings=["round-robin", "prefix"])
    assert set(r.figures["lru_hit_fraction"]) >= {"256", "512", "1024", "2048"}
    out = tmp_path / "report.html"
    report.write_report(out, [r.to_json()], RUN, template_dir=TEMPLATES)
    page = parse(out.read_text())
    assert any("against the number of replicas" in tag.get("alt", "")
               for name, tag in page.tags if name == "img")
    # Without routed figures, no such plot.
    plain = TraceResult.from_analysis(a, name="t", sizes=[256])
    report.write_report(out, [plain.to_json()], RUN, template_dir=TEMPLATES)
    assert not any("against the number of replicas" in tag.get("alt", "")
                   for name, tag in parse(out.read_text()).tags if name == "img")


@pytest.mark.parametrize("rows, width", [(700, 16), (255, 8), (256, 8), (40, 24)])
def test_column_counts(rows, width):
    rng = np.random.default_rng(3)
    flags = rng.random((rows, width)) < 0.7
    assert _column_counts(flags.reshape(-1).copy(), rows, width) == flags.sum(axis=0).tolist()


def test_more_than_eight_replicas_match_the_oracle():
    from oracle_replicas import simulate

    rng = np.random.default_rng(5)
    requests = [[int(h) * 10 + d for d in range(int(rng.integers(1, 6)))]
                for h in rng.integers(0, 6, 200)]
    stream = make_stream(requests, block_size=64)
    for n in (9, 12):
        assignment, hits = prefix_replicas(stream, n, 4)
        want = simulate(requests, n, 4, "prefix")
        assert assignment.tolist() == want["assignment"] and hits.tolist() == want["hits"]


def test_drift_of_a_routed_figure_fails_compare(trace, tmp_path, capsys):
    base, cur = tmp_path / "base.json", tmp_path / "cur.json"
    assert main(_cli(trace, "--gpu-kv-cache-size", "512", "--replicas", "2",
                     "--routing", "prefix", "--json", str(base), "-q")) == 0
    doc = json.loads(base.read_text())
    doc["traces"][0]["figures"]["routed_hit_fraction"]["512,replicas=2,routing=prefix"] -= 0.1
    cur.write_text(json.dumps(doc))
    capsys.readouterr()
    assert main(["compare", str(base), str(cur), "--fail", "routed_hit_fraction:0.05"]) == 1
    assert "routed_hit_fraction@512,replicas=2,routing=prefix" in capsys.readouterr().out
    assert main(["compare", str(base), str(cur), "--fail", "routed_hit_fraction:0.2"]) == 0
