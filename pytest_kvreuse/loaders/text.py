"""Text traces (aiperf inputs.json, OpenAI-style chat JSONL, prompt JSONL) and token-id
JSONL, read as requests: they know nothing of tokenizers or blocks."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from ..errors import EmptyTraceError, TraceFormatError
from .aiperf import iter_aiperf_entries
from .jsonl import (
    INT64_END,
    bad_integer_list,
    field_number,
    iter_raw_records,
    iter_records,
    may_hold_boolean,
)


@dataclass(frozen=True)
class TextRequest:
    """One request as chat messages ``(role, content)``; ``session`` as written in the
    trace (None when unknown), ``timestamp`` NaN when unknown."""

    messages: tuple[tuple[str, str], ...]
    session: object
    timestamp: float
    line: int


def content_text(content: object, path: str, line: int, where: str) -> str:
    """A message's text: a string, or the text parts of an OpenAI content list."""
    if isinstance(content, str):
        return content
    if content is None:  # e.g. an assistant turn that only calls tools
        return ""
    if isinstance(content, list):
        texts = []
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, dict):
                if part.get("type", "text") == "text":
                    text = part.get("text")
                    if not isinstance(text, str):
                        raise TraceFormatError(
                            f"{where}: a text content part needs a string 'text', got "
                            f"{type(text).__name__}", path=path, line=line)
                    texts.append(text)
                # other parts (images, audio) carry no prompt text
            else:
                raise TraceFormatError(f"{where}: content parts must be objects, got "
                                       f"{type(part).__name__}", path=path, line=line)
        # vLLM and OpenAI join the text parts of one message with a newline.
        return "\n".join(texts)
    raise TraceFormatError(f"{where}: 'content' must be a string or a list of parts, got "
                           f"{type(content).__name__}", path=path, line=line)


def _messages(record: dict, path: str, line: int, where: str) -> tuple[tuple[str, str], ...]:
    msgs = record.get("messages")
    if msgs is None:
        for key in ("prompt", "text"):
            if isinstance(record.get(key), str):
                return (("user", record[key]),)
        raise TraceFormatError(f"{where} has no 'messages'", path=path, line=line)
    if not isinstance(msgs, list):
        raise TraceFormatError(f"{where}: 'messages' must be a list, got "
                               f"{type(msgs).__name__}", path=path, line=line)
    if not msgs:
        raise TraceFormatError(f"{where} has no messages", path=path, line=line)
    out = []
    for k, m in enumerate(msgs):
        if not isinstance(m, dict):
            raise TraceFormatError(f"{where}: message {k} must be an object, got "
                                   f"{type(m).__name__}", path=path, line=line)
        role = m.get("role", "user")
        if not isinstance(role, str):
            raise TraceFormatError(f"{where}: message {k} 'role' must be a string",
                                   path=path, line=line)
        out.append((role, content_text(m.get("content"), path, line, f"{where} message {k}")))
    return tuple(out)


def _timestamp(record: dict, path: str, line: int, per_second: float = 1.0) -> float:
    """Seconds, from a format counting ``per_second`` units a second (docs/times.md)."""
    # A division, not a product with 1e-3: 59355 ms gives exactly the double of 59.355.
    return field_number(record, "timestamp", path, line) / per_second


# aiperf's dataset formats stamp turns in milliseconds.
_AIPERF_UNITS_PER_SECOND = 1000.0


def _session(record: dict, path: str, line: int) -> object:
    value = record.get("session_id")
    if value is not None and (isinstance(value, bool) or not isinstance(value, (str, int))):
        raise TraceFormatError(f"'session_id' must be a string or an integer, got "
                               f"{type(value).__name__}", path=path, line=line)
    return value


def iter_text_requests(path: str | os.PathLike[str], fmt: str,
                       on_bytes: Callable[[int], None] | None = None
                       ) -> Iterator[TextRequest]:
    """Every request of a text trace in file order (file order is arrival order)."""
    spath = os.fspath(path)
    count = 0
    if fmt == "aiperf":
        for i, line, entry in iter_aiperf_entries(spath, on_bytes):
            if not isinstance(entry, dict):
                raise TraceFormatError(f"data[{i}] must be an object, got "
                                       f"{type(entry).__name__}", path=spath, line=line)
            session = _session(entry, spath, line)
            payloads = entry.get("payloads")
            if not isinstance(payloads, list):
                raise TraceFormatError(f"data[{i}] has no 'payloads' list", path=spath,
                                       line=line)
            for j, payload in enumerate(payloads):
                where = f"data[{i}].payloads[{j}]"
                if not isinstance(payload, dict):
                    raise TraceFormatError(f"{where} must be an object", path=spath, line=line)
                count += 1
                yield TextRequest(_messages(payload, spath, line, where), session,
                                  _timestamp(payload, spath, line,
                                             _AIPERF_UNITS_PER_SECOND), line)
    else:
        for line, rec in iter_records(spath, on_bytes):
            if fmt == "chat":
                msgs = _messages(rec, spath, line, "record")
            else:
                text = rec.get("prompt", rec.get("text"))
                if not isinstance(text, str):
                    raise TraceFormatError(
                        "record needs a string 'prompt' or 'text', got "
                        f"{type(text).__name__ if text is not None else 'neither'}",
                        path=spath, line=line)
                msgs = (("user", text),)
            count += 1
            yield TextRequest(msgs, _session(rec, spath, line), _timestamp(rec, spath, line),
                              line)
    if count == 0:
        raise EmptyTraceError("trace holds no requests", path=spath)


def iter_token_requests(path: str | os.PathLike[str],
                        on_bytes: Callable[[int], None] | None = None
                        ) -> Iterator[tuple[np.ndarray, object, float]]:
    """``(token ids, session, timestamp)`` of every record of a token-id JSONL trace."""
    spath = os.fspath(path)
    count = 0
    for line, raw, rec in iter_raw_records(spath, on_bytes):
        ids = rec.get("token_ids", rec.get("input_ids"))
        if not isinstance(ids, list):
            raise TraceFormatError("record needs a 'token_ids' (or 'input_ids') list",
                                   path=spath, line=line)
        try:
            arr = np.asarray(ids) if ids else np.zeros(0, np.int64)
        except (TypeError, ValueError, OverflowError):
            arr = None
        # numpy takes [1, true] as integers: a C scan of the line for the literals, and
        # only on a hit a C pass over the ids' types (never Python work per token).
        if arr is None or arr.ndim != 1 or arr.dtype.kind not in "iu" or (
                arr.dtype.kind == "u" and int(arr.max()) >= INT64_END) or (
                may_hold_boolean(raw) and bool in set(map(type, ids))):
            raise bad_integer_list(ids, "token_ids", "token id", spath, line)
        arr = arr.astype(np.int64, copy=False)
        count += 1
        yield arr, _session(rec, spath, line), _timestamp(rec, spath, line)
    if count == 0:
        raise EmptyTraceError("trace holds no requests", path=spath)
