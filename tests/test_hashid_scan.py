"""The compiled scanner of Mooncake / Qwen-Bailian records (loaders/hashid_scan.py) against
the per-line reader: on any file, the same trace or the same error, to the byte."""

from __future__ import annotations

import json
import warnings

import numpy as np
import orjson
import pytest
from fuzzing import JSON, mangle
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_kvreuse import KvReuseError
from pytest_kvreuse.loaders import hashid_scan
from pytest_kvreuse.loaders.hashid_scan import ScannedRecords, scan_records, use_scanner
from pytest_kvreuse.loaders.hashids import read_hash_id_trace

pytest.importorskip("numba")

FIELDS = ("path", "hash_ids", "offsets", "input_lengths", "timestamps", "sessions", "lines",
          "native_block_size", "files")

PLAIN = {
    "timestamp": st.one_of(st.integers(0, 10**9), st.floats(0, 1e7, allow_nan=False),
                           st.decimals(0, 10**6, places=3).map(float)),
    "input_length": st.integers(0, 5000),
    "output_length": st.integers(0, 300),
    "hash_ids": st.lists(st.integers(0, 40), max_size=12),
    "chat_id": st.integers(0, 30),
    "parent_chat_id": st.integers(-1, 30),
    "turn": st.integers(1, 4),
    "type": st.sampled_from(["text", "search", "image", "file", ""]),
}
ODD = {
    "timestamp": st.one_of(JSON, st.just(1e300), st.just(-0.0), st.just(12345678901234567.5)),
    "input_length": st.one_of(st.integers(-3, 2**65), st.just(7.0), JSON),
    "output_length": JSON,
    "hash_ids": st.one_of(st.lists(st.integers(-(2**64), 2**64), max_size=4),
                          st.lists(st.one_of(st.integers(0, 9), st.booleans()), max_size=4),
                          JSON),
    "chat_id": st.one_of(st.integers(-(2**64), 2**64), JSON),
    "parent_chat_id": st.one_of(st.integers(-3, 30), JSON),
    "turn": st.one_of(st.integers(-1, 3), JSON),
    "type": st.one_of(st.text(max_size=5), JSON),
    "extra": JSON,
}


@st.composite
def record(draw) -> dict:
    keys = draw(st.lists(st.sampled_from(sorted(PLAIN) + ["extra"]), unique=True))
    if draw(st.integers(0, 3)):  # mostly records the reader takes
        keys = [k for k in keys if k != "hash_ids"] + ["hash_ids"]
    rec = {}
    for k in keys:
        odd = k == "extra" or draw(st.integers(0, 9)) == 0
        rec[k] = draw(ODD[k] if odd else PLAIN[k])
    return rec


def _line(draw, rec: dict) -> bytes:
    style = draw(st.sampled_from(["orjson", "json", "spaced", "mangled"]))
    if style == "orjson":
        try:
            return orjson.dumps(rec)
        except TypeError:
            style = "json"
    try:
        text = json.dumps(rec, ensure_ascii=draw(st.booleans()), allow_nan=True)
    except ValueError:
        return b"{}"
    line = text.encode("utf-8", "surrogatepass")
    if style == "spaced":
        line = b" " + line.replace(b", ", b" ,\t").replace(b": ", b" :  ") + b" \r"
    if style == "mangled":
        line = mangle(draw, line)
    return line


@st.composite
def trace_bytes(draw) -> bytes:
    lines = [_line(draw, draw(record())) for _ in range(draw(st.integers(0, 8)))]
    lines += draw(st.lists(st.sampled_from([b"", b"  ", b"\x0b"]), max_size=2))
    lines = draw(st.permutations(lines))
    head = draw(st.sampled_from([b"", b"", hashid_scan.BOM]))
    return head + b"\n".join(lines) + draw(st.sampled_from([b"", b"\n"]))


