"""Trace formats: detection from content and one reader per format."""

from __future__ import annotations

import os
import re

from ..errors import EmptyTraceError, TraceFormatError
from .aiperf import HEAD as _AIPERF_HEAD
from .jsonl import first_line, open_trace, parse_first_line, read_error
from .text import TEXT_FORMATS, TOKEN_FORMATS

HASH_ID_FORMATS = ("mooncake", "bailian")
_DATA_LIST = re.compile(rb'"data"\s*:\s*\[')
FORMATS = (*HASH_ID_FORMATS, *TEXT_FORMATS, *TOKEN_FORMATS)


def detect_format(path: str | os.PathLike[str]) -> str:
    """Name the trace's format from its first record.

    The file is opened and read once (the head, then the rest of the first line only
    if it is longer), so a pipe can be told apart too."""
    with open_trace(path) as fh:
        try:
            head = fh.read(1 << 16)
        except OSError as exc:
            raise read_error(exc, path) from None
        # An inputs.json may be one huge line: recognise it from its head, before lines.
        if _AIPERF_HEAD.match(head):
            return "aiperf"
        first = first_line(fh, head, path)
    if first is None:
        raise EmptyTraceError("trace is empty", path=path)
    lineno, raw = first
    rec, reason = parse_first_line(lineno, raw)
    if _DATA_LIST.search(head) and head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{") and (
            reason is not None or (isinstance(rec, dict) and "data" in rec)):
        return "aiperf"  # "data" is not the first key, or the object spans many lines
    if reason is not None:
        # The first line's own fault, as any later line would get it.
        raise TraceFormatError(
            f"not valid JSON ({reason}); cannot detect the format from it (formats: "
            f"{', '.join(FORMATS)}; pass one with --format)", path=path, line=lineno)
    if isinstance(rec, dict):
        if "hash_ids" in rec:
            return "bailian" if "chat_id" in rec else "mooncake"
        if "messages" in rec:
            return "chat"
        if "token_ids" in rec or "input_ids" in rec:
            return "token-ids"
        if "prompt" in rec or "text" in rec:
            return "prompt"
        if "data" in rec:
            return "aiperf"
    raise TraceFormatError(
        "cannot detect the format from the first record: expected 'hash_ids', 'messages', "
        "'prompt', 'text', 'token_ids' or an aiperf {\"data\": [...]} "
        f"(formats: {', '.join(FORMATS)}; pass one with --format)", path=path, line=lineno)
