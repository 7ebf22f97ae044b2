"""`kvreuse compare` end to end, on `kvreuse analyze --json` outputs of generated traces."""

from __future__ import annotations

import pytest

from pytest_kvreuse.baselines.storage import BaselineStorage, baseline_document
from pytest_kvreuse.cli import main
from pytest_kvreuse.synthetic import Workload, generate, write_mooncake

GPU = "16384"


@pytest.fixture(scope="module")
def analyses(tmp_path_factory):
    """Two exports of a small chat workload: the same knobs with another seed, and one
    whose sessions attach long documents far more often (more reuse)."""
    d = tmp_path_factory.mktemp("traces")
    out = {}
    for name, w in {"old": Workload(sessions=30, seed=1),
                    "same": Workload(sessions=30, seed=1),
                    "docs": Workload(sessions=30, seed=1, document_share=0.9)}.items():
        trace = d / f"{name}.jsonl"
        write_mooncake(generate(w), trace)
        out[name] = d / f"{name}.json"
        assert main(["analyze", str(trace), "--gpu-kv-cache-size", GPU,
                     "--json", str(out[name]), "-q"]) == 0
    return out


def run(capsys, *argv):
    code = main(["compare", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def test_unchanged_trace_passes(analyses, capsys):
    code, out, _ = run(capsys, analyses["old"], analyses["old"],
                       "--fail", "offloadable_fraction:0", "--fail", "reused_fraction:0%")
    assert code == 0
    assert "old.jsonl: within tolerance; same trace content" in out
    assert f"offloadable_fraction@{GPU}" in out


def test_same_bytes_under_another_name_is_not_a_change(analyses, capsys):
    code, out, _ = run(capsys, analyses["old"], analyses["same"], "--fail", "reused_fraction:0")
    assert code == 0 and "same trace content" in out


def test_drift_beyond_tolerance_exits_1_with_table(analyses, capsys):
    code, out, _ = run(capsys, analyses["old"], analyses["docs"],
                       "--fail", "offloadable_fraction:0.01")
    assert code == 1
    row = next(line for line in out.splitlines() if line.startswith("docs.jsonl  offload"))
    assert row.split()[-2:] == ["±0.01", "DRIFT"]
    assert "docs.jsonl: DRIFTED (1 figure(s) beyond tolerance); trace changed" in out
    assert out.rstrip().endswith("1 figure(s) of 1 trace(s) drifted beyond tolerance.")


def test_generous_relative_tolerance_passes(analyses, capsys):
    code, out, _ = run(capsys, analyses["old"], analyses["docs"],
                       "--fail", "offloadable_fraction:1000%", "--fail", "unique_blocks:1000%")
    assert code == 0 and "within tolerance; trace changed" in out


def test_no_tolerance_never_fails(analyses, capsys):
    code, out, _ = run(capsys, analyses["old"], analyses["docs"])
    assert code == 0 and "nothing can fail" in out


def test_bad_expression_is_a_usage_error(analyses, capsys):
    with pytest.raises(SystemExit) as info:
        main(["compare", str(analyses["old"]), str(analyses["docs"]), "--fail", "offload=2"])
    assert info.value.code == 2
    assert "bad drift tolerance 'offload=2'" in capsys.readouterr().err


def test_unknown_metric_and_missing_file_exit_2(analyses, capsys, tmp_path):
    code, _, err = run(capsys, analyses["old"], analyses["docs"], "--fail", "offload:2")
    assert code == 2 and "unknown metric 'offload'" in err
    code, _, err = run(capsys, tmp_path / "nope.json", analyses["docs"])
    assert code == 2 and "nope.json: cannot read" in err


def test_saved_runs_compare_by_trace_name(tmp_path, capsys):
    def t(name, reused):
        return {"name": name, "params": {"content_sha256": name * 4},
                "figures": {"reused_fraction": reused}, "offloadable_fraction": {}}

    s = BaselineStorage(tmp_path)
    a = s.save(baseline_document([t("chat", 0.5), t("gone", 0.1)], {"git_commit": "ab" * 20}),
               "main")
    b = s.save(baseline_document([t("chat", 0.51), t("fresh", 0.9)], {}), "branch")
    code, out, _ = run(capsys, a.path, b.path, "--fail", "reused_fraction:0.02")
    assert code == 0
    assert f"baseline: {a.path} (commit ababababab, saved " in out
    assert "fresh: new (not in the baseline; not compared)" in out
    assert "gone: missing from this run" in out
