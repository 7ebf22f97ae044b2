"""Fuzzing the other files a user hands over: manifests and results files for
``kvreuse compare``. Each outcome is a result or a KvReuseError; anything else is a bug."""

from __future__ import annotations

import copy
import json

import pytest
from fuzzing import JSON, mangle
from hypothesis import given
from hypothesis import strategies as st

from pytest_kvreuse import KvReuseError
from pytest_kvreuse.cli import main
from pytest_kvreuse.plugin.manifest import load_manifest

TOML_SCALAR = st.one_of(
    st.integers(-(2**70), 2**70).map(str), st.floats(allow_nan=True).map(
        lambda f: "nan" if f != f else ("inf" if f == float("inf") else
                                        "-inf" if f == float("-inf") else repr(f))),
    st.booleans().map(lambda b: "true" if b else "false"),
    st.text(max_size=10).map(lambda t: json.dumps(t)),
    st.sampled_from(['"t.jsonl"', '"offloadable_fraction"', '"reused_fraction"',
                     '"lru_hit_fraction"', '"mooncake"', '"../x"', '"a::b"', "1979-05-27"]))
TOML_VALUE = st.one_of(TOML_SCALAR, st.lists(TOML_SCALAR, max_size=3).map(
    lambda v: "[" + ", ".join(v) + "]"), st.dictionaries(
        st.sampled_from(["a", "path", "metric"]), TOML_SCALAR, max_size=2).map(
        lambda d: "{" + ", ".join(f"{k} = {v}" for k, v in d.items()) + "}"))
KEYS = st.sampled_from(["name", "path", "gpu_cache_tokens", "block_size", "hash_block_size",
                        "format", "tokenizer", "prompt", "warmup", "metric", "at", "min",
                        "max", "check", "trace", "bogus"])
HEADERS = st.sampled_from(["[[trace]]", "[[trace.check]]", "[defaults]", "[trace]",
                           "[[defaults]]", "[other]"])


@st.composite
def manifests(draw):
    lines = []
    for _ in range(draw(st.integers(0, 10))):
        if draw(st.integers(0, 3)) == 0:
            lines.append(draw(HEADERS))
        else:
            lines.append(f"{draw(KEYS)} = {draw(TOML_VALUE)}")
    body = "\n".join(lines).encode("utf-8", "surrogatepass")
    return mangle(draw, body) if draw(st.booleans()) else body


@given(data=manifests())
def test_manifest_result_or_error(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("fuzz") / "kvreuse.toml"
    path.write_bytes(data)
    try:
        manifest = load_manifest(path)
    except KvReuseError as exc:
        text = exc.one_line()
        assert "\n" not in text and str(path) in text, text
        return
    for trace in manifest.traces:
        assert trace.path.name and all(c.check.metric for c in trace.checks)


GOOD = (b'{"input_length": 1024, "hash_ids": [1, 2]}\n'
        b'{"input_length": 1536, "hash_ids": [1, 2, 3]}\n')


@pytest.fixture(scope="module")
def good_result(tmp_path_factory):
    d = tmp_path_factory.mktemp("good")
    (d / "t.jsonl").write_bytes(GOOD)
    out = d / "good.json"
    assert main(["analyze", str(d / "t.jsonl"), "-q", "--json", str(out),
                 "--gpu-kv-cache-size", "512"]) == 0
    return out, json.loads(out.read_bytes())


def _paths(doc, prefix=()):
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield prefix + (k,)
            yield from _paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield prefix + (i,)
            yield from _paths(v, prefix + (i,))


@given(data=st.data())
def test_compare_result_or_error(tmp_path_factory, good_result, capsys, data):
    good, doc = good_result
    doc = copy.deepcopy(doc)
    wrapped = data.draw(st.sampled_from(["analyze", "run", "list"]))
    if wrapped == "run":
        doc = {"run": {}, "traces": [{"name": "t.jsonl", "figures": doc,
                                      "offloadable_fraction": {"512": 0.1}}]}
    elif wrapped == "list":
        doc = [{"name": "t.jsonl", "figures": doc}]
    for _ in range(data.draw(st.integers(1, 3))):
        paths = list(_paths(doc))  # again: a mutation may remove some
        if not paths:
            break
        where = data.draw(st.sampled_from(paths))
        node = doc
        for k in where[:-1]:
            node = node[k]
        node[where[-1]] = data.draw(JSON)
    bad = tmp_path_factory.mktemp("fuzz") / "bad.json"
    bad.write_bytes(json.dumps(doc).encode())
    for argv in (["compare", str(good), str(bad)], ["compare", str(bad), str(good),
                                                     "--fail", "reused_fraction:0.01"]):
        code = main(argv)
        captured = capsys.readouterr()
        assert code in (0, 1, 2)
        if code == 2:
            assert len(captured.err.strip().splitlines()) == 1, captured.err
