"""Agentic coding traces in the Weka / kv-cache-tester format (``cc-traces-weka-*``).

One conversation per JSON object ``{id, models, block_size, hash_id_scope, tool_tokens,
system_tokens, requests}``: a ``.json`` file holding one (compact or pretty-printed), or a
JSONL file holding one per line; a directory or glob of them is one trace. ``requests``
interleaves API calls ``{t, type: "n" | "s", model, in, out, hash_ids, ...}`` with
subagent markers ``{type: "subagent", agent_id, subagent_type, t, requests: [...]}``
(nested to any depth). See docs/formats.md for how this becomes one stream:

- ``hash_ids[i]`` names the prefix up to native block ``i`` of ``block_size`` tokens;
  ``hash_id_scope: "local"`` (the default) numbers them per conversation, so equal ids of
  two conversations are different blocks; ``"global"`` shares one numbering.
- ``t`` is seconds from the conversation's start, subagents' requests included (their
  marker's ``t`` is the spawn time): every conversation starts at 0, and all requests
  are merged by ``t``, ties in file and document order.
- Sessions: the main agent of each conversation, and each subagent marker, is one.
"""

from __future__ import annotations

import math
import os
from array import array

import numpy as np
import orjson

from ..core.blocks import Category, dense_ids, segments_in_order
from ..errors import BlockSizeError, EmptyTraceError, TraceFormatError
from .hashids import HashIdTrace
from .jsonl import (
    INT64_END,
    bad_integer_list,
    iter_raw_records,
    json_reason,
    not_an_integer,
    open_trace,
)
from .shards import trace_files

SCOPES = ("local", "global")
REQUEST_TYPES = ("n", "s")


class _Collected:
    """Every API call of the trace, in document order, as flat typed arrays."""

    def __init__(self) -> None:
        self.ids = array("q")
        self.counts = array("q")
        self.lengths = array("q")
        self.stamps = array("d")
        self.lines = array("q")
        self.file_of = array("i")
        self.session_of = array("q")
        self.model = array("i")
        self.kind = array("i")
        self.agent = array("i")
        self.conversation = array("i")
        self.labels: dict[str, dict[str, int]] = {
            "model": {}, "type": {}, "agent": {}, "conversation": {}}
        self.local: list[bool] = []  # per session: its ids are numbered per conversation
        self.owner: list[int] = []  # per session: its conversation
        self.native: int | None = None
        self.native_from = ""

    def code(self, category: str, label: str) -> int:
        table = self.labels[category]
        return table.setdefault(label, len(table))


def read_weka_trace(path: str | os.PathLike[str], *,
                    native_block_size: int | None = None
                    ) -> tuple[HashIdTrace, dict[str, Category]]:
    """The trace's requests merged by time, and their categories (``model``, ``type``: n
    or s, ``agent``: main or the subagent type, ``conversation``: the file, or its ``id``
    in a JSONL of conversations)."""
    spath = os.fspath(path)
    out = _Collected()
    files = trace_files(spath)
    for f, name in enumerate(files):
        for line, doc in _conversations(name):
            _conversation(out, doc, name, f, line, native_block_size)
    if not out.counts:
        raise EmptyTraceError("trace holds no requests", path=spath)
    return _merged(out, spath, files)


def _conversations(name: str):
    """``(line, object)`` of every conversation of one file (line None for a file holding
    one object over several lines)."""
    records = iter_raw_records(name)
    try:
        first = next(records, None)
    except TraceFormatError as exc:
        if exc.line is None:
            raise
        yield None, _whole_file(name)
        return
    if first is None:
        return
    yield first[0], first[2]
    for line, _, doc in records:
        yield line, doc


def _whole_file(name: str) -> dict:
    with open_trace(name) as fh:
        data = fh.read()
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        pos = getattr(exc, "pos", -1)
        line = data.count(b"\n", 0, pos) + 1 if pos >= 0 else None
        raise TraceFormatError(f"not valid JSON ({json_reason(exc, data[:64])})", path=name,
                               line=line) from None
    if not isinstance(doc, dict):
        raise TraceFormatError(f"expected a JSON object, got {type(doc).__name__}", path=name)
    return doc


