"""The `kvreuse` command as a user meets it: summary, outputs, and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pytest_kvreuse.cli import main

RECORDS = [
    {"timestamp": 0, "input_length": 1100, "output_length": 5, "hash_ids": [1, 2, 3]},
    {"timestamp": 10, "input_length": 1500, "output_length": 5, "hash_ids": [1, 2, 4]},
    {"timestamp": 20, "input_length": 700, "output_length": 5, "hash_ids": [1, 5]},
]


@pytest.fixture
def trace(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    return path


def run_error(argv, capsys) -> str:
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("kvreuse: error: ")
    return lines[0]


def test_summary_and_outputs(trace, tmp_path, capsys):
    png, svg, js = tmp_path / "p.png", tmp_path / "p.svg", tmp_path / "r.json"
    assert main(["analyze", str(trace), "--gpu-kv-cache-size", "512", "--output", str(png),
                 "--json", str(js)]) == 0
    out = capsys.readouterr().out
    assert "requests:         3" in out
    assert "offloadable at 512 tokens" in out
    assert png.read_bytes().startswith(b"\x89PNG")
    assert main(["analyze", str(trace), "-o", str(svg), "-q"]) == 0
    assert b"<svg" in svg.read_bytes()[:500]
    [data] = json.loads(js.read_text())["traces"]
    # 17 + 23 + 10 blocks of 64; request 1 re-reads 16 blocks of request 0, request 2 8 of them.
    assert data["figures"]["num_blocks"] == 50
    assert data["figures"]["reuse_count"] == 24
    assert data["params"]["format"] == "mooncake"
    assert 0 <= data["figures"]["offloadable_fraction"]["512"] <= 1


def test_original_script_flags(trace, tmp_path, capsys):
    png = tmp_path / "p.png"
    assert main(["--input-file", str(trace), "--model-name", "x", "--block-size", "64",
                 "--gpu-kv-cache-size", "345792", "--output", str(png)]) == 0
    assert png.exists()
    assert "offloadable at 345,792 tokens" in capsys.readouterr().out


def test_help_is_clear():
    out = subprocess.run([sys.executable, "-m", "pytest_kvreuse.cli", "analyze", "--help"],
                         capture_output=True, text=True, check=True).stdout
    for flag in ("--block-size", "--gpu-kv-cache-size", "--output", "--json", "--format",
                 "--hash-block-size", "--input-file", "--quiet"):
        assert flag in out


def test_missing_file(tmp_path, capsys):
    line = run_error(["analyze", str(tmp_path / "nope.jsonl")], capsys)
    assert "nope.jsonl: no such file" in line


def test_empty_file(tmp_path, capsys):
    path = tmp_path / "empty.jsonl"
    path.write_text("\n\n")
    assert "empty.jsonl: trace is empty" in run_error(["analyze", str(path)], capsys)


def test_line_not_json(trace, capsys):
    text = trace.read_text().splitlines()
    text.insert(2, "{not json")
    trace.write_text("\n".join(text) + "\n")
    line = run_error(["analyze", str(trace), "--format", "mooncake"], capsys)
    assert "t.jsonl:3: not valid JSON" in line


def test_record_without_hash_ids(trace, capsys):
    trace.write_text(trace.read_text() + json.dumps({"input_length": 10}) + "\n")
    line = run_error(["analyze", str(trace)], capsys)
    assert "t.jsonl:4: record has no 'hash_ids'" in line


def test_block_size_not_fitting(trace, capsys):
    line = run_error(["analyze", str(trace), "--block-size", "96"], capsys)
    assert "block size 96 does not fit the trace's native hash block of 512" in line


def test_too_few_hash_ids(trace, capsys):
    trace.write_text(json.dumps({"input_length": 2000, "hash_ids": [1, 2]}) + "\n")
    line = run_error(["analyze", str(trace)], capsys)
    assert "t.jsonl:1: input_length 2000 needs 4 hash_ids" in line


def test_no_full_block_reports_undefined_figures(trace, tmp_path, capsys):
    trace.write_text(json.dumps({"input_length": 10, "hash_ids": [1]}) + "\n")
    out = tmp_path / "o.json"
    assert main(["analyze", str(trace), "--gpu-kv-cache-size", "1000", "--json", str(out)]) == 0
    captured = capsys.readouterr()
    assert "fractions are undefined" in captured.err
    assert "offloadable at 1,000 tokens: undefined" in captured.out
    [data] = json.loads(out.read_text())["traces"]
    assert data["figures"]["offloadable_fraction"] == {"1000": None}
    assert data["figures"]["reused_fraction"] is None


def test_bad_plot_extension_keeps_nothing(trace, tmp_path, capsys):
    assert "must end in .png or .svg" in run_error(
        ["analyze", str(trace), "-o", str(tmp_path / "p.jpg")], capsys)


def test_bad_flag_value_is_usage_error(trace, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["analyze", str(trace), "--block-size", "0"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "positive integer" in err and len(err.strip().splitlines()) == 1


def test_console_script_exit_code(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pytest_kvreuse.cli", "analyze",
                           str(tmp_path / "x.jsonl")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
