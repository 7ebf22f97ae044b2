"""Bad values get their real reason, on the first line as on any other: truncated JSON,
NaN, UTF-16 files, trailing junk, integers beyond 64 bits, booleans as ids, and the
Qwen-Bailian fields (turn, type, parent_chat_id)."""

from __future__ import annotations

import warnings

import pytest

from pytest_kvreuse import KvReuseError, analyze

GOOD = b'{"input_length": 1024, "hash_ids": [1, 2]}\n'


def error_line(tmp_path, content: bytes, name: str = "t.jsonl", **kwargs) -> KvReuseError:
    path = tmp_path / name
    path.write_bytes(content)
    kwargs.setdefault("use_cache", False)
    kwargs.setdefault("progress", False)
    with pytest.raises(KvReuseError) as info:
        analyze(path, **kwargs)
    text = info.value.one_line()
    assert "\n" not in text and text.startswith(f"{path}"), text
    return info.value


BAD_LINES = [
    (b'{"input_length": 1024, "hash_ids": [1,', "unexpected end"),
    (b'{"input_length": 1024, "hash_ids": [1], "timestamp": NaN}', "NaN"),
    (b'{"input_length": 1024, "hash_ids": [1], "timestamp": -Infinity}', "Infinity"),
    (b'{"input_length": 1024, "hash_ids": [1]} junk', "extra data after the JSON value"),
    (b'{"input_length": 1024, "hash_ids": [1]}{"a": 1}', "extra data after the JSON value"),
    (b'{"prompt": "x"} ]', "extra data after the JSON value"),
]


@pytest.mark.parametrize("raw, fragment", BAD_LINES)
@pytest.mark.parametrize("where", ["first", "after-blank", "later"])
def test_bad_line_gives_its_reason_wherever_it_is(tmp_path, raw, fragment, where):
    content, line = {"first": (raw + b"\n" + GOOD, 1), "after-blank": (b"\n \n" + raw, 3),
                     "later": (GOOD + GOOD + raw + b"\n", 3)}[where]
    err = error_line(tmp_path, content)
    assert err.line == line, err.one_line()
    assert "not valid JSON" in err.one_line() and fragment in err.one_line(), err.one_line()
    if where != "later":  # the format could not be told: say how to name it
        assert "--format" in err.one_line()
        explicit = error_line(tmp_path, content, format="mooncake")
        assert explicit.line == line and fragment in explicit.one_line()


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])
@pytest.mark.parametrize("fmt", ["auto", "mooncake", "chat"])
def test_utf16_file_is_named_as_such(tmp_path, encoding, fmt):
    content = ('{"input_length": 1024, "hash_ids": [1, 2]}\n' * 2).encode(encoding)
    err = error_line(tmp_path, content, format=fmt)
    assert err.line == 1 and "UTF-16" in err.one_line(), err.one_line()


@pytest.mark.parametrize("content, fragment", [
    (b'{"hash_ids": [1, 99999999999999999999]}\n', "too large"),
    (b'{"hash_ids": [1, -9223372036854775809]}\n', "too large"),
    (b'{"hash_ids": [1, 18446744073709551616]}\n', "too large"),
    (b'{"hash_ids": [1], "input_length": 18446744073709551616}\n', "too large"),
    (b'{"hash_ids": [1], "input_length": 99999999999999999999999}\n', "too large"),
])
def test_hash_id_integers_beyond_64_bits_are_too_large(tmp_path, content, fragment):
    err = error_line(tmp_path, GOOD + content, format="mooncake")
    assert err.line == 2 and fragment in err.one_line(), err.one_line()
    assert "float" not in err.one_line()


def test_a_float_hash_id_is_still_a_float(tmp_path):
    err = error_line(tmp_path, GOOD + b'{"hash_ids": [1, 2.5]}\n')
    assert err.line == 2 and "found float" in err.one_line()


@pytest.mark.parametrize("content", [
    b'{"chat_id": 99999999999999999999, "parent_chat_id": -1, "hash_ids": [1]}\n',
    b'{"chat_id": 1, "parent_chat_id": -99999999999999999999, "hash_ids": [1]}\n',
])
def test_bailian_ids_beyond_64_bits_are_too_large(tmp_path, content):
    err = error_line(tmp_path, content, format="bailian", block_size=16)
    assert err.line == 1 and "too large" in err.one_line(), err.one_line()


@pytest.mark.parametrize("ids", [b"[99999999999999999999]", b"[1, 18446744073709551616]"])
def test_token_ids_beyond_64_bits_are_too_large(tmp_path, ids):
    err = error_line(tmp_path, b'{"token_ids": [1, 2]}\n{"token_ids": ' + ids + b"}\n",
                     block_size=1)
    assert err.line == 2 and "too large" in err.one_line(), err.one_line()