def _read(path, flavour: str, scan: bool, monkeypatch) -> object:
    monkeypatch.setenv("KVREUSE_SCAN", "1" if scan else "0")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            t = read_hash_id_trace(path, flavour=flavour)
        except KvReuseError as exc:
            return ("error", exc.one_line())
    out = {f: getattr(t, f) for f in FIELDS}
    out["categories"] = {k: (v.codes.tolist(), v.labels) for k, v in t.categories.items()}
    out["warnings"] = [str(w.message) for w in caught]
    return out


def _same(a: object, b: object) -> None:
    if isinstance(a, tuple) or isinstance(b, tuple):
        assert a == b
        return
    for key in a:
        if isinstance(a[key], np.ndarray):
            assert a[key].dtype == b[key].dtype, key
            assert np.array_equal(a[key], b[key], equal_nan=True), key
        else:
            assert a[key] == b[key], key


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=trace_bytes(), flavour=st.sampled_from(["mooncake", "bailian"]),
       chunk=st.sampled_from([16, 40, 1 << 20]))
def test_the_scanner_reads_what_the_per_line_reader_reads(tmp_path, monkeypatch, data,
                                                          flavour, chunk):
    path = tmp_path / "t.jsonl"
    path.write_bytes(data)
    monkeypatch.setattr(hashid_scan, "CHUNK_BYTES", chunk)
    _same(_read(path, flavour, True, monkeypatch), _read(path, flavour, False, monkeypatch))


def _scan_items(path, flavour: str = "mooncake") -> list:
    return list(scan_records(path, flavour))


def test_plain_records_never_reach_the_per_line_reader(tmp_path):
    lines = [orjson.dumps({"timestamp": i * 7, "input_length": 1000 + i,
                           "output_length": 3, "hash_ids": list(range(i % 5 + 1))})
             for i in range(50)]
    lines += [json.dumps({"timestamp": 1.25, "hash_ids": [0, 1]}).encode()]
    path = tmp_path / "t.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    items = _scan_items(path)
    assert all(type(i) is ScannedRecords for i in items)
    assert sum(i.counts.shape[0] for i in items) == 51


def test_a_line_it_does_not_take_goes_to_the_reader_and_the_scan_resumes(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_bytes(b'{"hash_ids":[1,2]}\n{"hash_ids":[3],"x":null}\n{"hash_ids":[4]}\n')
    items = _scan_items(path)
    assert [type(i) for i in items] == [ScannedRecords, tuple, ScannedRecords]
    assert items[1][0] == 2 and items[1][2] == {"hash_ids": [3], "x": None}


@pytest.mark.parametrize("line, message", [
    (b'{"hash_ids":[1,true]}', "'hash_ids' must hold integers, found a boolean"),
    (b'{"timestamp":3}', "record has no 'hash_ids'"),
    (b'{"hash_ids":[1],"input_length":-4}', "'input_length' must not be negative"),
    (b'{"hash_ids":[1,2', "not valid JSON"),
    (b'{"hash_ids":[18446744073709551616]}', "found one too large (beyond 64 bits)"),
])
def test_errors_name_the_line_as_without_the_scanner(tmp_path, monkeypatch, line, message):
    path = tmp_path / "t.jsonl"
    path.write_bytes(b'{"hash_ids":[1,2]}\n\n' + line + b"\n")
    fast = _read(path, "mooncake", True, monkeypatch)
    assert fast == _read(path, "mooncake", False, monkeypatch)
    assert fast[0] == "error" and f"{path}:3" in fast[1] and message in fast[1]


def test_small_traces_skip_numba_unless_asked(tmp_path, monkeypatch):
    path = tmp_path / "t.jsonl"
    path.write_bytes(b'{"hash_ids":[1]}\n')
    monkeypatch.delenv("KVREUSE_SCAN", raising=False)
    assert not use_scanner(path)
    monkeypatch.setattr(hashid_scan, "SCAN_FROM_BYTES", 10)
    assert use_scanner(path)
    monkeypatch.setenv("KVREUSE_SCAN", "0")
    assert not use_scanner(path)
