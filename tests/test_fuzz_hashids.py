"""Fuzzing the hash-id readers: every outcome is a result or a KvReuseError."""

from __future__ import annotations

import json
import math

import pytest
from fuzzing import JSON, mangle
from hypothesis import given
from hypothesis import strategies as st

from pytest_kvreuse import KvReuseError, analyze

FIELD_VALUES = {
    "timestamp": st.one_of(st.integers(0, 10**6), st.floats(0, 1e6), JSON),
    "input_length": st.one_of(st.integers(0, 4000), st.integers(-5, 2**65),
                              st.integers(2**63 - 2, 2**64 + 2), JSON),
    "output_length": st.one_of(st.integers(0, 100), JSON),
    "hash_ids": st.one_of(st.lists(st.integers(0, 20), max_size=10),
                          st.lists(st.integers(-(2**66), 2**66), max_size=4),
                          st.lists(st.one_of(st.integers(0, 20), st.booleans()), max_size=5),
                          JSON),
    "chat_id": st.one_of(st.integers(-1, 50), st.integers(2**63 - 2, 2**64 + 2), JSON),
    "parent_chat_id": st.one_of(st.integers(-3, 50), JSON),
    "turn": st.one_of(st.integers(-1, 5), JSON),
    "type": st.one_of(st.sampled_from(["text", "search", "image", "file"]), JSON),
}


@st.composite
def records(draw):
    keys = draw(st.sets(st.sampled_from(sorted(FIELD_VALUES)), min_size=0))
    return {k: draw(FIELD_VALUES[k]) for k in sorted(keys)}


@st.composite
def trace_files(draw):
    lines = []
    for rec in draw(st.lists(records(), max_size=6)):
        try:
            line = json.dumps(rec, ensure_ascii=draw(st.booleans())).encode("utf-8",
                                                                            "surrogatepass")
        except ValueError:
            line = b"{}"
        lines.append(mangle(draw, line))
    return b"\n".join(lines) + draw(st.sampled_from([b"", b"\n"]))


@given(data=trace_files(), fmt=st.sampled_from(["auto", "mooncake", "bailian"]),
       block=st.sampled_from([16, 64, 512, 1024, 48]))
def test_result_or_kvreuse_error(tmp_path_factory, data, fmt, block):
    path = tmp_path_factory.mktemp("fuzz") / "trace.jsonl"
    path.write_bytes(data)
    try:
        a = analyze(path, block_size=block, format=fmt)
    except KvReuseError as exc:
        text = exc.one_line()
        assert "\n" not in text and str(path) in text
        return
    frac = a.offloadable_fraction(1000)
    assert math.isnan(frac) or 0.0 <= frac <= 1.0
    json.dumps(a.to_dict())


def test_bailian_ids_beyond_64_bits(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_bytes(b'{"hash_ids": [1], "chat_id": 18446744073709551615, '
                     b'"parent_chat_id": -1}\n')
    with pytest.raises(KvReuseError, match="must fit in 64 bits"):
        analyze(path, format="bailian")


@pytest.mark.parametrize("content, message", [
    (b'{"hash_ids": [1, 2], "input_length": "10"}\n', "'input_length' must be an integer"),
    (b'{"hash_ids": [1, "2"]}\n', "'hash_ids' must hold integers"),
    (b'{"hash_ids": [1, 2.5]}\n', "'hash_ids' must hold integers"),
    (b'{"hash_ids": [1, 99999999999999999999]}\n', "'hash_ids' must hold integers"),
    (b'{"hash_ids": [1, 18446744073709551615]}\n', "does not fit in 64 bits"),
    (b'{"hash_ids": 7}\n', "'hash_ids' must be a list"),
    (b'{"hash_ids": [1], "input_length": -4}\n', "must not be negative"),
    (b'{"hash_ids": [1], "input_length": 18446744073709551615}\n', "does not fit in 64 bits"),
    (b'{"hash_ids": [1], "timestamp": ' + b"9" * 400 + b'}\n', "not valid JSON"),
    (b'[1, 2]\n', "expected a JSON object per line"),
    (b'{"hash_ids": [1]}\n\xff\n', ":2: not valid JSON (not UTF-8 text)"),
])
def test_bad_fields_name_the_line(tmp_path, content, message):
    path = tmp_path / "t.jsonl"
    path.write_bytes(content)
    with pytest.raises(KvReuseError) as exc:
        analyze(path, format="mooncake")
    assert message in exc.value.one_line()
    assert str(path) in exc.value.one_line()
