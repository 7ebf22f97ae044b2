"""Strategies shared by the fuzz tests: JSON values of every kind and ways to break a line."""

from __future__ import annotations

import json
import math
import re

from hypothesis import strategies as st

SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False),
    st.text(max_size=8), st.just("\x00"), st.just(float("inf")), st.just(1e308),
    st.just(float("nan")), st.just("\ud800"), st.just(2**64), st.just(-(2**63) - 1),
)
JSON = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)),
    max_leaves=12)
SHORT_TEXT = st.one_of(st.text(max_size=40), st.sampled_from(
    ["hello world", "The quick brown fox. " * 3, "\x00nul", "🙂 emoji ☃", "\ud800x",
     "a" * 70, "日本語のテキスト", "\udc00", "x\ud83d", "\ud83d\ude42"]))


def dumps(value: object, draw) -> bytes:
    try:
        text = json.dumps(value, ensure_ascii=draw(st.booleans()), allow_nan=True)
    except (ValueError, RecursionError):
        return b"{}"
    return text.encode("utf-8", "surrogatepass")


def mangle(draw, line: bytes) -> bytes:
    how = draw(st.sampled_from(["keep", "keep", "keep", "keep", "truncate", "nul", "bad-utf8",
                                "deep", "garbage", "huge", "nan", "lone-surrogate", "bool"]))
    if how == "truncate" and line:
        return line[: draw(st.integers(0, len(line) - 1))]
    if how == "nul":
        return line.replace(b":", b":\x00", 1)
    if how == "bad-utf8":
        pos = draw(st.integers(0, len(line)))
        return line[:pos] + b"\xff\xfe" + line[pos:]
    if how == "deep":
        return b"[" * 5000 + b"]" * 5000
    if how == "garbage":
        return draw(st.binary(max_size=30)).replace(b"\n", b"")
    if how == "huge":
        return line.replace(b"1", b"1" + b"9" * 400, 1)
    if how == "nan":
        return re.sub(rb"(?<=[:\[,] )-?[0-9]+(?:\.[0-9]+)?", b"NaN", line, count=1)
    if how == "lone-surrogate":  # the escape at the start of some string (key or value)
        quotes = [m.start() for m in re.finditer(b'"', line)][::2]
        if quotes:
            at = draw(st.sampled_from(quotes)) + 1
            return line[:at] + draw(st.sampled_from([b"\\ud800", b"\\udfff", b"x\\udc00"])) \
                + line[at:]
    if how == "bool":
        return re.sub(rb"(?<=[\[,] )[0-9]+", b"true", line, count=1)
    return line


def join_lines(draw, lines: list[bytes]) -> bytes:
    return b"\n".join(lines) + draw(st.sampled_from([b"", b"\n", b"\r\n"]))


def result_or_one_line_error(path, **options):
    """Analyse ``path``: a sane result, or a KvReuseError of one line naming the file
    (anything else escapes and fails the test). The analysis, or None."""
    from pytest_kvreuse import KvReuseError, analyze

    try:
        a = analyze(path, use_cache=False, progress=False, **options)
    except KvReuseError as exc:
        text = exc.one_line()
        assert "\n" not in text and str(path) in text, text
        return None
    assert 0 <= a.reused_fraction <= 1 or math.isnan(a.reused_fraction)
    json.dumps(a.to_dict(), allow_nan=False)
    return a
