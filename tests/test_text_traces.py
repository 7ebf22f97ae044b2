"""Text and token-id traces: every format, every prompt mode, sessions and timestamps."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_kvreuse import analyze, load_block_stream
from pytest_kvreuse.loaders import aiperf as aiperf_module
from pytest_kvreuse.loaders.aiperf import iter_aiperf_entries
from pytest_kvreuse.loaders.registry import detect_format
from pytest_kvreuse.text.blocks import (
    RAW_JOIN,
    _StreamBuilder,
    chained_block_digests,
    dense_digest_keys,
)

B = 4


def reference_stream(requests: list[list[int]], block_size: int):
    """Obviously right: a block's key is the tuple of all tokens up to its end."""
    names: dict[tuple, int] = {}
    keys, request = [], []
    for r, ids in enumerate(requests):
        for j in range(len(ids) // block_size):
            keys.append(names.setdefault(tuple(ids[:(j + 1) * block_size]), len(names)))
            request.append(r)
    return np.asarray(keys, dtype=np.int64), np.asarray(request), [len(x) for x in requests]


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal up to renaming: a[i] == a[j] <=> b[i] == b[j]."""
    if a.shape != b.shape:
        return False
    pairs = np.unique(np.stack([a.astype(np.int64), b.astype(np.int64)]), axis=1).shape[1]
    return pairs == np.unique(a).size == np.unique(b).size


def assert_stream_matches(stream, token_lists, block_size=B):
    keys, request, tokens = reference_stream(token_lists, block_size)
    assert stream.prompt_tokens.tolist() == tokens
    assert stream.request.tolist() == request.tolist()
    assert same_partition(stream.keys, keys)


def encode(tok, text: str) -> list[int]:
    return tok.backend.encode(text, add_special_tokens=False).ids


def write_json(path: Path, obj, *, indent: bool = False) -> Path:
    path.write_text(json.dumps(obj, indent=2 if indent else None, ensure_ascii=False))
    return path


def write_jsonl(path: Path, records) -> Path:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    return path


SYSTEM = {"role": "system", "content": "You are terse."}
ASK = {"role": "user", "content": "Hi there, 12 apples!"}
CHATS = [
    [SYSTEM, ASK],
    [SYSTEM, ASK, {"role": "assistant", "content": "Hello. 中文 😀"},
     {"role": "user", "content": "More please"}],
    [{"role": "user", "content": "Unrelated question about the weather in Paris today"}],
]


def aiperf_doc(chats=CHATS):
    return {"data": [
        {"session_id": "s-a", "payloads": [{"messages": chats[0], "max_tokens": 5},
                                            {"messages": chats[1], "max_tokens": 5}]},
        {"session_id": "s-b", "payloads": [{"messages": chats[2]}]},
    ]}


def opts(tmp_path, **kw):
    return {"block_size": B, "cache_dir": tmp_path / "cache", **kw}


# --- formats --------------------------------------------------------------------------

@pytest.mark.parametrize("indent", [False, True])
def test_aiperf_raw(tmp_path, deepseek, indent):
    p = write_json(tmp_path / "inputs.json", aiperf_doc(), indent=indent)
    assert detect_format(p) == "aiperf"
    s = load_block_stream(p, **opts(tmp_path))
    want = [encode(deepseek, RAW_JOIN.join(m["content"] for m in c)) for c in CHATS]
    assert_stream_matches(s, want)
    assert s.sessions.tolist() == [0, 0, 1]
    assert all(math.isnan(t) for t in s.timestamps)
    assert s.meta["tokenizer"] == "deepseek-v3" and s.meta["prompt"] == "raw"
    assert s.meta["format"] == "aiperf"


def test_aiperf_list_content_equals_string_content(tmp_path):
    listy = [[{**m, "content": [{"type": "text", "text": m["content"][:5]},
                                {"type": "image_url", "image_url": {"url": "x"}},
                                {"type": "text", "text": m["content"][5:]}]}
              for m in chat] for chat in CHATS]
    joined = [[{**m, "content": m["content"][:5] + "\n" + m["content"][5:]} for m in chat]
              for chat in CHATS]
    a = load_block_stream(write_json(tmp_path / "a.json", aiperf_doc(listy)), **opts(tmp_path))
    b = load_block_stream(write_json(tmp_path / "b.json", aiperf_doc(joined)), **opts(tmp_path))
    assert a.prompt_tokens.tolist() == b.prompt_tokens.tolist()
    assert same_partition(a.keys, b.keys)


def test_aiperf_per_message(tmp_path, deepseek):
    p = write_json(tmp_path / "inputs.json", aiperf_doc())
    s = load_block_stream(p, prompt="per-message", **opts(tmp_path))
    want = [encode(deepseek, m["content"]) for c in CHATS for m in c]
    assert_stream_matches(s, want)
    assert s.sessions.tolist() == [0, 0, 0, 0, 0, 0, 1]


def test_aiperf_chat_matches_apply_chat_template(tmp_path, deepseek):
    p = write_json(tmp_path / "inputs.json", aiperf_doc())
    s = load_block_stream(p, prompt="chat", **opts(tmp_path))
    want = []
    for chat in CHATS:
        out = deepseek.hf.apply_chat_template(chat, tokenize=True, add_generation_prompt=True)
        want.append(list(out["input_ids"] if hasattr(out, "keys") else out))
    assert want[0][0] == 0  # the template's BOS is there: special tokens as a server sends
    assert_stream_matches(s, want)
    assert s.meta["prompt"] == "chat"


def test_aiperf_streaming_with_tiny_reads(tmp_path, monkeypatch, deepseek):
    doc = {"version": 1, "meta": {"x": [1, 2, {"y": "]}"}]}, **aiperf_doc(), "after": 12345}
    p = write_json(tmp_path / "inputs.json", doc, indent=True)
    monkeypatch.setattr(aiperf_module, "_READ", 7)
    entries = list(iter_aiperf_entries(p))
    assert [e for _, _, e in entries] == doc["data"]
    assert [i for i, _, _ in entries] == [0, 1]
    lines = p.read_text().splitlines()
    assert lines[entries[1][1] - 1].strip().startswith("{")
    assert detect_format(p) == "aiperf"  # "data" is not the first key: found by parsing


def test_chat_jsonl_sessions_and_timestamps(tmp_path, deepseek):
    recs = [{"messages": CHATS[0], "session_id": "x", "timestamp": 10},
            {"messages": CHATS[2], "timestamp": 11.5},
            {"messages": CHATS[1], "session_id": "x", "timestamp": 20}]
    p = write_jsonl(tmp_path / "chat.jsonl", recs)
    assert detect_format(p) == "chat"
    s = load_block_stream(p, **opts(tmp_path))
    assert_stream_matches(s, [encode(deepseek, RAW_JOIN.join(m["content"] for m in r["messages"]))
                              for r in recs])
    assert s.sessions.tolist() == [0, -1, 0]
    assert s.timestamps.tolist() == [10.0, 11.5, 20.0]


@pytest.mark.parametrize("key", ["prompt", "text"])
def test_prompt_jsonl(tmp_path, deepseek, key):
    texts = ["alpha beta gamma delta epsilon", "alpha beta gamma delta zeta eta", "x"]
    p = write_jsonl(tmp_path / "p.jsonl", [{key: t} for t in texts])
    assert detect_format(p) == "prompt"
    s = load_block_stream(p, **opts(tmp_path))
    assert_stream_matches(s, [encode(deepseek, t) for t in texts])


@pytest.mark.parametrize("key", ["token_ids", "input_ids"])
def test_token_id_jsonl(tmp_path, key):
    reqs = [[1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 2, 3, 4, 5, 6, 7, 0], [], [2**40, 1, 2, 3]]
    p = write_jsonl(tmp_path / "t.jsonl", [{key: r, "session_id": 7} for r in reqs])
    assert detect_format(p) == "token-ids"
    s = load_block_stream(p, **opts(tmp_path))
    assert_stream_matches(s, reqs)
    assert s.sessions.tolist() == [0, 0, 0, 0]
    assert "tokenizer" not in s.meta


def test_analyze_params_carry_tokenizer_and_prompt(tmp_path):
    p = write_json(tmp_path / "inputs.json", aiperf_doc())
    a = analyze(p, block_size=B, prompt="per-message", cache_dir=tmp_path / "c")
    assert a.params["tokenizer"] == "deepseek-v3"
    assert a.params["prompt"] == "per-message"
    assert a.to_dict()["params"]["prompt"] == "per-message"


# --- block keys -----------------------------------------------------------------------

def test_chained_digests_name_the_whole_prefix():
    rng = np.random.default_rng(1)
    base = rng.integers(0, 5, 40).tolist()
    reqs = [base, base[:23], base[:16] + [9] * 8 + base[24:], [9] * 8 + base[8:], base + base]
    digests = b"".join(chained_block_digests(np.asarray(r, dtype=np.int32), B) for r in reqs)
    keys, unique = dense_digest_keys(digests)
    ref, _, _ = reference_stream(reqs, B)
    assert same_partition(keys, ref)
    assert unique == np.unique(ref).size


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 4), st.integers(0, 30),
                          st.lists(st.integers(0, 2), max_size=30)), max_size=25),
       st.sampled_from([1, 2, 4, 8]))
def test_stream_builder_reusing_session_prefixes_equals_reference(spec, block_size):
    # Requests built from earlier ones (same or other session): a prefix of one plus a tail.
    reqs: list[list[int]] = []
    sessions = []
    builder = _StreamBuilder(block_size)
    for session, source, cut, tail in spec:
        base = reqs[source % len(reqs)][:cut] if reqs else []
        ids = base + tail
        reqs.append(ids)
        sessions.append(session if session else None)
        builder.add(np.asarray(ids, dtype=np.int32), sessions[-1], math.nan)
    stream = builder.stream({})
    assert_stream_matches(stream, reqs, block_size)
