"""`kvreuse analyze --opt --ttl --policies`: summary lines, JSON, missing extra."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_kvreuse.cli import main

EXAMPLE = Path(__file__).resolve().parents[1] / "example_traces" / "chat_sessions.mooncake.jsonl"


def test_opt_and_ttl_lines_and_json(tmp_path, capsys):
    out_json = tmp_path / "r.json"
    rc = main(["analyze", str(EXAMPLE), "--gpu-kv-cache-size", "16384", "--opt",
               "--ttl", "60,10min", "--json", str(out_json)])
    assert rc == 0
    out = capsys.readouterr().out
    doc = json.loads(out_json.read_text())["traces"][0]
    fig = doc["figures"]
    lru, opt = fig["lru_hit_fraction"]["16384"], fig["opt_hit_fraction"]["16384"]
    assert opt >= lru
    assert fig["opt_gap_fraction"]["16384"] == pytest.approx(opt - lru)
    assert f"OPT (Belady) hit: {opt * 100:.4f} %; gap to LRU +{(opt - lru) * 100:.4f} " \
           "points" in out
    assert set(fig["ttl_hit_fraction"]) == {"60", "600"}
    assert f"TTL 600 s: hit {fig['ttl_hit_fraction']['600'] * 100:.4f} %, peak " \
           f"{fig['ttl_peak_tokens']['600']:,} tokens held" in out
    assert "reuse time:       median " in out and "p99" in out
    assert {"opt", "reuse_time"} <= set(doc["curves"])


def test_without_opt_nothing_of_it(tmp_path, capsys):
    out_json = tmp_path / "r.json"
    assert main(["analyze", str(EXAMPLE), "--gpu-kv-cache-size", "16384",
                 "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    doc = json.loads(out_json.read_text())["traces"][0]
    assert "OPT" not in out and "opt_hit_fraction" not in doc["figures"]
    assert "opt" not in doc["curves"]


def test_ttl_without_timestamps_says_why(tmp_path, capsys):
    trace = tmp_path / "t.jsonl"
    trace.write_text('{"input_length": 128, "hash_ids": [1]}\n'
                     '{"input_length": 128, "hash_ids": [1]}\n')
    assert main(["analyze", str(trace), "--ttl", "60"]) == 0
    assert "reuse time:       undefined: the trace carries no timestamps" in \
        capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["--ttl", "10d"], "must be a duration"),
    (["--opt"], "--opt needs --gpu-kv-cache-size"),
    (["--policies", "arc"], "--policies needs --gpu-kv-cache-size")])
def test_bad_flags_are_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["analyze", str(EXAMPLE), *argv])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_policies_without_the_extra_one_line(without_libcachesim, capsys):
    assert main(["analyze", str(EXAMPLE), "--gpu-kv-cache-size", "16384",
                 "--policies", "arc,s3fifo"]) == 0
    captured = capsys.readouterr()
    assert captured.err.count('pip install "pytest-kvreuse[policies]"') == 1
    assert "LRU cache of 16,384 tokens" in captured.out


def test_policies_with_libcachesim(capsys):
    pytest.importorskip("libcachesim")
    assert main(["analyze", str(EXAMPLE), "--gpu-kv-cache-size", "16384",
                 "--policies", "arc,s3fifo"]) == 0
    out = capsys.readouterr().out
    assert "arc (block-level): hit " in out and "s3fifo (block-level): hit " in out


def test_plot_draws_the_opt_curve(tmp_path):
    png = tmp_path / "p.png"
    assert main(["analyze", str(EXAMPLE), "--gpu-kv-cache-size", "16384", "--opt", "-q",
                 "-o", str(png)]) == 0
    assert png.read_bytes()[:4] == b"\x89PNG"
