"""Prefix-hash-id traces (Mooncake, Qwen-Bailian) and their re-blocking to any block size.

``hash_ids[i]`` names the whole prefix up to native block ``i``; the last id may cover a
partial native block. See docs/definitions.md §1 for the key of an analysis block.
"""

from __future__ import annotations

import math
import os
import warnings
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from ..core.blocks import (
    BlockStream,
    Category,
    SlotLayout,
    dense_ids,
    request_index,
    segments_in_order,
    smallest_index_dtype,
)
from ..errors import BlockSizeError, EmptyTraceError, TraceFormatError
from .hashid_scan import ScannedRecords, scan_records, use_scanner
from .jsonl import INT64_END, bad_integer_list, field_number, iter_raw_records, not_an_integer

MOONCAKE_HASH_BLOCK = 512
BAILIAN_HASH_BLOCK = 16
# An aiperf mooncake_trace record without hash_ids gets blocks of its own, up to this long.
MAX_UNHASHED_TOKENS = 1 << 30

# Blocks gathered per step when cutting requests into blocks (bounds the int64 index).
_GATHER = 1 << 22


@dataclass(frozen=True, eq=False)
class HashIdTrace:
    """A hash-id trace as flat arrays: ``hash_ids[offsets[r]:offsets[r+1]]`` is request r's.

    ``timestamps`` are seconds (NaN when unknown), whatever unit the file uses.
    """

    path: str
    hash_ids: np.ndarray
    offsets: np.ndarray
    input_lengths: np.ndarray
    timestamps: np.ndarray
    sessions: np.ndarray
    lines: np.ndarray
    native_block_size: int
    # A shard set's files, and the file (index into them) each request's line is in.
    files: tuple[str, ...] = ()
    file_of: np.ndarray | None = None
    # Per-request labels by name (Qwen-Bailian's ``type``); empty when the format has none.
    categories: dict[str, Category] = field(default_factory=dict)

    @property
    def num_requests(self) -> int:
        return int(self.input_lengths.shape[0])

    def where(self, r: int) -> dict:
        """``path`` and ``line`` of request ``r``, for an error about it."""
        path = self.files[int(self.file_of[r])] if self.file_of is not None else self.path
        return {"path": path, "line": int(self.lines[r])}


def _field_int(record: dict, name: str, path: str, lineno: int, *, required: bool) -> int | None:
    value = record.get(name)
    if value is None:
        if required:
            raise TraceFormatError(f"record has no '{name}'", path=path, line=lineno)
        return None
    if type(value) is not int:
        raise TraceFormatError(f"'{name}' must be an integer, {not_an_integer(value)}",
                               path=path, line=lineno)
    if value < 0:
        raise TraceFormatError(f"'{name}' must not be negative, got {value}",
                               path=path, line=lineno)
    if value >= INT64_END:
        raise TraceFormatError(f"'{name}' {value} is too large: does not fit in 64 bits",
                               path=path, line=lineno)
    return value


def _chat_field(record: dict, name: str, default: object, path: str, lineno: int) -> int:
    value = record.get(name, default)
    if type(value) is not int:
        raise TraceFormatError(f"'{name}' must be an integer, {not_an_integer(value)}",
                               path=path, line=lineno)
    if not -INT64_END <= value < INT64_END:
        raise TraceFormatError(f"'{name}' {value} is too large: it must fit in 64 bits",
                               path=path, line=lineno)
    return value


