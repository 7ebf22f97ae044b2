"""Mooncake and Qwen-Bailian records read straight from the bytes (the ``[fast]`` extra).

The per-line reader (:func:`.jsonl.iter_raw_records`) builds a Python dict and a Python int
per hash id with orjson; on a big trace that is most of the analysis. With numba installed
(``pip install "pytest-kvreuse[fast]"``) a compiled scanner reads whole chunks of the file
and writes ids, lengths, stamps and lines into typed arrays, never making a Python object
per record.

The scanner takes only the plain shape of these records: one object per line, keys without
escapes, values that are numbers (no exponent), plain ASCII strings, and the one list of
non-negative integers under ``hash_ids``. At the first line it does not take (anything
else: a literal, a nested value, a duplicate key, a value the reader would refuse) it
stops, and that line goes through the per-line reader, which accepts it or names what is
wrong exactly as without the extra. So the scanner never changes a figure or a message;
it only skips Python work for the lines it is sure of. Without numba every line goes
through the per-line reader.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np

from .jsonl import BOM, open_trace, parse_line, read_error
from .shards import trace_files

# Bytes read per scanner call (cut back to the last newline): the typed outputs of one call
# are a few times this, so memory stays bounded whatever the trace's size.
CHUNK_BYTES = 1 << 24

# Below this many bytes the per-line reader is done before numba would be loaded.
SCAN_FROM_BYTES = 1 << 24

# Key numbers of the scanner; 0 is a key the flavour does not read (its value is skipped).
_KEYS = {
    "mooncake": (b"timestamp", b"input_length", b"hash_ids"),
    "bailian": (b"timestamp", b"input_length", b"hash_ids", b"chat_id", b"parent_chat_id",
                b"turn", b"type"),
}


@dataclass(frozen=True)
class ScannedRecords:
    """A run of consecutive records the scanner read, as arrays (one entry per record
    except ``hash_ids``: every record's ids, one after the other)."""

    hash_ids: np.ndarray
    counts: np.ndarray
    lengths: np.ndarray  # -1: no input_length (the reader derives it from the ids)
    stamps: np.ndarray
    lines: np.ndarray
    chat_ids: np.ndarray
    parent_ids: np.ndarray
    types: list[str]


def use_scanner(path: str | os.PathLike[str]) -> bool:
    """Whether to read ``path`` with the scanner: numba importable, and a trace big enough
    to repay loading it (~1 s: numba's import and its compiled code). ``KVREUSE_SCAN=1``
    uses it for any size, ``KVREUSE_SCAN=0`` never."""
    choice = os.environ.get("KVREUSE_SCAN", "")
    if choice == "0":
        return False
    if importlib.util.find_spec("numba") is None:
        return False
    if choice == "1":
        return True
    size = 0
    for name in trace_files(path):
        try:
            size += os.stat(name).st_size
        except OSError:
            return False  # the reader names the error
    return size >= SCAN_FROM_BYTES


def _key_table(flavour: str) -> tuple[np.ndarray, np.ndarray]:
    names = _KEYS[flavour]
    table = np.zeros((len(names), max(map(len, names))), dtype=np.uint8)
    for k, name in enumerate(names):
        table[k, :len(name)] = np.frombuffer(name, dtype=np.uint8)
    return table, np.array([len(n) for n in names], dtype=np.int64)


def _scanned(buf: bytes | bytearray, arrays: tuple[np.ndarray, ...], n_rec: int, n_ids: int
             ) -> ScannedRecords:
    """Views of the scanner's outputs: valid until its next call (the reader copies them
    out first), so no chunk is copied twice."""
    ids, counts, lengths, stamps, lines, chats, parents, lo, hi = arrays
    types = [""] * n_rec
    if n_rec and hi[:n_rec].any():
        types = [buf[a:b].decode("ascii") for a, b in zip(lo[:n_rec].tolist(),
                                                          hi[:n_rec].tolist(), strict=True)]
    return ScannedRecords(ids[:n_ids], counts[:n_rec], lengths[:n_rec], stamps[:n_rec],
                          lines[:n_rec], chats[:n_rec], parents[:n_rec], types)


def _outputs(size: int) -> tuple[np.ndarray, ...]:
    """The scanner's output arrays for ``size`` bytes of lines: room for every id (each
    takes two bytes at least) and every record (15 bytes at least: {"hash_ids":[]})."""
    records = size // 15 + 1
    return (np.empty(size // 2 + 1, np.int64), np.empty(records, np.int64),
            np.empty(records, np.int64), np.empty(records, np.float64),
            *(np.empty(records, np.int64) for _ in range(5)))


def scan_records(path: str | os.PathLike[str], flavour: str,
                 on_file: Callable[[str], None] | None = None,
                 chunk_bytes: int | None = None
                 ) -> Iterator[ScannedRecords | tuple[int, bytes, dict]]:
    """The records of a Mooncake or Qwen-Bailian trace (a file or a shard set), in order:
    runs the scanner read as :class:`ScannedRecords`, the lines it left to the per-line
    reader as ``(line_number, line, record)`` (as :func:`.jsonl.iter_raw_records`)."""
    # numba loads here, with the first trace read: never at import, and never without it.
    from .scan_kernel import scan

    chunk_bytes = chunk_bytes or CHUNK_BYTES
    keys, key_lengths = _key_table(flavour)
    # One set of outputs per half of a chunk, for every chunk: fresh memory costs a page
    # fault per page.
    halves = (_outputs(chunk_bytes), _outputs(chunk_bytes))
    # Its first call loads (or compiles) the machine code: made here, on one line, so that
    # it is never made from two threads at once.
    scan(np.frombuffer(bytearray(b"{}\n"), dtype=np.uint8), 0, 3, 1, keys, key_lengths,
         *halves[0])
    # The scanner holds no GIL: a second thread scans the back half of every chunk while
    # this one scans the front half (and hands its records on).
    with ThreadPoolExecutor(1) if (os.cpu_count() or 1) > 1 else nullcontext() as helper:
        for name in trace_files(path):
            if on_file is not None:
                on_file(name)
            with open_trace(name) as fh:
                yield from _file_records(fh, name, scan, keys, key_lengths, halves,
                                         2 * chunk_bytes, helper)


def _file_records(fh: BinaryIO, name: str, kernel: Callable[..., Any], keys: np.ndarray,
                  key_lengths: np.ndarray, halves: tuple[tuple[np.ndarray, ...], ...],
                  chunk_bytes: int, helper: ThreadPoolExecutor | None
                  ) -> Iterator[ScannedRecords | tuple[int, bytes, dict]]:
    # Read into one buffer, an unfinished last line moved to its front: no chunk copied.
    buffer = bytearray(chunk_bytes + 1)  # + the sentinel newline of the last line
    held = 0
    lineno = 1
    while True:
        if held == len(buffer) - 1:  # a line longer than the buffer
            buffer.extend(bytes(len(buffer)))
        try:
            with memoryview(buffer) as view:
                got = fh.readinto(view[held:len(buffer) - 1])
        except OSError as exc:
            raise read_error(exc, name) from None
        size = held + got
        if got:
            cut = last = buffer.rfind(b"\n", 0, size) + 1
            if cut == 0:
                held = size
                continue
        elif not buffer[:size].strip():
            return
        else:
            cut = last = size
            if buffer[size - 1] != 10:
                buffer[size] = 10  # the scanner's sentinel; the last line is the same
                cut += 1
        start = 0
        if lineno == 1 and buffer.startswith(BOM):
            # A first line saved with a byte-order mark: the per-line reader's to take (a
            # mark on a blank line is an empty document to it, not a blank line).
            start = buffer.index(b"\n") + 1
            raw = bytes(buffer[len(BOM):min(start, last)])
            yield 1, raw, parse_line(raw, name, 1)
            lineno = 2
        mid = buffer.find(b"\n", (start + cut) // 2, cut) + 1 if helper is not None else 0
        # Room in each half's outputs (no bounds checks in the scanner): a line longer than
        # a chunk makes the buffer, and so a half, longer than the outputs were made for.
        need = max(mid - start, cut - mid) if 0 < mid < cut else cut - start
        if halves[0][1].shape[0] < need // 15 + 1:
            halves = (_outputs(need), _outputs(need))
        if 0 < mid < cut:
            back = helper.submit(kernel, np.frombuffer(buffer, dtype=np.uint8), mid, cut, 0,
                                 keys, key_lengths, *halves[1])
            lineno = yield from _scan_block(kernel, buffer, mid, mid, start, lineno, keys,
                                            key_lengths, name, halves[0])
            lineno = yield from _scan_block(kernel, buffer, cut, last, mid, lineno, keys,
                                            key_lengths, name, halves[1], back.result())
        else:
            lineno = yield from _scan_block(kernel, buffer, cut, last, start, lineno, keys,
                                            key_lengths, name, halves[0])
        if not got:
            return
        held = size - cut
        buffer[:held] = buffer[cut:size]


def _scan_block(kernel: Callable[..., Any], data: bytearray, end: int, last: int, pos: int,
                lineno: int, keys: np.ndarray, key_lengths: np.ndarray, path: str,
                arrays: tuple[np.ndarray, ...], ahead: tuple[int, int, int, int] | None = None
                ) -> Generator[ScannedRecords | tuple[int, bytes, dict], None, int]:
    """The records of ``data[pos:end]`` (whole lines, the last ending with a newline: past
    ``last`` when the file's last line had none); returns the number of the line after
    them. ``arrays``: the scanner's outputs, room for ``data[pos:end]`` (see
    :func:`_outputs`). ``ahead``: the scanner's first call, already made (by the helper
    thread) with line numbers counted from 0 at ``pos``."""
    buf = np.frombuffer(data, dtype=np.uint8)
    while pos < end:
        if ahead is not None:
            pos, lines, n_rec, n_ids = ahead
            arrays[4][:n_rec] += lineno
            lineno += lines
            ahead = None
        else:
            pos, lineno, n_rec, n_ids = kernel(buf, pos, end, lineno, keys, key_lengths,
                                               *arrays)
        if n_rec:
            yield _scanned(data, arrays, n_rec, n_ids)
        if pos >= end:
            break
        # The line the scanner left: the per-line reader takes it or says what is wrong.
        stop = data.index(b"\n", pos) + 1
        raw = bytes(data[pos:min(stop, last)])
        if not raw.isspace():
            yield lineno, raw, parse_line(raw, path, lineno)
        pos = stop
        lineno += 1
    return lineno
