"""Trace formats: detection from content and one reader per format."""

from __future__ import annotations

import os

from ..errors import EmptyTraceError, TraceFormatError
from .jsonl import first_record, open_trace

HASH_ID_FORMATS = ("mooncake", "bailian")
FORMATS = HASH_ID_FORMATS


def detect_format(path: str | os.PathLike[str]) -> str:
    """Name the trace's format from its first record."""
    first = first_record(path)
    if first is None:
        with open_trace(path) as fh:
            if not fh.read(1 << 16).strip():
                raise EmptyTraceError("trace is empty", path=path)
        raise TraceFormatError(
            "cannot detect the format: the first line is not a JSON record "
            f"(formats: {', '.join(FORMATS)}; pass one with --format)", path=path)
    lineno, rec = first
    if isinstance(rec, dict):
        if "hash_ids" in rec:
            return "bailian" if "chat_id" in rec else "mooncake"
    raise TraceFormatError(
        "cannot detect the format from the first record: expected 'hash_ids' "
        f"(formats: {', '.join(FORMATS)}; pass one with --format)", path=path, line=lineno)
