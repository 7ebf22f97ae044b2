"""Weka / kv-cache-tester agentic traces: one conversation per file (or JSONL line), a
directory of them one trace merged by time."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from figures import figures
from fuzzing import JSON, mangle, result_or_one_line_error
from hypothesis import given
from hypothesis import strategies as st

from pytest_kvreuse import analyze, load_block_stream
from pytest_kvreuse.errors import BlockSizeError, TraceFormatError
from pytest_kvreuse.loaders.registry import detect_format

EXAMPLES = Path(__file__).resolve().parents[1] / "example_traces"
MOONCAKE = EXAMPLES / "chat_sessions.mooncake.jsonl"


def call(t, ids, n=None, model="m", kind="n"):
    return {"t": t, "type": kind, "model": model, "in": n if n is not None else 64 * len(ids),
            "out": 1, "hash_ids": ids}


def conversation(requests, scope="local", block=64, ident="c"):
    return {"id": ident, "models": ["m"], "block_size": block, "hash_id_scope": scope,
            "tool_tokens": 0, "system_tokens": 0, "requests": requests}


def write(path: Path, doc, indent=None) -> Path:
    path.write_text(json.dumps(doc, indent=indent))
    return path


def mooncake_as_weka(path: Path) -> dict:
    """The Mooncake example rewritten as one Weka conversation: native block 64, one id per
    64-token block (Mooncake's id k of 512 tokens becomes ids 8k .. 8k+7)."""
    requests = []
    for line in MOONCAKE.read_text().splitlines():
        r = json.loads(line)
        ids = [8 * i + s for i in r["hash_ids"] for s in range(8)]
        requests.append(call(r["timestamp"] / 1000, ids[:math.ceil(r["input_length"] / 64)],
                             n=r["input_length"]))
    return conversation(requests)


@pytest.mark.parametrize("block", [16, 64, 128, 512])
def test_mooncake_rewritten_as_weka_gives_the_mooncake_figures(tmp_path, block):
    path = write(tmp_path / "conv.json", mooncake_as_weka(tmp_path))
    assert detect_format(path) == "weka"
    w, m = analyze(path, block_size=block), analyze(MOONCAKE, block_size=block)
    assert w.params["format"] == "weka" and w.params["hash_block_size"] == 64
    # Sessions: Mooncake has none, the conversation is one; all else is equal.
    # Figures only a trace with sessions has (Mooncake has none).
    session = ("lru_hit_same_session_fraction", "lru_hit_cross_session_fraction",
               "broken_reuse_fraction")
    fw = {k: v for k, v in figures(w).items() if k[0] not in session}
    fm = {k: v for k, v in figures(m).items() if k[0] not in session}
    assert fw == fm
    np.testing.assert_array_equal(w.stream.timestamps, m.stream.timestamps)


def test_pretty_compact_and_jsonl_forms_agree(tmp_path):
    doc = mooncake_as_weka(tmp_path)
    pretty = write(tmp_path / "pretty.json", doc, indent=2)
    compact = write(tmp_path / "compact.json", doc)
    half = len(doc["requests"]) // 2
    lines = tmp_path / "convs.jsonl"
    # Two conversations in one JSONL, local scope: the same as one... only when they do
    # not share ids; here the second half's ids are offset by the global scope instead.
    lines.write_text(json.dumps(conversation(doc["requests"][:half], "global")) + "\n"
                     + json.dumps(conversation(doc["requests"][half:], "global")) + "\n")
    ref = figures(analyze(compact))
    assert figures(analyze(pretty)) == ref
    assert detect_format(pretty) == detect_format(lines) == "weka"
    # Both start at 0: merged by time, the halves interleave, so only the totals agree.
    a = analyze(lines)
    assert a.num_blocks == analyze(compact).num_blocks


def test_local_scope_keeps_conversations_apart_global_shares(tmp_path):
    for scope, reused in (("local", 0), ("global", 2)):
        d = tmp_path / scope
        d.mkdir()
        write(d / "a.json", conversation([call(0.0, [1, 2])], scope, ident="a"))
        write(d / "b.json", conversation([call(1.0, [1, 2])], scope, ident="b"))
        a = analyze(d)
        assert a.reuse_count == reused, scope


def test_local_ids_are_shared_within_a_conversation_and_its_subagents(tmp_path):
    doc = conversation([call(0.0, [1, 2, 3]),
                        {"t": 1.0, "type": "subagent", "agent_id": "agent_1",
                         "subagent_type": "Explore", "status": "completed",
                         "requests": [call(1.5, [1, 2, 9])], "models": ["m"]},
                        call(2.0, [1, 2, 3, 4])])
    s = load_block_stream(write(tmp_path / "c.json", doc))
    np.testing.assert_array_equal(s.timestamps, [0.0, 1.5, 2.0])
    # the subagent re-sends two blocks, the parent's next call three
    assert s.num_blocks == 10 and len(np.unique(s.keys)) == 5
    agent = s.categories["agent"]
    assert [agent.labels[c] for c in agent.codes] == ["main", "Explore", "main"]
    assert s.sessions[0] == s.sessions[2] != s.sessions[1]


def test_conversations_merge_by_time_and_carry_categories(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    write(d / "1.json", conversation([call(0.0, [1], model="big"),
                                      call(5.0, [1, 2], model="big", kind="s")], ident="one"))
    write(d / "2.json", conversation([call(1.0, [7], model="small"),
                                      call(2.0, [7, 8], model="small")], ident="two"))
    s = load_block_stream(d)
    np.testing.assert_array_equal(s.timestamps, [0.0, 1.0, 2.0, 5.0])

    def labels(name):
        c = s.categories[name]
        return [c.labels[k] for k in c.codes]

    assert labels("conversation") == ["one", "two", "two", "one"]
    assert labels("model") == ["big", "small", "small", "big"]
    assert labels("type") == ["n", "n", "n", "s"]


def test_native_block_is_the_files(tmp_path):
    path = write(tmp_path / "c.json", conversation([call(0.0, [1, 2], n=2 * 32)], block=32))
    assert analyze(path, block_size=16).num_blocks == 4
    with pytest.raises(BlockSizeError):
        analyze(path, block_size=48)
    with pytest.raises(BlockSizeError, match="hash block size"):
        analyze(path, block_size=16, hash_block_size=64)


def test_files_with_different_blocks_are_refused(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    write(d / "a.json", conversation([call(0.0, [1])], block=64))
    write(d / "b.json", conversation([call(0.0, [1], n=32)], block=32))
    with pytest.raises(BlockSizeError) as exc:
        analyze(d)
    assert exc.value.path == str(d / "b.json")


@pytest.mark.parametrize("bad, fragment", [
    ({"type": "x", "t": 0}, "'type' must be 'n', 's' or 'subagent'"),
    ({"type": "n", "t": -1, "in": 1}, "'t' must be a non-negative number"),
    ({"type": "n", "t": 0}, "'in' (input tokens)"),
    ({"type": "n", "t": "soon", "in": 64, "hash_ids": [1]}, "'t' must be"),
    ({"type": "n", "t": 0, "in": 10**30, "hash_ids": [1]}, "too large"),
    ({"type": "n", "t": 0, "in": 64, "hash_ids": "x"}, "'hash_ids' must be a list"),
    ({"type": "n", "t": 0, "in": 64, "hash_ids": [True]}, "found a boolean"),
    ({"type": "n", "t": 0, "in": 640, "hash_ids": [1]}, "needs 10 hash_ids"),
    ({"type": "subagent", "t": 0}, "needs a 'requests' list"),
    ({"type": "n", "t": 0, "in": 64, "hash_ids": [1], "model": 3}, "'model' must be"),
])
def test_bad_request_is_one_line_naming_file_line_and_place(tmp_path, bad, fragment):
    path = tmp_path / "convs.jsonl"
    path.write_text(json.dumps(conversation([call(0.0, [1])])) + "\n"
                    + json.dumps(conversation([call(0.0, [1]), bad])) + "\n")
    with pytest.raises(TraceFormatError) as exc:
        analyze(path)
    text = exc.value.one_line()
    assert fragment in text and f"{path}:2: requests[1]" in text, text


def test_bad_scope_and_block(tmp_path):
    for doc, fragment in ((conversation([], scope="world"), "'hash_id_scope'"),
                          (conversation([], block=0), "'block_size'")):
        path = write(tmp_path / "c.json", doc, indent=1)
        with pytest.raises(TraceFormatError, match=fragment):
            analyze(path)


def test_the_bundled_example(tmp_path):
    a = analyze(EXAMPLES / "agentic.weka")
    assert a.params["format"] == "weka" and a.num_requests > 20
    agents = a.stream.categories["agent"]
    assert set(agents.labels) == {"main", "Explore"}
    assert 0.8 < a.reused_fraction < 0.9


ENTRY = st.recursive(
    st.fixed_dictionaries({"t": st.one_of(st.floats(0, 10), JSON),
                           "type": st.sampled_from(["n", "s", "x"]),
                           "in": st.one_of(st.integers(0, 300), JSON),
                           "hash_ids": st.one_of(st.lists(st.integers(0, 9), max_size=6),
                                                 JSON)},
                          optional={"model": st.one_of(st.sampled_from(["a", "b"]), JSON)}),
    lambda inner: st.fixed_dictionaries({"type": st.just("subagent"),
                                         "t": st.floats(0, 10),
                                         "requests": st.lists(inner, max_size=3)}),
    max_leaves=6)


@given(docs=st.lists(st.fixed_dictionaries(
           {"block_size": st.one_of(st.sampled_from([16, 64]), JSON),
            "hash_id_scope": st.sampled_from(["local", "global", "x"]),
            "requests": st.lists(ENTRY, max_size=5)}), min_size=1, max_size=3),
       layout=st.sampled_from(["dir", "jsonl", "pretty"]), data=st.data(),
       block=st.sampled_from([16, 64]))
def test_fuzz_weka(tmp_path_factory, docs, layout, data, block):
    root = tmp_path_factory.mktemp("fuzz")
    if layout == "dir":
        path = root / "d"
        path.mkdir()
        for k, doc in enumerate(docs):
            (path / f"{k}.json").write_bytes(mangle(data.draw, json.dumps(doc).encode()))
    elif layout == "jsonl":
        path = root / "c.jsonl"
        path.write_bytes(b"\n".join(mangle(data.draw, json.dumps(d).encode()) for d in docs))
    else:
        path = root / "c.json"
        path.write_bytes(mangle(data.draw, json.dumps(docs[0], indent=1).encode()))
    result_or_one_line_error(path, block_size=block, format="weka")
