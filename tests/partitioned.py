"""Helpers of the partitioned-analysis tests (--jobs, Dask): small text traces and the
figure-by-figure comparison of two analyses."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

GPU = 4096


def write_chat_trace(path: Path, sessions: int = 6, turns: int = 4) -> Path:
    """Multi-turn chat JSONL: every turn re-sends its session's history, sessions share a
    system prompt, and they interleave, so partitions cut through sessions."""
    system = {"role": "system", "content": "You are a careful assistant. " * 40}
    history = {s: [system] for s in range(sessions)}
    lines = []
    for t in range(turns):
        for s in range(sessions):
            history[s] = history[s] + [{"role": "user",
                                        "content": f"question {t} of session {s} " * 30}]
            lines.append({"session_id": f"s{s}" if s % 3 else s, "timestamp": t * 10 + s,
                          "messages": history[s]})
            history[s] = history[s] + [{"role": "assistant", "content": f"answer {t} " * 25}]
    path.write_text("\n".join(json.dumps(r) for r in lines) + "\n")
    return path


def with_bad_record(path: Path, index: int, text: str) -> Path:
    """``path`` with its record ``index`` replaced by ``text`` (line ``index + 1``)."""
    lines = path.read_text().splitlines()
    lines[index] = text
    path.write_text("\n".join(lines) + "\n")
    return path


def assert_same_analysis(a, b) -> None:
    """Every figure of ``b`` equals ``a``'s, to the last digit (the stream equal array for
    array, so the figures made from it alone, OPT and the policies, too)."""
    assert a.to_dict() == b.to_dict()
    assert np.array_equal(a.intervals, b.intervals)
    for name in ("keys", "request", "prompt_tokens", "sessions"):
        assert np.array_equal(getattr(a.stream, name), getattr(b.stream, name)), name
    assert np.array_equal(a.stream.timestamps, b.stream.timestamps, equal_nan=True)
    for (x1, y1), (x2, y2) in ((a.ccdf(), b.ccdf()), (a.lru_curve(), b.lru_curve()),
                               (a.reuse_time_ccdf(), b.reuse_time_ccdf())):
        assert np.array_equal(x1, x2) and np.array_equal(y1, y2)
    assert a.lru_hit_fraction(GPU) == b.lru_hit_fraction(GPU)
    assert a.offloadable_fraction(GPU) == b.offloadable_fraction(GPU)
    ta, tb = a.reuse_times, b.reuse_times
    assert (ta is None and tb is None) or np.array_equal(ta, tb)
    assert a.ttl_hit_fraction(30) == b.ttl_hit_fraction(30) or (
        np.isnan(a.ttl_hit_fraction(30)) and np.isnan(b.ttl_hit_fraction(30)))
