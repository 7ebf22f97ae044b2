"""Streaming JSONL reading with errors that name the file and line."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import orjson

from ..errors import TraceFormatError, TraceReadError
from .compression import decompressed
from .shards import trace_files

BOM = b"\xef\xbb\xbf"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_NON_FINITE = re.compile(rb"-?(?:NaN|Infinity)")


def open_trace(path: str | os.PathLike[str]) -> BinaryIO:
    """Open a trace file for binary reading of the bytes it holds (decompressed when it is
    gzip, xz, bz2 or zstd: see :mod:`.compression`), turning OS errors into one-line
    errors."""
    p = Path(path)
    if p.is_dir():
        raise TraceReadError("is a directory, not a trace file", path=p)
    try:
        fh = p.open("rb")
    except FileNotFoundError:
        raise TraceReadError("no such file", path=p) from None
    except OSError as exc:
        raise TraceReadError(f"cannot open: {exc.strerror or exc}", path=p) from None
    return decompressed(fh, p)


def read_error(exc: OSError, path: str | os.PathLike[str]) -> TraceReadError:
    """A failed read after the open (EIO, a vanished network mount, ...) in one line."""
    return TraceReadError(f"cannot read the trace: {exc.strerror or exc}", path=path)


def iter_raw_records(path: str | os.PathLike[str],
                     on_bytes: Callable[[int], None] | None = None,
                     on_file: Callable[[str], None] | None = None
                     ) -> Iterator[tuple[int, bytes, dict]]:
    """Yield ``(line_number, line, record)`` for every non-blank line; records must be
    objects. The raw line lets a reader look for what the parsed record cannot show
    (a boolean among integers) with one C scan of the line.

    A shard set (a directory or a glob: :mod:`.shards`) yields its files' records one
    file after the other, line numbers counted per file; ``on_file(path)`` is told each
    file as it starts. ``on_bytes(n)`` is told the size of every line read (for progress
    bars)."""
    for name in trace_files(path):
        if on_file is not None:
            on_file(name)
        yield from _file_records(name, on_bytes)


def _file_records(path: str, on_bytes: Callable[[int], None] | None
                  ) -> Iterator[tuple[int, bytes, dict]]:
    loads = orjson.loads  # bound once: this loop runs per line of traces of millions
    with open_trace(path) as fh:
        try:
            for lineno, raw in enumerate(fh, start=1):
                if on_bytes is not None:
                    on_bytes(len(raw))
                if raw.isspace():
                    continue
                if lineno == 1 and raw.startswith(BOM):  # files saved by Windows editors
                    raw = raw[len(BOM):]
                try:
                    record = loads(raw)
                except orjson.JSONDecodeError:
                    record = parse_line(raw, path, lineno)  # raises, naming the line
                if not isinstance(record, dict):
                    raise not_an_object(record, path, lineno)
                yield lineno, raw, record
        except OSError as exc:  # a read failing after the open (EIO, a lost mount)
            raise read_error(exc, path) from None


def not_an_object(record: object, path: str, lineno: int) -> TraceFormatError:
    return TraceFormatError(f"expected a JSON object per line, got {type(record).__name__}",
                            path=path, line=lineno)


def parse_line(raw: bytes, path: str, lineno: int) -> dict:
    """One line as :func:`iter_raw_records` reads it (BOM already gone), or its error."""
    try:
        record = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise TraceFormatError(f"not valid JSON ({json_reason(exc, raw)})",
                               path=path, line=lineno) from None
    if not isinstance(record, dict):
        raise not_an_object(record, path, lineno)
    return record


def iter_records(path: str | os.PathLike[str], on_bytes: Callable[[int], None] | None = None
                 ) -> Iterator[tuple[int, dict]]:
    """Yield ``(line_number, record)`` for every non-blank line; records must be objects.

    ``on_bytes(n)`` is told the size of every line read (for progress bars)."""
    for lineno, _, record in iter_raw_records(path, on_bytes):
        yield lineno, record


def may_hold_boolean(raw: bytes) -> bool:
    """Whether a JSON line may hold ``true`` or ``false`` (false positives allowed).

    For readers that must refuse booleans where numpy or array('q') would take them as
    0 and 1. One-byte searches (memchr) first: 'r' and 'f' are in no Mooncake key, so a
    plain hash-id line costs two memchr calls, not two substring searches."""
    return (b"r" in raw and b"true" in raw) or (b"f" in raw and b"false" in raw)


def first_line(fh: BinaryIO, head: bytes, path: str | os.PathLike[str]
               ) -> tuple[int, bytes] | None:
    """The first non-blank line (number and bytes) of the file ``fh`` whose first bytes
    ``head`` were just read from it: the file is opened once, so a pipe works too."""
    lineno = 1
    rest = head
    while True:
        end = rest.find(b"\n")
        if end < 0:
            try:
                more = fh.readline()
            except OSError as exc:
                raise read_error(exc, path) from None
            rest += more
            if not more or rest.endswith(b"\n"):
                return (lineno, rest) if rest.strip() else None
            continue
        line, rest = rest[:end + 1], rest[end + 1:]
        if line.strip():
            return lineno, line
        lineno += 1


def parse_first_line(lineno: int, raw: bytes) -> tuple[object | None, str | None]:
    """``(value, None)``, or ``(None, reason)`` when the line is not one JSON value."""
    if lineno == 1 and raw.startswith(BOM):
        raw = raw[len(BOM):]
    try:
        return orjson.loads(raw), None
    except orjson.JSONDecodeError as exc:
        return None, json_reason(exc, raw)


def looks_utf16(raw: bytes) -> bool:
    """A UTF-16 file (Windows' "Unicode"): a byte-order mark, or NULs between ASCII bytes."""
    if raw.startswith(_UTF16_BOMS):
        return True
    head = raw[:8]
    return len(head) >= 4 and (head[1::2] == bytes(len(head[1::2]))
                               or head[0::2] == bytes(len(head[0::2])))


def json_reason(exc: orjson.JSONDecodeError, raw: bytes = b"") -> str:
    """orjson's message in the user's terms (only on the error path)."""
    text = str(exc)
    msg = text.split(":", 1)[0]
    if looks_utf16(raw):
        return "the file is UTF-16 text; traces must be UTF-8 (iconv -f UTF-16 -t UTF-8)"
    if "utf-8" in text.lower() or "utf8" in text.lower():
        return "not UTF-8 text"
    if "surrogate" in msg:
        return f"not valid Unicode text: a lone surrogate escape ({msg})"
    pos = getattr(exc, "pos", -1)
    if 0 <= pos < len(raw):
        constant = _NON_FINITE.match(raw, pos)
        if constant:
            return f"{constant.group(0).decode()}: NaN and Infinity are not JSON numbers"
    if msg.startswith("unexpected content after document"):
        return "extra data after the JSON value"
    if msg.startswith("unexpected end of data"):
        return "unexpected end of data: the record is cut off"
    if "infinity when parsed as double" in msg:
        return "a number too large"
    return msg


# Record fields: what every JSONL format checks the same way.
INT64_END = 2**63


def not_an_integer(value: object) -> str:
    """Why a JSON value is not a 64-bit integer, in a few words (error path only).

    orjson reads an integer literal beyond 64 bits as a float: an integral float of
    that size is reported as too large, which it is whichever way it was written."""
    if type(value) is bool:
        return "found a boolean"
    if type(value) is float and value.is_integer() and abs(value) >= INT64_END:
        return "found one too large (beyond 64 bits)"
    return f"found {type(value).__name__}"


def field_number(record: dict, name: str, path: str, lineno: int) -> float:
    """A numeric field as a float, NaN when absent; anything else is one line."""
    value = record.get(name)
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TraceFormatError(f"'{name}' must be a number, got {type(value).__name__}",
                               path=path, line=lineno)
    try:
        return float(value)
    except OverflowError:  # an integer beyond the float range (Python's json keeps it)
        raise TraceFormatError(f"'{name}' is out of range", path=path, line=lineno) from None


def bad_integer_list(ids: list, field: str, item: str, path: str,
                     lineno: int) -> TraceFormatError:
    """The error for an id list (``hash_ids``, ``token_ids``) that is not all 64-bit
    integers. Error path only: the per-id loop runs once the C conversion has refused it."""
    for value in ids:
        if type(value) is not int:
            return TraceFormatError(f"'{field}' must hold integers, {not_an_integer(value)}",
                                    path=path, line=lineno)
        if not -INT64_END <= value < INT64_END:
            return TraceFormatError(f"{item} {value} is too large: does not fit in 64 bits",
                                    path=path, line=lineno)
    return TraceFormatError(f"'{field}' must hold integers", path=path, line=lineno)
