"""The reference figures (docs/definitions.md; the shared traces): reproduced exactly."""

from __future__ import annotations

import json

import pytest

from pytest_kvreuse import analyze
from pytest_kvreuse.cli import main
from pytest_kvreuse.text import tokenizer


@pytest.fixture(scope="module")
def mooncake64(request):
    shared = request.getfixturevalue("shared_traces")
    return analyze(shared / "mooncake_synthetic_trace.jsonl", block_size=64)


def test_mooncake_block_counts(mooncake64):
    a = mooncake64
    assert (a.num_requests, a.num_blocks, a.unique_blocks) == (3993, 954_267, 331_666)
    assert a.total_tokens == 61_073_088
    assert a.reuse_count == 622_601
    assert (a.interval_min, a.interval_median, a.interval_max) == (2752, 3_999_232, 44_867_008)


@pytest.mark.parametrize("gpu, percent", [(345_792, 59.4846), (16_384, 65.1341),
                                          (1_000_000, 51.7395)])
def test_mooncake_offloadable(mooncake64, gpu, percent):
    assert round(mooncake64.offloadable_fraction(gpu) * 100, 4) == percent


def test_mooncake_intervals_beyond_gpu(mooncake64):
    assert int((mooncake64.intervals > 345_792).sum()) == 567_642


def test_mooncake_block_512(shared_traces):
    a = analyze(shared_traces / "mooncake_synthetic_trace.jsonl", block_size=512)
    assert a.num_blocks == 117_888
    assert a.reuse_count == 77_740
    assert round(a.offloadable_fraction(345_792) * 100, 4) == 60.1198


def test_cli_json_matches(shared_traces, tmp_path, capsys):
    out = tmp_path / "r.json"
    rc = main(["analyze", "--input-file", str(shared_traces / "mooncake_synthetic_trace.jsonl"),
               "--gpu-kv-cache-size", "345792", "--json", str(out), "--quiet"])
    assert rc == 0
    [trace] = json.loads(out.read_text())["traces"]
    data = trace["figures"]
    assert data["num_blocks"] == 954_267
    assert data["unique_blocks"] == 331_666
    assert data["reuse_count"] == 622_601
    assert trace["sizes"] == [345_792]
    assert round(data["offloadable_fraction"]["345792"] * 100, 4) == 59.4846
    assert capsys.readouterr().out == ""


def test_the_original_scripts_command_offline(shared_traces, tmp_path, capsys, monkeypatch):
    """The seed's own command, as its users typed it, on the shared text trace: the hub
    name resolves offline to the built-in tokenizer and the figures are the reference's."""
    for var in ("HF_HOME", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        monkeypatch.setenv(var, str(tmp_path / "hf"))  # nothing cached: no real V3.1 files
    monkeypatch.setattr(tokenizer, "_NOTED", set())  # the note is printed once a process
    plot = tmp_path / "p.png"
    assert main(["--input-file", str(shared_traces / "synthetic_head120.aiperf.json"),
                 "--model-name", "deepseek-ai/DeepSeek-V3.1", "--block-size", "64",
                 "--gpu-kv-cache-size", "345792", "--output", str(plot),
                 "--cache-dir", str(tmp_path / "cache")]) == 0
    out, err = capsys.readouterr()
    assert "kvreuse: note: tokenizer 'deepseek-ai/DeepSeek-V3.1'" in err
    assert "total tokens:     1,614,784" in out
    assert "blocks:           25,231 (23,940 unique)" in out
    assert "reuses:           1,291" in out
    assert "interval, tokens: min 17,280, median 96,960, max 1,246,464" in out
    assert "offloadable at 345,792 tokens: 2.1046 %" in out
    assert plot.read_bytes()[:4] == b"\x89PNG"
