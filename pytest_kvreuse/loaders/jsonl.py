"""Streaming JSONL reading with errors that name the file and line."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson

from ..errors import TraceFormatError, TraceReadError

_BOM = b"\xef\xbb\xbf"


def open_trace(path: str | os.PathLike[str]):
    """Open a trace for binary reading, turning OS errors into one-line errors."""
    p = Path(path)
    if p.is_dir():
        raise TraceReadError("is a directory, not a trace file", path=p)
    try:
        return p.open("rb")
    except FileNotFoundError:
        raise TraceReadError("no such file", path=p) from None
    except OSError as exc:
        raise TraceReadError(f"cannot open: {exc.strerror or exc}", path=p) from None


def iter_records(path: str | os.PathLike[str], on_bytes: Callable[[int], None] | None = None
                 ) -> Iterator[tuple[int, dict]]:
    """Yield ``(line_number, record)`` for every non-blank line; records must be objects.

    ``on_bytes(n)`` is told the size of every line read (for progress bars)."""
    loads = orjson.loads  # bound once: this loop runs per line of traces of millions
    with open_trace(path) as fh:
        for lineno, raw in enumerate(fh, start=1):
            if on_bytes is not None:
                on_bytes(len(raw))
            if raw.isspace():
                continue
            if lineno == 1 and raw.startswith(_BOM):  # files saved by Windows editors
                raw = raw[len(_BOM):]
            try:
                record = loads(raw)
            except orjson.JSONDecodeError as exc:
                raise TraceFormatError(f"not valid JSON ({_reason(exc)})",
                                       path=path, line=lineno) from None
            if not isinstance(record, dict):
                raise TraceFormatError(
                    f"expected a JSON object per line, got {type(record).__name__}",
                    path=path, line=lineno)
            yield lineno, record


def first_record(path: str | os.PathLike[str]) -> tuple[int, object] | None:
    """The first non-blank line parsed as JSON, or None when it is not one JSON value."""
    with open_trace(path) as fh:
        for lineno, raw in enumerate(fh, start=1):
            if raw.strip():
                if lineno == 1 and raw.startswith(_BOM):
                    raw = raw[len(_BOM):]
                try:
                    return lineno, orjson.loads(raw)
                except orjson.JSONDecodeError:
                    return None
    return None


def _reason(exc: orjson.JSONDecodeError) -> str:
    msg = str(exc).split(":", 1)[0]
    if "utf-8" in str(exc).lower() or "utf8" in str(exc).lower():
        return "not UTF-8 text"
    return msg