@pytest.mark.parametrize("ids", [b"[true, false]", b"[1, true]", b"[false]", b"[2, 3, true]"])
def test_boolean_hash_ids_are_refused(tmp_path, ids):
    err = error_line(tmp_path, GOOD + b'{"input_length": 16, "hash_ids": ' + ids + b"}\n",
                     format="mooncake")
    assert err.line == 2 and "boolean" in err.one_line(), err.one_line()


@pytest.mark.parametrize("ids", [b"[true, false]", b"[1, true]"])
def test_boolean_token_ids_are_refused(tmp_path, ids):
    err = error_line(tmp_path, b'{"token_ids": ' + ids + b"}\n", block_size=1)
    assert err.line == 1 and ("boolean" in err.one_line() or "integers" in err.one_line())


def test_booleans_elsewhere_in_a_record_are_fine(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_bytes(b'{"cached": true, "note": "true false", "input_length": 1024, '
                     b'"hash_ids": [1, 2]}\n' + GOOD)
    assert analyze(path).num_requests == 2


@pytest.mark.parametrize("value", [b"NaN", b"Infinity", b"-Infinity"])
def test_aiperf_refuses_nan_and_infinity(tmp_path, value):
    content = (b'{"data": [\n{"payloads": [{"prompt": "a"}]},\n{"payloads": [{"prompt": "b", '
               b'"timestamp": ' + value + b"}]}\n]}")
    err = error_line(tmp_path, content, name="inputs.json", block_size=1)
    assert err.line == 3 and "not valid JSON" in err.one_line(), err.one_line()
    assert value.lstrip(b"-").decode() in err.one_line()


def test_aiperf_integer_of_thousands_of_digits(tmp_path):
    content = b'{"data": [{"payloads": [{"prompt": "a", "timestamp": ' + b"9" * 5000 + b"}]}]}"
    err = error_line(tmp_path, content, name="inputs.json", block_size=1)
    assert err.line == 1 and "too large" in err.one_line(), err.one_line()


def bailian(*records: str) -> bytes:
    return "".join(r + "\n" for r in records).encode()


@pytest.mark.parametrize("record, fragment", [
    ('{"chat_id": 2, "parent_chat_id": 1, "turn": 0, "hash_ids": [1]}', "'turn'"),
    ('{"chat_id": 2, "parent_chat_id": 1, "turn": -1, "hash_ids": [1]}', "'turn'"),
    ('{"chat_id": 2, "parent_chat_id": 1, "turn": "2", "hash_ids": [1]}', "'turn'"),
    ('{"chat_id": 2, "parent_chat_id": 1, "turn": 1.5, "hash_ids": [1]}', "'turn'"),
    ('{"chat_id": 2, "parent_chat_id": 1, "turn": true, "hash_ids": [1]}', "'turn'"),
    ('{"chat_id": 2, "parent_chat_id": 1, "type": 3, "hash_ids": [1]}', "'type' must be a"),
    ('{"chat_id": 2, "parent_chat_id": 1, "type": null, "hash_ids": [1]}', "'type' must be"),
    ('{"chat_id": 2, "parent_chat_id": 2, "hash_ids": [1]}', "'parent_chat_id'"),
    ('{"chat_id": 2, "parent_chat_id": -5, "hash_ids": [1]}', "'parent_chat_id'"),
    ('{"chat_id": 2, "parent_chat_id": 3, "hash_ids": [1]}', "'parent_chat_id'"),
])
def test_bailian_fields(tmp_path, record, fragment):
    content = bailian('{"chat_id": 1, "parent_chat_id": -1, "turn": 1, "type": "text", '
                      '"hash_ids": [1]}', record,
                      '{"chat_id": 3, "parent_chat_id": 1, "turn": 2, "hash_ids": [1, 2]}')
    err = error_line(tmp_path, content, block_size=16)
    assert err.line == 2 and fragment in err.one_line(), err.one_line()


def test_bailian_parent_outside_the_trace_is_a_counted_warning(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_bytes(bailian(
        '{"chat_id": 10, "parent_chat_id": 4, "turn": 3, "type": "text", "hash_ids": [1]}',
        '{"chat_id": 11, "parent_chat_id": 10, "turn": 4, "type": "text", "hash_ids": [1, 2]}',
        '{"chat_id": 12, "parent_chat_id": 7, "turn": 2, "type": "search", "hash_ids": [5]}'))
    with pytest.warns(UserWarning, match=r"2 requests .*parent_chat_id.* line 1") as record:
        a = analyze(path, block_size=16)
    assert len(record) == 1 and str(path) in str(record[0].message)
    assert a.num_requests == 3
    # chat 11 follows chat 10 (one conversation); chat 12 starts its own
    sessions = a.stream.sessions.tolist()
    assert sessions[0] == sessions[1] != sessions[2]


def test_well_formed_bailian_warns_nothing(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_bytes(bailian(
        '{"chat_id": 1, "parent_chat_id": -1, "turn": 1, "type": "text", "hash_ids": [1]}',
        '{"chat_id": 2, "parent_chat_id": 1, "turn": 2, "type": "text", "hash_ids": [1, 2]}'))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert analyze(path, block_size=16).num_requests == 2
