"""The generator's text rendering: aiperf sessions of real text, about as long as asked."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pytest_kvreuse import analyze
from pytest_kvreuse.synthetic import SegmentText, Workload, generate, write_aiperf
from pytest_kvreuse.text.blocks import RAW_JOIN

ROOT = Path(__file__).resolve().parents[1]
SMALL = Workload(sessions=6, system_prompts=2, system_tokens=(100, 300), turns=(1, 4),
                 user_tokens=(10, 60), reply_tokens=(10, 60), document_share=0.5,
                 document_tokens=(100, 200), documents=2, seed=9)


def test_write_aiperf_is_deterministic(tmp_path):
    reqs = generate(SMALL)
    write_aiperf(reqs, tmp_path / "a.json")
    write_aiperf(reqs, tmp_path / "b.json")
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    write_aiperf(reqs, tmp_path / "c.json", seed=1)
    assert (tmp_path / "a.json").read_bytes() != (tmp_path / "c.json").read_bytes()


def test_sessions_turns_and_history(tmp_path):
    reqs = generate(SMALL)
    write_aiperf(reqs, tmp_path / "a.json")
    data = json.loads((tmp_path / "a.json").read_text())["data"]
    assert len(data) == len({r.session for r in reqs})
    assert sum(len(e["payloads"]) for e in data) == len(reqs)
    for entry in data:
        previous = None
        for turn, payload in enumerate(entry["payloads"], start=1):
            roles = [m["role"] for m in payload["messages"]]
            assert roles == ["system"] + ["user", "assistant"] * (turn - 1) + ["user"]
            if previous is not None:  # every turn re-sends the whole history
                assert payload["messages"][:len(previous)] == previous
            previous = payload["messages"]


def test_segment_text_is_about_the_asked_tokens(deepseek):
    text = SegmentText(seed=0)
    for seg, n in [(1, 50), (2, 500), (3, 3000)]:
        got = len(deepseek.backend.encode(text(seg, n), add_special_tokens=False).ids)
        assert n <= got <= n * 1.02 + 2
    assert text(1, 50) == SegmentText(seed=0)(1, 50)


def test_rendered_prompts_have_the_requests_lengths(tmp_path, deepseek):
    reqs = generate(SMALL)
    write_aiperf(reqs, tmp_path / "a.json")
    data = json.loads((tmp_path / "a.json").read_text())["data"]
    prompts = [RAW_JOIN.join(m["content"] for m in p["messages"])
               for e in data for p in e["payloads"]]
    by_session = sorted(reqs, key=lambda r: (r.session, r.turn))
    got = np.array([len(e.ids) for e in deepseek.backend.encode_batch(prompts,
                                                                      add_special_tokens=False)])
    want = np.array([r.input_length for r in by_session])
    assert np.all(got >= want) and np.all(got <= want * 1.05 + 10)


def test_example_aiperf_trace():
    path = ROOT / "example_traces" / "chat_sessions.aiperf.json"
    assert path.stat().st_size < 2e6
    a = analyze(path, use_cache=False)
    assert a.params["format"] == "aiperf"
    assert a.num_requests > 150 and a.stream.sessions.max() + 1 == 70
    assert a.reused_fraction > 0.5
