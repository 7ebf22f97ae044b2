"""The LRU figures through the CLI, the JSON output, the plot and the result dicts."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from pytest_kvreuse.api import analyze
from pytest_kvreuse.cli import main
from pytest_kvreuse.result import Results, TraceResult

EXAMPLE = Path(__file__).resolve().parents[1] / "example_traces" / "chat_sessions.mooncake.jsonl"


def _bailian(path: Path) -> Path:
    """Two conversations; each turn re-sends its history (chat 1 -> 3, chat 2 -> 4)."""
    rows = [
        {"chat_id": 1, "parent_chat_id": -1, "timestamp": 0, "input_length": 64,
         "output_length": 8, "hash_ids": [1, 2, 3, 4]},
        {"chat_id": 2, "parent_chat_id": -1, "timestamp": 1, "input_length": 48,
         "output_length": 8, "hash_ids": [1, 2, 5]},
        {"chat_id": 3, "parent_chat_id": 1, "timestamp": 2, "input_length": 96,
         "output_length": 8, "hash_ids": [1, 2, 3, 4, 6, 7]},
        {"chat_id": 4, "parent_chat_id": 2, "timestamp": 3, "input_length": 64,
         "output_length": 8, "hash_ids": [1, 2, 5, 8]},
    ]
    path.write_bytes(b"\n".join(orjson.dumps(r) for r in rows) + b"\n")
    return path


def test_cli_json_and_summary_carry_lru_figures(tmp_path, capsys):
    out = tmp_path / "a.json"
    plot = tmp_path / "a.png"
    rc = main(["analyze", str(EXAMPLE), "--gpu-kv-cache-size", "16384",
               "--lower-tier-size", "100000", "--warmup", "0.2", "--json", str(out),
               "-o", str(plot)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "LRU cache of 16,384 tokens: hit" in text
    assert "warm-up:" in text and "100,000-token lower tier" in text
    [data] = Results.from_json(orjson.loads(out.read_bytes())).traces
    a = analyze(EXAMPLE, warmup=0.2)
    assert data.value("lru_hit_fraction", at=16384) == pytest.approx(a.lru_hit_fraction(16384))
    assert data.value("lru_offloadable_fraction", at=16384) == pytest.approx(
        a.lru_offloadable_fraction(16384))
    assert data.value("compulsory_fraction") == pytest.approx(a.compulsory_fraction)
    assert data.value("warmup_requests") == a.warmup_requests > 0
    assert data.params["warmup"] == 0.2
    tiers = {"gpu_hit": data.value("lru_hit_fraction", at=16384),
             "lower_tier_hit": data.value("lower_tier_hit_fraction", at=16384,
                                          lower_tier=100000),
             "beyond_tiers": data.value("beyond_tiers_fraction", at=16384, lower_tier=100000),
             "compulsory": data.value("compulsory_fraction")}
    assert tiers["lower_tier_hit"] == pytest.approx(a.lru_offloadable_fraction(16384, 100000))
    assert sum(tiers.values()) == pytest.approx(1.0)
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_session_split(tmp_path, capsys):
    trace = _bailian(tmp_path / "chat.jsonl")
    out = tmp_path / "b.json"
    assert main(["analyze", str(trace), "--block-size", "16", "--gpu-kv-cache-size", "1000",
                 "--json", str(out)]) == 0
    assert "same session" in capsys.readouterr().out
    [data] = Results.from_json(orjson.loads(out.read_bytes())).traces
    hit = {"same_session": data.value("lru_hit_same_session_fraction", at=1000),
           "cross_session": data.value("lru_hit_cross_session_fraction", at=1000)}
    assert hit["same_session"] + hit["cross_session"] == pytest.approx(
        data.value("lru_hit_fraction", at=1000))
    # The shared head (ids 1, 2) is last touched by the other conversation each time:
    # 3 x 2 cross-session hits; ids 3, 4 (chat 3) and 5 (chat 4) come from the own history.
    assert hit["cross_session"] == pytest.approx(6 / 17)
    assert hit["same_session"] == pytest.approx(3 / 17)


@pytest.mark.parametrize("args, message", [
    (["--lower-tier-size", "100"], "--lower-tier-size needs --gpu-kv-cache-size"),
    (["--warmup", "1"], "fraction in [0, 1)"),
    (["--warmup", "x"], "fraction in [0, 1)"),
])
def test_cli_rejects_bad_lru_options(args, message, capsys):
    with pytest.raises(SystemExit):
        main(["analyze", str(EXAMPLE), *args])
    assert message in capsys.readouterr().err


def test_cli_warmup_leaving_nothing_reports_undefined(tmp_path, capsys):
    trace = tmp_path / "m.jsonl"
    trace.write_bytes(b'{"timestamp": 0, "input_length": 600, "hash_ids": [1, 2]}\n'
                      b'{"timestamp": 1, "input_length": 10, "hash_ids": [1]}\n')
    assert main(["analyze", str(trace), "--warmup", "0.5", "--gpu-kv-cache-size", "64"]) == 0
    captured = capsys.readouterr()
    assert captured.err.startswith("kvreuse: note: ") and "leaves no full block" in captured.err
    assert captured.err.count("\n") == 1
    assert "LRU offloadable:  undefined" in captured.out


def test_trace_result_has_lru_block_and_curve():
    a = analyze(EXAMPLE)
    res = TraceResult.from_analysis(a, name="chat", sizes=[16384, 345792]).to_json()
    assert res["figures"]["lru_hit_fraction"]["16384"] == pytest.approx(
        a.lru_hit_fraction(16384))
    assert res["figures"]["lru_offloadable_fraction"]["345792"] == pytest.approx(
        a.lru_offloadable_fraction(345792))
    curve = res["curves"]["lru"]
    assert 0 < len(curve["x"]) <= 400 and len(curve["x"]) == len(curve["y"])
    assert curve["y"] == sorted(curve["y"], reverse=True)
    assert res["figures"]["compulsory_fraction"] == pytest.approx(a.compulsory_fraction)
