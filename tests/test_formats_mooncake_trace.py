"""aiperf ``mooncake_trace`` datasets: input_length + hash_ids records, or text records
(text_input, messages) through the tokenizer; sessions with delays merged by time."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from figures import figures
from fuzzing import JSON, SHORT_TEXT, dumps, join_lines, mangle, result_or_one_line_error
from hypothesis import given
from hypothesis import strategies as st

from pytest_kvreuse import analyze, load_block_stream
from pytest_kvreuse.errors import TraceFormatError
from pytest_kvreuse.loaders.registry import detect_format
from pytest_kvreuse.synthetic import Workload, generate, write_mooncake, write_mooncake_trace

EXAMPLE = Path(__file__).resolve().parents[1] / "example_traces" / \
    "chat_sessions.mooncake_trace.jsonl"


def jsonl(path: Path, records) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_example_is_detected_and_equals_its_mooncake_form(tmp_path):
    assert detect_format(EXAMPLE) == "mooncake-trace"
    requests = generate(Workload(sessions=40, seed=5))
    write_mooncake(requests, tmp_path / "m.jsonl")
    write_mooncake_trace(requests, tmp_path / "t.jsonl")
    assert (tmp_path / "t.jsonl").read_bytes() == EXAMPLE.read_bytes()
    a, m = analyze(EXAMPLE), analyze(tmp_path / "m.jsonl")
    np.testing.assert_array_equal(a.stream.timestamps, m.stream.timestamps)
    # Figures only a trace with sessions has (Mooncake has none).
    session = ("lru_hit_same_session_fraction", "lru_hit_cross_session_fraction",
               "broken_reuse_fraction")
    assert {k: v for k, v in figures(a).items() if k[0] not in session} == \
        {k: v for k, v in figures(m).items() if k[0] not in session}
    assert a.stream.has_sessions


def test_delays_place_turns_and_sessions_run_concurrently(tmp_path):
    path = jsonl(tmp_path / "t.jsonl", [
        {"session_id": "a", "input_length": 512, "hash_ids": [1]},
        {"session_id": "a", "delay": 3000, "input_length": 1024, "hash_ids": [1, 2]},
        {"session_id": "b", "input_length": 512, "hash_ids": [5]},
        {"session_id": "b", "delay": 1000, "input_length": 1024, "hash_ids": [5, 6]},
        {"session_id": "b", "timestamp": 2500, "input_length": 1536, "hash_ids": [5, 6, 7]},
    ])
    s = load_block_stream(path, block_size=512)
    np.testing.assert_array_equal(s.timestamps, [0.0, 0.0, 1.0, 2.5, 3.0])
    np.testing.assert_array_equal(s.prompt_tokens, [512, 512, 1024, 1536, 1024])
    assert s.sessions[0] == s.sessions[4] != s.sessions[1]


def test_records_without_hash_ids_get_blocks_of_their_own(tmp_path):
    path = jsonl(tmp_path / "t.jsonl", [
        {"input_length": 1024, "output_length": 4},
        {"input_length": 1024, "output_length": 4},
        {"input_length": 1024, "hash_ids": [0, 1], "output_length": 4},
        {"input_length": 1024, "hash_ids": [0, 1], "output_length": 4},
    ])
    assert detect_format(path) == "mooncake-trace"
    a = analyze(path, block_size=512)
    assert a.reuse_count == 2 and a.num_blocks == 8
    # no session_id: every record a session of its own
    assert len(set(a.stream.sessions.tolist())) == 4


def test_text_records_go_through_the_tokenizer(tmp_path):
    system = "You are a careful assistant. " * 40
    path = jsonl(tmp_path / "t.jsonl", [
        {"session_id": "s", "text_input": system + "first question", "output_length": 5},
        {"session_id": "s", "delay": 500, "messages": [
            {"role": "system", "content": system}, {"role": "user", "content": "second"}],
         "output_length": 5},
        {"text_input": "unrelated " * 100, "timestamp": 100, "output_length": 5},
    ])
    assert detect_format(path) == "mooncake-trace-text"
    a = analyze(path, block_size=16)
    assert a.params["format"] == "mooncake-trace-text" and a.params["tokenizer"]
    np.testing.assert_array_equal(a.stream.timestamps, [0.0, 0.1, 0.5])
    assert a.reuse_count > 0


def test_text_without_times_has_none(tmp_path):
    path = jsonl(tmp_path / "t.jsonl", [{"text_input": "a b c " * 20, "output_length": 1}] * 2)
    s = load_block_stream(path, block_size=16, use_cache=False)
    assert np.isnan(s.timestamps).all()


@pytest.mark.parametrize("record, fmt, fragment", [
    ({"text_input": "x", "messages": [{"content": "y"}]}, "mooncake-trace-text",
     "exactly one of"),
    ({"output_length": 3}, "mooncake-trace-text", "exactly one of"),
    ({"input_length": 10, "hash_ids": [1]}, "mooncake-trace-text", "not both"),
    ({"text_input": "x"}, "mooncake-trace", "not both"),
    ({"text_input": 3}, "mooncake-trace-text", "'text_input' must be a string"),
    ({"input_length": 10, "session_id": [1]}, "mooncake-trace", "'session_id' must be"),
    ({"input_length": 10, "delay": "soon"}, "mooncake-trace", "'delay' must be a number"),
    ({"hash_ids": [1]}, "mooncake-trace", "no 'input_length'"),
    # Found by fuzzing: the made-up blocks of such a length took 22 GB.
    ({"input_length": 274877906942}, "mooncake-trace", "longer than any model's context"),
])
def test_bad_record_is_one_line_naming_file_and_line(tmp_path, record, fmt, fragment):
    first = ({"text_input": "ok", "output_length": 1} if fmt.endswith("text")
             else {"input_length": 512, "hash_ids": [1], "session_id": "s"})
    path = jsonl(tmp_path / "t.jsonl", [first, record])
    with pytest.raises(TraceFormatError) as exc:
        analyze(path, format=fmt, block_size=16, use_cache=False)
    text = exc.value.one_line()
    assert fragment in text and text.startswith(f"{path}:2: "), text


def test_chat_jsonl_with_sessions_stays_chat(tmp_path):
    path = jsonl(tmp_path / "t.jsonl", [{"messages": [{"role": "user", "content": "hi"}],
                                         "session_id": "a", "timestamp": 1.5}])
    assert detect_format(path) == "chat"


RECORD = st.fixed_dictionaries({}, optional={
    "input_length": st.one_of(st.integers(0, 2000), JSON),
    "hash_ids": st.one_of(st.lists(st.integers(0, 20), max_size=5), JSON),
    "text_input": st.one_of(SHORT_TEXT, JSON),
    "messages": st.one_of(st.lists(st.fixed_dictionaries({"content": SHORT_TEXT}),
                                   max_size=2), JSON),
    "timestamp": st.one_of(st.integers(0, 10**6), st.floats(allow_nan=False), JSON),
    "delay": st.one_of(st.integers(0, 5000), JSON),
    "session_id": st.one_of(st.sampled_from(["a", "b"]), JSON),
    "output_length": st.integers(0, 10),
})


@pytest.mark.usefixtures("deepseek")
@given(data=st.data(), records=st.lists(RECORD, max_size=5),
       fmt=st.sampled_from(["auto", "mooncake-trace", "mooncake-trace-text"]),
       block=st.sampled_from([16, 512]))
def test_fuzz_mooncake_trace(tmp_path_factory, data, records, fmt, block):
    path = tmp_path_factory.mktemp("fuzz") / "t.jsonl"
    path.write_bytes(join_lines(data.draw, [mangle(data.draw, dumps(r, data.draw))
                                            for r in records]))
    result_or_one_line_error(path, block_size=block, format=fmt)