def read_hash_id_trace(path: str | os.PathLike[str], *, flavour: str,
                       native_block_size: int | None = None,
                       on_chunk: Callable[[HashIdTrace, int], None] | None = None,
                       chunk_requests: int = 1 << 14) -> HashIdTrace:
    """Read a Mooncake (``flavour="mooncake"``) or Qwen-Bailian (``"bailian"``) JSONL trace.

    With ``on_chunk`` (a sampled analysis, docs/sampling.md) the hash ids are handed over
    every ``chunk_requests`` records, as ``on_chunk(piece, first_request)`` (``piece``: a
    HashIdTrace of those records, sessions unknown), and not kept: the trace returned holds
    every per-request array but no hash ids.
    """
    spath = os.fspath(path)
    if native_block_size is None:
        native_block_size = BAILIAN_HASH_BLOCK if flavour == "bailian" else MOONCAKE_HASH_BLOCK
    if native_block_size <= 0:
        raise BlockSizeError(f"hash block size must be positive, got {native_block_size}")

    # Ids go straight into a typed array (converted in C, 8 bytes each): never a Python
    # list of every id of a big trace, and no per-batch conversion pass.
    all_ids = array("q")
    counts = array("q")
    lengths = array("q")
    stamps = array("d")
    lines = array("q")
    files: list[str] = []
    file_starts: list[int] = []  # the first request of each file
    chat_ids: list[int] = []
    parent_ids: list[int] = []
    types: list[str] = []
    # Bound once: this loop runs per record, and a big trace has millions.
    add_count, add_length = counts.append, lengths.append
    add_line, add_stamp = lines.append, stamps.append

    def start_file(name: str) -> None:
        files.append(name)
        file_starts.append(len(counts))
    bailian = flavour == "bailian"
    aiperf = flavour == "mooncake-trace"
    if on_chunk is not None and aiperf:
        # Its blocks are numbered and its requests ordered only once the whole file is read.
        raise ValueError("an aiperf mooncake_trace is not read in chunks")
    session_ids: list[object] = []
    delays = array("d")
    fresh: list[int] = [-1]  # a sentinel, then the requests that have no hash ids
    flushed = 0

    def flush() -> None:
        # Pieces of chunk_requests records at most: the scanner hands over many more at
        # once, and a piece's blocks are what a chunked reader holds.
        nonlocal all_ids, flushed
        ids = np.frombuffer(all_ids, dtype=np.int64) if all_ids else np.zeros(0, np.int64)
        per_record = np.frombuffer(counts, dtype=np.int64)
        at = 0
        pieces = []
        while flushed < len(counts):
            end = min(flushed + chunk_requests, len(counts))
            used = int(per_record[flushed:end].sum())
            pieces.append((_piece(files[-1], ids[at:at + used], counts, lengths, stamps,
                                  lines, flushed, end, native_block_size, bailian), flushed))
            at += used
            flushed = end
        del ids, per_record  # views: none may outlive the arrays they read
        all_ids = array("q")
        for piece, first in pieces:
            on_chunk(piece, first)  # type: ignore[misc]

    def one(lineno: int, raw: bytes, rec: dict) -> None:
        # Errors name the shard at fault (the trace's own path for one file).
        spath = files[-1]
        ids = rec.get("hash_ids")
        if aiperf:
            ids = _aiperf_record(rec, ids, native_block_size, spath, lineno, fresh,
                                 len(counts))
            session_ids.append(_aiperf_session(rec, spath, lineno))
            delays.append(field_number(rec, "delay", spath, lineno))
        if type(ids) is not list:
            if ids is None:
                raise TraceFormatError("record has no 'hash_ids'", path=spath, line=lineno)
            raise TraceFormatError(f"'hash_ids' must be a list, got {type(ids).__name__}",
                                   path=spath, line=lineno)
        # Plain values pass straight through; anything else takes the checking path.
        length = rec.get("input_length")
        if type(length) is not int or not 0 <= length < INT64_END:
            length = _field_int(rec, "input_length", spath, lineno, required=False)
            if length is None:
                length = len(ids) * native_block_size
        stamp = rec.get("timestamp")
        if type(stamp) is not float and (type(stamp) is not int
                                         or not -INT64_END <= stamp < INT64_END):
            stamp = field_number(rec, "timestamp", spath, lineno)
        # array('q') takes booleans as 0 and 1: C scans of the line for the literals
        # (no Python work per id; inlined may_hold_boolean, this runs per record) and,
        # only on a hit, a C pass over the ids' types.
        if ((b"r" in raw and b"true" in raw) or (b"f" in raw and b"false" in raw)) and (
                bool in set(map(type, ids))):
            raise bad_integer_list(ids, "hash_ids", "hash id", spath, lineno)
        try:
            all_ids.extend(ids)
        except (TypeError, OverflowError):
            raise bad_integer_list(ids, "hash_ids", "hash id", spath, lineno) from None
        add_count(len(ids))
        add_length(length)
        add_line(lineno)
        add_stamp(stamp)
        if bailian:
            chat = rec.get("chat_id")
            parent = rec.get("parent_chat_id", -1)
            if type(chat) is not int or type(parent) is not int or not (
                    -INT64_END <= chat < INT64_END and -1 <= parent < INT64_END) or (
                    parent == chat):
                _check_chat_ids(rec, spath, lineno)
            turn = rec.get("turn", 1)
            if type(turn) is not int or turn < 1:
                raise TraceFormatError(f"'turn' must be a positive integer, got {turn!r}",
                                       path=spath, line=lineno)
            if type(rec.get("type", "")) is not str:
                raise TraceFormatError("'type' must be a string (text, search, image, "
                                       f"file), got {type(rec['type']).__name__}",
                                       path=spath, line=lineno)
            chat_ids.append(chat)
            parent_ids.append(parent)
            types.append(rec.get("type", ""))

    def many(run: ScannedRecords) -> None:
        # The scanner's records: what `one` does, for arrays (every check already held).
        all_ids.frombytes(_raw(run.hash_ids))
        counts.frombytes(_raw(run.counts))
        lengths.frombytes(_raw(np.where(run.lengths < 0, run.counts * native_block_size,
                                        run.lengths)))
        lines.frombytes(_raw(run.lines))
        stamps.frombytes(_raw(run.stamps))
        if bailian:
            chat_ids.extend(run.chat_ids.tolist())
            parent_ids.extend(run.parent_ids.tolist())
            types.extend(run.types)

    if not aiperf and use_scanner(spath):
        records: Iterator = scan_records(spath, flavour, on_file=start_file)
    else:
        records = iter_raw_records(spath, on_file=start_file)
    for item in records:
        if type(item) is ScannedRecords:
            many(item)
        else:
            one(*item)
        if on_chunk is not None and len(counts) - flushed >= chunk_requests:
            flush()
    if on_chunk is not None and len(counts) > flushed:
        flush()

    spath = os.fspath(path)
    if not counts:
        raise EmptyTraceError("trace holds no requests", path=spath)

    num = len(counts)
    offsets = np.zeros(num + 1, dtype=np.int64)
    np.cumsum(np.frombuffer(counts, dtype=np.int64), out=offsets[1:])
    # Views of the typed arrays, no copies: nothing is appended to them from here.
    line_array = np.frombuffer(lines, dtype=np.int64)
    if bailian:
        _check_parents(chat_ids, parent_ids, line_array, spath)
        sessions = _bailian_sessions(chat_ids, parent_ids)
    elif aiperf:
        sessions = _aiperf_sessions(session_ids)
    else:
        sessions = np.full(num, -1, dtype=np.int64)
    timestamps = np.frombuffer(stamps, dtype=np.float64)
    delay = np.frombuffer(delays, dtype=np.float64)
    timed = aiperf and not np.isnan(delay).all()
    if timed:  # in milliseconds, as written: sums of integers stay exact
        timestamps = _times_from_delays(timestamps, delay, sessions)
    if not bailian:
        # Mooncake stamps are milliseconds; every stream carries seconds (docs/times.md),
        # so no consumer has to know the format a stream came from.
        timestamps /= 1000.0
    hash_ids = np.frombuffer(all_ids, dtype=np.int64) if all_ids else np.zeros(0, np.int64)
    if len(fresh) > 1:
        hash_ids = _number_fresh(hash_ids, offsets, fresh[1:])
    if on_chunk is not None:
        offsets = np.zeros(num + 1, dtype=np.int64)
    trace = HashIdTrace(
        path=spath,
        hash_ids=hash_ids,
        offsets=offsets,
        input_lengths=np.frombuffer(lengths, dtype=np.int64),
        timestamps=timestamps,
        sessions=sessions,
        lines=line_array,
        native_block_size=native_block_size,
        files=tuple(files) if len(files) > 1 else (),
        file_of=_file_of(file_starts, num) if len(files) > 1 else None,
        categories={"type": _labels(types)} if bailian else {},
    )
    return _by_time(trace) if timed else trace


