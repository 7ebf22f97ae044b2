"""Fuzzing every text and token-id format, and manifests: each outcome is a result or a
KvReuseError (one line naming the file); any other exception is a bug."""

from __future__ import annotations

import json
import math

import pytest
from fuzzing import JSON, SHORT_TEXT, dumps, join_lines, mangle
from hypothesis import given
from hypothesis import strategies as st

from pytest_kvreuse import KvReuseError, analyze

ROLE = st.one_of(st.sampled_from(["user", "assistant", "system", "tool"]), JSON)
CONTENT = st.one_of(
    SHORT_TEXT, st.none(),
    st.lists(st.one_of(SHORT_TEXT, st.fixed_dictionaries({"type": st.just("text"),
                                                          "text": SHORT_TEXT}),
                       st.fixed_dictionaries({"type": st.just("image_url")}), JSON),
             max_size=3),
    JSON)
MESSAGE = st.one_of(
    st.fixed_dictionaries({"role": ROLE, "content": CONTENT}),
    st.fixed_dictionaries({"content": SHORT_TEXT}), JSON)
MESSAGES = st.one_of(st.lists(MESSAGE, max_size=4), JSON)
SESSION = st.one_of(st.integers(-3, 5), st.sampled_from(["a", "b", "s\x00"]), JSON)
STAMP = st.one_of(st.integers(0, 10**6), st.floats(allow_nan=False), JSON)
TOKEN_IDS = st.one_of(st.lists(st.integers(0, 200), max_size=40),
                      st.lists(st.integers(-(2**70), 2**70), max_size=4),
                      st.lists(st.floats(), max_size=3), st.lists(JSON, max_size=3), JSON)


def optional(**fields):
    """A record holding any subset of ``fields`` (each a strategy)."""
    @st.composite
    def build(draw):
        keys = draw(st.sets(st.sampled_from(sorted(fields))))
        return {k: draw(fields[k]) for k in sorted(keys)}
    return build()


RECORDS = {
    "chat": optional(messages=MESSAGES, session_id=SESSION, timestamp=STAMP),
    "prompt": optional(prompt=st.one_of(SHORT_TEXT, JSON), text=SHORT_TEXT,
                       session_id=SESSION, timestamp=STAMP),
    "token-ids": optional(token_ids=TOKEN_IDS, input_ids=TOKEN_IDS, session_id=SESSION,
                          timestamp=STAMP),
}


@st.composite
def jsonl_files(draw, fmt):
    recs = draw(st.lists(RECORDS[fmt], max_size=5))
    return join_lines(draw, [mangle(draw, dumps(r, draw)) for r in recs])


@st.composite
def aiperf_files(draw):
    payload = optional(messages=MESSAGES, prompt=SHORT_TEXT, timestamp=STAMP)
    entry = st.one_of(optional(session_id=SESSION,
                               payloads=st.one_of(st.lists(payload, max_size=3), JSON)), JSON)
    doc = draw(st.one_of(st.fixed_dictionaries({"data": st.lists(entry, max_size=4)}),
                         st.fixed_dictionaries({"other": JSON, "data": st.lists(entry,
                                                                              max_size=2)}),
                         JSON))
    indent = draw(st.sampled_from([None, 1]))
    try:
        raw = json.dumps(doc, indent=indent, ensure_ascii=draw(st.booleans()))
    except (ValueError, RecursionError):
        raw = "{}"
    return mangle(draw, raw.encode("utf-8", "surrogatepass"))


def _check(path, fmt, block, **options):
    try:
        a = analyze(path, block_size=block, format=fmt, use_cache=False, progress=False,
                    **options)
    except KvReuseError as exc:
        text = exc.one_line()
        assert "\n" not in text and str(path) in text, text
        return None
    frac = a.offloadable_fraction(1000)
    assert math.isnan(frac) or 0.0 <= frac <= 1.0
    hit = a.lru_hit_fraction(1000)
    assert math.isnan(hit) or 0.0 <= hit <= 1.0
    json.dumps(a.to_dict(), allow_nan=False)
    return a


FMT = {"chat": ["auto", "chat", "prompt"], "prompt": ["auto", "prompt", "chat"],
       "token-ids": ["auto", "token-ids"]}


@pytest.mark.usefixtures("deepseek")  # loaded once, shared through the tokenizer cache
@given(data=st.data(), kind=st.sampled_from(sorted(RECORDS)),
       block=st.sampled_from([1, 4, 16]), prompt=st.sampled_from(["raw", "per-message", "chat"]))
def test_jsonl_result_or_kvreuse_error(tmp_path_factory, data, kind, block, prompt):
    path = tmp_path_factory.mktemp("fuzz") / "trace.jsonl"
    path.write_bytes(data.draw(jsonl_files(kind)))
    fmt = data.draw(st.sampled_from(FMT[kind]))
    _check(path, fmt, block, prompt=prompt)


@pytest.mark.usefixtures("deepseek")  # loaded once, shared through the tokenizer cache
@given(data=aiperf_files(), fmt=st.sampled_from(["auto", "aiperf"]),
       block=st.sampled_from([1, 4, 16]), prompt=st.sampled_from(["raw", "per-message", "chat"]))
def test_aiperf_result_or_kvreuse_error(tmp_path_factory, data, fmt, block, prompt):
    path = tmp_path_factory.mktemp("fuzz") / "inputs.json"
    path.write_bytes(data)
    _check(path, fmt, block, prompt=prompt)


@pytest.mark.usefixtures("deepseek")  # loaded once, shared through the tokenizer cache
@given(data=st.one_of(jsonl_files("chat"), jsonl_files("prompt"), jsonl_files("token-ids"),
                      aiperf_files()),
       fmt=st.sampled_from(["auto", "mooncake", "bailian", "aiperf", "chat", "token-ids",
                            "weka", "mooncake-trace", "mooncake-trace-text"]))
def test_any_format_on_any_file(tmp_path_factory, data, fmt):
    path = tmp_path_factory.mktemp("fuzz") / "trace.json"
    path.write_bytes(data)
    _check(path, fmt, 16)


@pytest.mark.usefixtures("deepseek")  # loaded once, shared through the tokenizer cache
@given(data=st.one_of(st.binary(max_size=200), st.text(max_size=60).map(
    lambda t: t.encode("utf-8", "surrogatepass"))))
def test_arbitrary_bytes(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("fuzz") / "trace.jsonl"
    path.write_bytes(data)
    _check(path, "auto", 16)
