"""Plain reference implementations of analysis.md, written to be obviously right.

Dicts and Python loops, one block at a time: slow on purpose, the oracle the vectorized
engine is tested (and benchmarked) against.
"""

from __future__ import annotations

import json


def read_records(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def hash_id_blocks(records: list[dict], block_size: int, native: int) -> list[tuple[object, int]]:
    """Section 1: the stream as (key, request) pairs, keys as analysis.md writes them."""
    stream = []
    for r, rec in enumerate(records):
        ids = rec["hash_ids"]
        length = rec.get("input_length", len(ids) * native)
        for j in range(length // block_size):
            if native % block_size == 0:
                key = (ids[j * block_size // native], (j * block_size % native) // block_size)
            else:
                key = ids[(j + 1) * block_size // native - 1]
            stream.append((key, r))
    return stream


def reuse_intervals(stream: list[tuple[object, int]], block_size: int) -> list[int]:
    """Section 2: for consecutive occurrences a < b of a key in different requests,
    pos(b) - pos(a) - B tokens."""
    last_seen: dict[object, tuple[int, int]] = {}
    out = []
    for i, (key, req) in enumerate(stream):
        if key in last_seen:
            j, prev_req = last_seen[key]
            if prev_req != req:
                out.append(i * block_size - j * block_size - block_size)
        last_seen[key] = (i, req)
    return sorted(out)


def offloadable_fraction(intervals: list[int], block_size: int, total_tokens: int,
                         gpu_cache_tokens: float) -> float:
    return sum(1 for x in intervals if x > gpu_cache_tokens) * block_size / total_tokens


def summary(records: list[dict], block_size: int, native: int) -> dict:
    stream = hash_id_blocks(records, block_size, native)
    intervals = reuse_intervals(stream, block_size)
    return {
        "num_requests": len(records),
        "num_blocks": len(stream),
        "unique_blocks": len({k for k, _ in stream}),
        "total_tokens": len(stream) * block_size,
        "intervals": intervals,
    }