def _file_of(starts: list[int], num: int) -> np.ndarray:
    """The file each of ``num`` requests is in, given each file's first request."""
    bounds = np.asarray([*starts, num], dtype=np.int64)
    return np.repeat(np.arange(len(starts), dtype=np.int32), np.diff(bounds))


def _raw(values: np.ndarray) -> memoryview:
    """An array's bytes for ``array.frombytes`` (which takes only byte buffers): no copy."""
    return memoryview(np.ascontiguousarray(values)).cast("B")


def _aiperf_record(rec: dict, ids: object, native: int, path: str, lineno: int,
                   fresh: list[int], r: int) -> object:
    """An aiperf mooncake_trace record's hash ids. A record with none (request ``r``) gets
    blocks of its own, as aiperf sends it a prompt unrelated to any other: placeholders
    here, numbered by :func:`_number_fresh`; ``fresh`` collects such requests."""
    for key in ("text_input", "messages"):
        if rec.get(key) is not None:
            raise TraceFormatError(
                f"a '{key}' record in a trace of input_length records: a mooncake_trace "
                "file is read as hash ids (input_length) or as text (text_input, messages), "
                "not both", path=path, line=lineno)
    length = _field_int(rec, "input_length", path, lineno, required=True)
    if ids is not None:
        return ids
    if length > MAX_UNHASHED_TOKENS:
        # Its blocks would be made up here: a typo's length must not become gigabytes.
        raise TraceFormatError(
            f"'input_length' {length:,} without hash_ids is longer than any model's context "
            f"(at most {MAX_UNHASHED_TOKENS:,} tokens here)", path=path, line=lineno)
    fresh.append(r)
    return [0] * -(-length // native)



def _number_fresh(ids: np.ndarray, offsets: np.ndarray, fresh: list[int]) -> np.ndarray:
    """Ids above all of the trace's for the placeholder blocks of the ``fresh`` requests."""
    ids = ids.copy()
    base = int(ids.max()) + 1 if ids.size else 0
    for r in fresh:  # per request
        lo, hi = int(offsets[r]), int(offsets[r + 1])
        ids[lo:hi] = np.arange(base, base + hi - lo, dtype=np.int64)
        base += hi - lo
    return ids


def _aiperf_session(rec: dict, path: str, lineno: int) -> object:
    value = rec.get("session_id")
    if value is not None and type(value) not in (str, int):
        raise TraceFormatError(f"'session_id' must be a string, got {type(value).__name__}",
                               path=path, line=lineno)
    return value


def _aiperf_sessions(values: list[object]) -> np.ndarray:
    """A record with no session_id is a conversation of its own (as aiperf makes it)."""
    numbers: dict[object, int] = {}
    out = np.empty(len(values), dtype=np.int64)
    for r, value in enumerate(values):  # per request
        key = ("record", r) if value is None else (type(value).__name__, value)
        out[r] = numbers.setdefault(key, len(numbers))
    return out


def _times_from_delays(stamps: np.ndarray, delays: np.ndarray, sessions: np.ndarray
                       ) -> np.ndarray:
    """Times of an aiperf multi-turn trace: a turn with a ``timestamp`` is sent then; else
    ``delay`` after its session's previous turn (0 when it has none), the first turn of a
    session at 0. The service time between turns, unknown offline, is not counted."""
    stamps = stamps.copy()
    last: dict[int, float] = {}
    for r in range(stamps.shape[0]):  # per request
        s = int(sessions[r])
        if math.isnan(stamps[r]):
            step = 0.0 if math.isnan(delays[r]) else float(delays[r])
            stamps[r] = last.get(s, 0.0) + step
        last[s] = float(stamps[r])
    return stamps


def _by_time(trace: HashIdTrace) -> HashIdTrace:
    """Requests merged by time (sessions run concurrently, as aiperf replays them), ties in
    file order."""
    order = np.argsort(trace.timestamps, kind="stable")
    gather, offsets = segments_in_order(trace.offsets, order)
    return HashIdTrace(
        path=trace.path, hash_ids=trace.hash_ids[gather], offsets=offsets,
        input_lengths=trace.input_lengths[order], timestamps=trace.timestamps[order],
        sessions=trace.sessions[order], lines=trace.lines[order],
        native_block_size=trace.native_block_size, files=trace.files,
        file_of=None if trace.file_of is None else trace.file_of[order])


def _piece(path: str, ids: np.ndarray, counts: array, lengths: array, stamps: array,
           lines: array, lo: int, hi: int, native: int, bailian: bool) -> HashIdTrace:
    """Records ``lo`` to ``hi`` of a trace being read, as a HashIdTrace of their own."""
    def part(values: array, dtype: type) -> np.ndarray:
        return np.frombuffer(values, dtype=dtype)[lo:hi].copy()

    offsets = np.zeros(hi - lo + 1, dtype=np.int64)
    np.cumsum(part(counts, np.int64), out=offsets[1:])
    stamps_s = part(stamps, np.float64)
    if not bailian:
        stamps_s /= 1000.0
    return HashIdTrace(
        path=path,
        hash_ids=ids.copy(),
        offsets=offsets, input_lengths=part(lengths, np.int64), timestamps=stamps_s,
        sessions=np.full(hi - lo, -1, dtype=np.int64), lines=part(lines, np.int64),
        native_block_size=native)


def _labels(values: list[str]) -> Category:
    labels, codes = np.unique(np.asarray(values, dtype=str), return_inverse=True)
    return Category(codes.astype(np.int32), tuple(labels.tolist()))


def _check_chat_ids(record: dict, path: str, lineno: int) -> None:
    """The error for a record whose ``chat_id`` or ``parent_chat_id`` is not usable."""
    chat = _chat_field(record, "chat_id", None, path, lineno)
    parent = _chat_field(record, "parent_chat_id", -1, path, lineno)
    if parent < -1 or parent == chat:
        raise TraceFormatError(f"'parent_chat_id' must be -1 or the chat_id of an earlier "
                               f"request, got {parent}", path=path, line=lineno)


def _check_parents(chat_ids: list[int], parent_ids: list[int], lines: np.ndarray,
                   path: str) -> None:
    """A parent must come before its follow-up; one the trace does not hold is a warning.

    Leniency for a parent outside the trace: the published Qwen-Bailian traces are a
    window (two hours) of a service's traffic, so a conversation that began before the
    window names a parent the file does not hold. That request starts a session here."""
    chats = np.asarray(chat_ids, dtype=np.int64)
    parents = np.asarray(parent_ids, dtype=np.int64)
    known, first = np.unique(chats, return_index=True)
    at = np.minimum(np.searchsorted(known, parents), known.shape[0] - 1)
    found = known[at] == parents
    later = np.flatnonzero(found & (first[at] >= np.arange(chats.shape[0])) & (parents != -1))
    if later.size:
        r = int(later[0])
        raise TraceFormatError(
            f"'parent_chat_id' must be -1 or the chat_id of an earlier request, got "
            f"{int(parents[r])}, a chat_id first seen at line {int(lines[first[at[r]]])}",
            path=path, line=int(lines[r]))
    outside = np.flatnonzero(~found & (parents != -1))
    if outside.size:
        n = int(outside.size)
        warnings.warn(
            f"kvreuse: {path}: {n} request{'s' if n != 1 else ''} name a parent_chat_id "
            f"the trace does not hold (first at line {int(lines[outside[0]])}): each starts "
            "a conversation of its own (the trace is a window of the traffic)", stacklevel=4)


def _bailian_sessions(chat_ids: list[int], parent_ids: list[int]) -> np.ndarray:
    """A conversation is the root of the parent chain (parent -1 or unknown: a root)."""
    parent_of = dict(zip(chat_ids, parent_ids, strict=True))
    root_of: dict[int, int] = {}
    roots = []
    for chat in chat_ids:  # per request, not per block
        seen = []
        node = chat
        while node not in root_of:
            parent = parent_of.get(node, -1)
            if parent == -1 or parent not in parent_of or parent == node or node in seen:
                root_of[node] = node
                break
            seen.append(node)
            node = parent
        root = root_of[node]
        for s in seen:
            root_of[s] = root
        roots.append(root)
    return dense_ids(np.asarray(roots, dtype=np.int64))[0].astype(np.int64)


def hash_id_block_stream(trace: HashIdTrace, block_size: int) -> BlockStream:
    """Cut every request into full blocks of ``block_size`` tokens keyed by prefix."""
    nblocks, per_native = blocks_per_request(trace, block_size)
    native = trace.native_block_size
    native_ids, n_native = dense_ids(trace.hash_ids)
    total = int(nblocks.sum())
    req = request_index(nblocks)
    first_block = np.cumsum(nblocks) - nblocks
    if per_native is not None and per_native > 1:
        # Each (request, hash id) slot is a run of consecutive keys id * per_native + s:
        # written as steps and summed in place, so the keys are the one array of blocks
        # this builds (fresh memory costs page faults; an index array would double it).
        layout = slot_layout(trace, native_ids, nblocks, first_block, per_native)
        keys = _keys_of_slots(layout, total, n_native)
    elif block_size == native:
        # Request r's blocks are its first nblocks[r] ids: the ids, less the ones past a
        # request's full blocks (its partial last block, mostly), in one compress.
        layout = None
        keys = native_ids[_full_block_ids(trace.offsets, nblocks)]
    else:
        layout = None
        step = block_size // native
        start = trace.offsets[:-1] + step - 1 - first_block * step
        # Gathered a run of requests at a time: the int64 index costs a chunk, not the
        # stream.
        keys = np.empty(total, dtype=native_ids.dtype)
        ends = np.cumsum(nblocks)
        lo_req = 0
        while lo_req < nblocks.shape[0]:
            lo = int(first_block[lo_req])
            hi_req = max(int(np.searchsorted(ends, lo + _GATHER, side="right")), lo_req + 1)
            hi = int(ends[hi_req - 1])
            index = np.repeat(start[lo_req:hi_req], nblocks[lo_req:hi_req])
            index += np.arange(lo * step, hi * step, step, dtype=np.int64)
            keys[lo:hi] = native_ids[index]
            lo_req = hi_req
    return BlockStream(
        keys=keys,
        request=req,
        block_size=block_size,
        prompt_tokens=trace.input_lengths,
        timestamps=trace.timestamps,
        sessions=trace.sessions,
        layout=layout,
        categories=dict(trace.categories),
    )


def _full_block_ids(offsets: np.ndarray, nblocks: np.ndarray) -> np.ndarray:
    """Mask of the ids (``offsets`` by request) a stream uses: request r's first
    ``nblocks[r]`` (at most all of them, as :func:`blocks_per_request` checked); the full
    blocks' ids at the native block size, the slots' ids below it."""
    keep = np.ones(int(offsets[-1]), dtype=bool)
    extra = np.diff(offsets) - nblocks
    one = np.flatnonzero(extra == 1)
    keep[offsets[one + 1] - 1] = False
    more = np.flatnonzero(extra > 1)  # requests whose length stops short of its ids
    if more.size:
        drop = np.repeat(offsets[more] + nblocks[more], extra[more])
        drop += np.arange(drop.shape[0]) - np.repeat(np.cumsum(extra[more]) - extra[more],
                                                     extra[more])
        keep[drop] = False
    return keep


def blocks_per_request(trace: HashIdTrace, block_size: int) -> tuple[np.ndarray, int | None]:
    """Each request's full blocks, and the blocks per native id (None when a block spans
    several): the block size and every request's hash ids checked."""
    native = trace.native_block_size
    if block_size <= 0:
        raise BlockSizeError(f"block size must be positive, got {block_size}")
    if native % block_size == 0:
        per_native = native // block_size
    elif block_size % native == 0:
        per_native = None
    else:
        raise BlockSizeError(
            f"block size {block_size} does not fit the trace's native hash block of {native} "
            f"tokens: it must divide it or be a multiple of it (try --block-size "
            f"{math.gcd(block_size, native)} or --hash-block-size)", path=trace.path)

    nblocks = trace.input_lengths // block_size
    have = np.diff(trace.offsets)
    # Full blocks need hash ids up to the last one they touch: check per request.
    if per_native is not None:
        needed = -(-nblocks // per_native)
    else:
        needed = nblocks * (block_size // native)
    short = np.flatnonzero(needed > have)
    if short.size:
        r = int(short[0])
        raise TraceFormatError(
            f"input_length {int(trace.input_lengths[r])} needs {int(needed[r])} hash_ids of "
            f"{native} tokens, the record has {int(have[r])}", **trace.where(r))
    return nblocks, per_native


def _keys_of_slots(layout: SlotLayout, total: int, n_native: int) -> np.ndarray:
    """Block keys from the slots, which tile the stream in order."""
    per = layout.per_slot
    dtype = smallest_index_dtype(np.zeros(0, np.int64), n_native * per).dtype
    keys = np.ones(total, dtype=dtype)
    if total:
        first = layout.key.astype(dtype) * dtype.type(per)
        keys[0] = first[0]
        keys[layout.start[1:]] = first[1:] - (first[:-1] + layout.count[:-1] - 1)
        np.cumsum(keys, out=keys)
    return keys


def slot_layout(trace: HashIdTrace, native_ids: np.ndarray, nblocks: np.ndarray,
                first_block: np.ndarray, per_native: int) -> SlotLayout:
    """The hash ids each request's full blocks use, one slot per (request, hash id).

    Request r uses its first ``ceil(nblocks[r] / per)`` ids, every slot full but the
    last; the slots tile the stream in order, so their starts are the running sum of
    their counts: one compress of the ids and no index arithmetic per slot."""
    del first_block  # the running sum of the counts gives the starts
    slots = -(-nblocks // per_native)
    n_slots = int(slots.sum())
    count = np.full(n_slots, per_native, dtype=np.int32)
    ends = np.cumsum(slots)
    used = np.flatnonzero(slots)
    count[ends[used] - 1] = (nblocks[used] - (slots[used] - 1) * per_native).astype(np.int32)
    start = np.zeros(n_slots, dtype=np.int64)
    np.cumsum(count[:-1], out=start[1:])
    total = int(nblocks.sum())
    return SlotLayout(
        key=native_ids[_full_block_ids(trace.offsets, slots)],
        # Small dtypes: a slot costs ~10 bytes, a few per cent of its blocks' arrays.
        start=smallest_index_dtype(start, total),
        count=count,
        request=request_index(slots),
        per_slot=per_native,
    )
