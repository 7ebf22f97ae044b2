"""The trace formats: each registered once (name, kind, what it reads), and detected from
the content. Light on purpose (no numpy): parameters are validated against it at
collection."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from ..errors import EmptyTraceError, TraceFormatError
from .aiperf import HEAD as AIPERF_HEAD
from .jsonl import first_line, open_trace, parse_first_line, read_error
from .shards import trace_files

HASH_IDS, TEXT, TOKEN_IDS = "hash-ids", "text", "token-ids"


@dataclass(frozen=True)
class Format:
    """A trace format: ``kind`` says how its requests become blocks (hash ids are blocks
    already; text is tokenized; token ids are cut as they are)."""

    name: str
    kind: str
    reads: str


FORMATS: dict[str, Format] = {f.name: f for f in (
    Format("mooncake", HASH_IDS, "Mooncake JSONL: timestamp, input_length, output_length, "
           "hash_ids (native hash block 512)"),
    Format("bailian", HASH_IDS, "Qwen-Bailian JSONL: chat_id, parent_chat_id, turn, type, "
           "hash_ids (native hash block 16)"),
    Format("weka", HASH_IDS, "Weka / kv-cache-tester agentic traces: one conversation "
           "{block_size, hash_id_scope, requests: [{t, type, model, in, hash_ids} | "
           "subagent]} per .json file or JSONL line (native hash block: its block_size)"),
    Format("mooncake-trace", HASH_IDS, "aiperf mooncake_trace JSONL: input_length, "
           "hash_ids, timestamp (ms), delay (ms), session_id (native hash block 512)"),
    Format("mooncake-trace-text", TEXT, "aiperf mooncake_trace JSONL: text_input or "
           "messages, timestamp (ms), delay (ms), session_id"),
    Format("aiperf", TEXT, "aiperf inputs.json: data[].payloads[].messages"),
    Format("chat", TEXT, "OpenAI-style chat JSONL: messages per line"),
    Format("prompt", TEXT, "prompt JSONL: prompt or text per line"),
    Format("token-ids", TOKEN_IDS, "token-id JSONL: token_ids or input_ids per line"),
)}
FORMAT_NAMES = tuple(FORMATS)
HASH_ID_FORMATS = tuple(n for n, f in FORMATS.items() if f.kind == HASH_IDS)
TEXT_FORMATS = tuple(n for n, f in FORMATS.items() if f.kind == TEXT)
TOKEN_FORMATS = tuple(n for n, f in FORMATS.items() if f.kind == TOKEN_IDS)
_DATA_LIST = re.compile(rb'"data"\s*:\s*\[')
# A conversation object spread over many lines: its keys are in the head.
_WEKA_KEYS = re.compile(rb'"(?:hash_id_scope|block_size)"\s*:')
_REQUESTS_LIST = re.compile(rb'"requests"\s*:\s*\[')


def detect_format(path: str | os.PathLike[str]) -> str:
    """Name the trace's format from its first record.

    The file is opened and read once (the head, then the rest of the first line only
    if it is longer), so a pipe can be told apart too. A compressed file is told from its
    decompressed head; a shard set from its first file."""
    path = trace_files(path)[0]
    with open_trace(path) as fh:
        try:
            head = fh.read(1 << 16)
        except OSError as exc:
            raise read_error(exc, path) from None
        # An inputs.json may be one huge line: recognise it from its head, before lines.
        if AIPERF_HEAD.match(head):
            return "aiperf"
        first = first_line(fh, head, path)
    if first is None:
        raise EmptyTraceError("trace is empty", path=path)
    lineno, raw = first
    rec, reason = parse_first_line(lineno, raw)
    if _DATA_LIST.search(head) and head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{") and (
            reason is not None or (isinstance(rec, dict) and "data" in rec)):
        return "aiperf"  # "data" is not the first key, or the object spans many lines
    if reason is not None and head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{") and (
            _WEKA_KEYS.search(head) and _REQUESTS_LIST.search(head)):
        return "weka"  # one conversation object over many lines
    if reason is not None:
        # The first line's own fault, as any later line would get it.
        raise TraceFormatError(
            f"not valid JSON ({reason}); cannot detect the format from it (formats: "
            f"{', '.join(FORMAT_NAMES)}; pass one with --format)", path=path, line=lineno)
    if isinstance(rec, dict):
        if isinstance(rec.get("requests"), list) and ("block_size" in rec
                                                      or "hash_id_scope" in rec):
            return "weka"
        if "text_input" in rec:
            return "mooncake-trace-text"
        # {messages, session_id, timestamp} stays chat (seconds): a chat JSONL has them too.
        if "messages" in rec and any(k in rec for k in ("delay", "output_length")):
            return "mooncake-trace-text"
        if "input_length" in rec and any(k in rec for k in ("delay", "session_id")):
            return "mooncake-trace"
        if "input_length" in rec and "hash_ids" not in rec:
            return "mooncake-trace"
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
        "'prompt', 'text', 'text_input', 'input_length', 'token_ids', a Weka "
        "conversation {\"requests\": [...]} or an aiperf {\"data\": [...]} "
        f"(formats: {', '.join(FORMAT_NAMES)}; pass one with --format)", path=path, line=lineno)
