"""The vectorized engine equals the plain oracle on random hash-id traces."""

from __future__ import annotations

import dataclasses
import json
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_kvreuse import analyze, load_block_stream
from pytest_kvreuse.core.intervals import reuse_intervals

import oracle

ID = st.one_of(st.integers(0, 6), st.integers(-(2**63), 2**63 - 1))


@st.composite
def traces(draw):
    native = draw(st.sampled_from([4, 8, 16]))
    block = draw(st.sampled_from([b for b in (1, 2, 4, 8, 16, 32, 64)
                                  if native % b == 0 or b % native == 0]))
    records = []
    for _ in range(draw(st.integers(1, 12))):
        ids = draw(st.lists(ID, max_size=7))
        length = draw(st.integers(0, len(ids) * native))
        records.append({"timestamp": len(records), "input_length": length, "hash_ids": ids})
    return native, block, records


def write_jsonl(records: list[dict], directory: str) -> Path:
    path = Path(directory) / "trace.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@settings(max_examples=150, deadline=None)
@given(traces(), st.integers(0, 400))
def test_engine_equals_oracle(trace, gpu):
    native, block, records = trace
    with tempfile.TemporaryDirectory() as d:
        a = analyze(write_jsonl(records, d), block_size=block, format="mooncake",
                    hash_block_size=native)
    want = oracle.summary(records, block, native)
    assert a.num_requests == want["num_requests"]
    assert a.num_blocks == want["num_blocks"]
    assert a.unique_blocks == want["unique_blocks"]
    assert a.total_tokens == want["total_tokens"]
    assert a.intervals.tolist() == want["intervals"]
    if want["total_tokens"]:
        assert a.offloadable_fraction(gpu) == oracle.offloadable_fraction(
            want["intervals"], block, want["total_tokens"], gpu)
    else:
        assert np.isnan(a.offloadable_fraction(gpu))


@settings(max_examples=60, deadline=None)
@given(traces())
def test_ccdf_is_the_offloadable_fraction(trace):
    native, block, records = trace
    with tempfile.TemporaryDirectory() as d:
        a = analyze(write_jsonl(records, d), block_size=block, format="mooncake",
                    hash_block_size=native)
    x, y = a.ccdf()
    assert len(x) == len(set(a.intervals.tolist()))
    for xi, yi in zip(x.tolist(), y.tolist(), strict=True):
        assert yi == a.offloadable_fraction(xi)
    assert np.all(np.diff(y) < 0)


def test_bailian_sessions_follow_parent_chain(tmp_path):
    rows = [
        {"chat_id": 1, "parent_chat_id": -1, "turn": 1, "type": "text", "timestamp": 0.0,
         "input_length": 40, "output_length": 3, "hash_ids": [1, 2, 3]},
        {"chat_id": 2, "parent_chat_id": -1, "turn": 1, "type": "text", "timestamp": 0.5,
         "input_length": 20, "output_length": 3, "hash_ids": [9, 10]},
        {"chat_id": 3, "parent_chat_id": 1, "turn": 2, "type": "text", "timestamp": 1.0,
         "input_length": 60, "output_length": 3, "hash_ids": [1, 2, 3, 4]},
        {"chat_id": 4, "parent_chat_id": 3, "turn": 3, "type": "text", "timestamp": 2.0,
         "input_length": 70, "output_length": 3, "hash_ids": [1, 2, 3, 4, 5]},
    ]
    path = tmp_path / "bailian.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    a = analyze(path, block_size=16)
    assert a.params["format"] == "bailian"
    assert a.params["hash_block_size"] == 16
    s = a.stream.sessions.tolist()
    assert s[0] == s[2] == s[3] != s[1]
    assert a.stream.timestamps.tolist() == [0.0, 0.5, 1.0, 2.0]
    assert a.stream.prompt_tokens.tolist() == [40, 20, 60, 70]
    # 2 + 1 + 3 + 4 blocks; blocks 1,2 of request 0 come back in requests 2 and 3.
    assert a.num_blocks == 10
    assert a.reuse_count == 2 + 3


@settings(max_examples=150, deadline=None)
@given(traces(), st.integers(0, 12))
def test_slot_path_equals_block_path(trace, counted_request):
    """Hash-id streams compute intervals on slots; the block-by-block pass must agree,
    warm-up (intervals counted from a request on) included."""
    native, block, records = trace
    with tempfile.TemporaryDirectory() as d:
        stream = load_block_stream(write_jsonl(records, d), block_size=block,
                                   format="mooncake", hash_block_size=native)
    if native // block > 1:
        assert stream.layout is not None
    counted_from = int(np.searchsorted(stream.request, counted_request))
    plain = dataclasses.replace(stream, layout=None)
    got, got_unique = reuse_intervals(stream, counted_from=counted_from)
    want, want_unique = reuse_intervals(plain, counted_from=counted_from)
    assert got.tolist() == want.tolist()
    assert got_unique == want_unique


def test_long_runs_of_partial_slots_fall_back_exactly(tmp_path):
    # One hash id, mostly as a single block: sub-blocks 1..7 of the last request chain
    # back past 40 partial slots, more than the slot pass walks; the block pass answers.
    rows = ([{"input_length": 512, "hash_ids": [1]}]
            + [{"input_length": 64, "hash_ids": [1]}] * 40
            + [{"input_length": 512, "hash_ids": [1]}])
    path = write_jsonl(rows, str(tmp_path))
    stream = load_block_stream(path, block_size=64)
    assert stream.layout is not None
    got = analyze(path, block_size=64)
    want = oracle.summary(rows, 64, 512)
    assert got.intervals.tolist() == want["intervals"]
    assert got.unique_blocks == want["unique_blocks"]