def _conversation(out: _Collected, doc: dict, name: str, f: int, line: int | None,
                  native_block_size: int | None) -> None:
    def fail(message: str) -> TraceFormatError:
        return TraceFormatError(message, path=name, line=line)

    block = doc.get("block_size")
    if type(block) is not int or block <= 0:
        raise fail(f"'block_size' must be a positive integer, got {block!r}")
    if native_block_size is not None and block != native_block_size:
        raise BlockSizeError(f"'block_size' is {block}, the hash block size asked for is "
                             f"{native_block_size}", path=name, line=line)
    if out.native is None:
        out.native, out.native_from = block, name
    elif block != out.native:
        raise BlockSizeError(f"'block_size' is {block}, {out.native_from} has {out.native}: "
                             "the conversations of one trace must share their hash block",
                             path=name, line=line)
    scope = doc.get("hash_id_scope", "local")
    if scope not in SCOPES:
        raise fail(f"'hash_id_scope' must be 'local' or 'global', got {scope!r}")
    # A conversation is named by its id (the file's name when it has none).
    ident = doc.get("id")
    label = str(ident) if type(ident) in (str, int) else os.path.basename(name)
    if label in out.labels["conversation"]:  # the same id twice: tell them apart
        label = f"{label} ({os.path.basename(name)}:{line or 1})"
    conversation = out.code("conversation", label)
    requests = doc.get("requests")
    if not isinstance(requests, list):
        raise fail("conversation has no 'requests' list")
    # Walked with a stack, not recursion: subagents nest to any depth.
    stack = [(requests, "requests", "main", len(out.local))]
    out.local.append(scope == "local")
    out.owner.append(conversation)
    local = scope == "local"
    while stack:
        entries, where, agent, session = stack.pop()
        agent_code = out.code("agent", agent)
        for k, entry in enumerate(entries):
            at = f"{where}[{k}]"
            if not isinstance(entry, dict):
                raise fail(f"{at} must be an object, got {type(entry).__name__}")
            kind = entry.get("type")
            if kind == "subagent":
                inner = entry.get("requests")
                if not isinstance(inner, list):
                    raise fail(f"{at}: a subagent needs a 'requests' list")
                sub = entry.get("subagent_type", "subagent")
                stack.append((inner, f"{at}.requests",
                              sub if isinstance(sub, str) and sub else "subagent",
                              len(out.local)))
                out.local.append(local)
                out.owner.append(conversation)
                continue
            if kind not in REQUEST_TYPES:
                raise fail(f"{at}: 'type' must be 'n', 's' or 'subagent', got {kind!r}")
            _request(out, entry, at, fail, block)
            out.kind.append(out.code("type", kind))
            model = entry.get("model", "")
            if not isinstance(model, str):
                raise fail(f"{at}: 'model' must be a string, got {type(model).__name__}")
            out.model.append(out.code("model", model or "unknown"))
            out.agent.append(agent_code)
            out.conversation.append(conversation)
            out.session_of.append(session)
            out.file_of.append(f)
            out.lines.append(0 if line is None else line)


def _request(out: _Collected, entry: dict, at: str, fail, block: int) -> None:
    stamp = entry.get("t")
    if type(stamp) is int and stamp < INT64_END:
        stamp = float(stamp)
    if type(stamp) is not float or not math.isfinite(stamp) or stamp < 0:
        raise fail(f"{at}: 't' must be a non-negative number of seconds, got {stamp!r}")
    length = entry.get("in")
    if type(length) is not int or not 0 <= length < INT64_END:
        what = "it is missing" if length is None else (
            f"got {length}" if type(length) is int and length < 0 else not_an_integer(length))
        raise fail(f"{at}: 'in' (input tokens) must be a non-negative integer, {what}")
    ids = entry.get("hash_ids", [])
    if type(ids) is not list:
        raise fail(f"{at}: 'hash_ids' must be a list, got {type(ids).__name__}")
    # array('q') takes booleans as 0 and 1: a C pass over the ids' types refuses them.
    if bool in set(map(type, ids)):
        raise fail(f"{at}: 'hash_ids' must hold integers, found a boolean")
    try:
        out.ids.extend(ids)
    except (TypeError, OverflowError):
        exc = bad_integer_list(ids, "hash_ids", "hash id", "", 0)
        raise fail(f"{at}: {exc.message}") from None
    if len(ids) < length // block:
        raise fail(f"{at}: 'in' {length} needs {length // block} hash_ids of {block} tokens, "
                   f"the request has {len(ids)}")
    out.counts.append(len(ids))
    out.lengths.append(length)
    out.stamps.append(float(stamp))


def _merged(out: _Collected, spath: str, files: list[str]
            ) -> tuple[HashIdTrace, dict[str, Category]]:
    counts = np.frombuffer(out.counts, dtype=np.int64)
    ids = np.frombuffer(out.ids, dtype=np.int64) if out.ids else np.zeros(0, np.int64)
    session_of = np.frombuffer(out.session_of, dtype=np.int64)
    # A local id is the pair (conversation, id); a global one is the id alone.
    dense, n = dense_ids(ids)
    id_session = np.repeat(session_of, counts)
    owner = np.asarray(out.owner, dtype=np.int64)[id_session]
    local = np.asarray(out.local, dtype=bool)[id_session]
    no_owner = int(owner.max()) + 1 if owner.size else 0
    keys = dense.astype(np.int64) + n * np.where(local, owner, no_owner)

    # Merge by time: a stable sort keeps file and document order among equal times.
    stamps = np.frombuffer(out.stamps, dtype=np.float64)
    order = np.argsort(stamps, kind="stable")
    offsets = np.zeros(counts.shape[0] + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    gather, new_offsets = segments_in_order(offsets, order)
    trace = HashIdTrace(
        path=spath,
        hash_ids=keys[gather],
        offsets=new_offsets,
        input_lengths=np.frombuffer(out.lengths, dtype=np.int64)[order].copy(),
        timestamps=stamps[order].copy(),
        sessions=dense_ids(session_of[order])[0].astype(np.int64),
        lines=np.frombuffer(out.lines, dtype=np.int64)[order].copy(),
        native_block_size=int(out.native),
        files=tuple(files),
        file_of=np.frombuffer(out.file_of, dtype=np.int32)[order].copy(),
    )
    categories = {}
    for name, codes in (("conversation", out.conversation), ("model", out.model),
                        ("type", out.kind), ("agent", out.agent)):
        categories[name] = Category(np.frombuffer(codes, dtype=np.int32)[order].copy(),
                                    tuple(out.labels[name]))
    return trace, categories
