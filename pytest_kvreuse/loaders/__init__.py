"""Trace formats: detection from content and one reader per format."""

from __future__ import annotations

import os
import re

from ..errors import EmptyTraceError, TraceFormatError
from .aiperf import HEAD as _AIPERF_HEAD
from .jsonl import first_record, open_trace
from .text import TEXT_FORMATS, TOKEN_FORMATS

HASH_ID_FORMATS = ("mooncake", "bailian")
_DATA_LIST = re.compile(rb'"data"\s*:\s*\[')
FORMATS = (*HASH_ID_FORMATS, *TEXT_FORMATS, *TOKEN_FORMATS)


def detect_format(path: str | os.PathLike[str]) -> str:
    """Name the trace's format from its first record."""
    # An inputs.json may be one huge line: recognise it from its head, before reading lines.
    with open_trace(path) as fh:
        head = fh.read(1 << 16)
    if _AIPERF_HEAD.match(head):
        return "aiperf"
    first = first_record(path) if _complete_first_line(head) else None
    if _DATA_LIST.search(head) and head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{") and (
            first is None or (isinstance(first[1], dict) and "data" in first[1])):
        return "aiperf"  # "data" is not the first key, or the object spans many lines
    if first is None and not _complete_first_line(head):
        first = first_record(path)
    if first is None:
        if not head.strip():
            raise EmptyTraceError("trace is empty", path=path)
        raise TraceFormatError(
            "cannot detect the format: the first line is not a JSON record "
            f"(formats: {', '.join(FORMATS)}; pass one with --format)", path=path)
    lineno, rec = first
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


def _complete_first_line(head: bytes) -> bool:
    """Whether the first non-blank line ends inside ``head`` (else it may be huge)."""
    body = head.lstrip(b" \t\r\n")
    return b"\n" in body or len(head) < (1 << 16)
