"""From a trace file to a sampled BlockStream (docs/sampling.md), read once.

Hash-id traces are read a chunk of requests at a time: each chunk is cut into blocks as
the exact path cuts it (same checks, same messages), every block's original key (native
hash id, sub-block) is hashed, and only the blocks of kept keys are stored; the others are
counted. Text and token traces are tokenized (and cached) as usual and sampled after:
tokenizing dominates there, and the cached stream is what is read.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from ..core.blocks import BlockStream, request_index
from ..core.sampling import (
    Sample,
    SampleBuilder,
    keep_below,
    key_hash,
    key_hash_table,
    sample_stream,
)
from .hashids import HashIdTrace, blocks_per_request, read_hash_id_trace, slot_layout
from .registry import detect_format
from .source import TraceSource
from .stream import load_block_stream

# Read a chunk of requests at a time (memory bounded by the sample): formats whose requests
# need no whole-file pass (an aiperf mooncake_trace is numbered and ordered at the end, a
# Weka directory merged by time); the others are built whole, then sampled.
_CHUNKED = ("mooncake", "bailian")
# Requests read per chunk: a chunk's blocks are built and dropped (a few MB at B = 64).
CHUNK_REQUESTS = 1 << 14


def _distinct(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct ids of a chunk and where each id is among them (np.unique's
    ``return_inverse``). Ids spanning a range not much wider than the chunk (Mooncake
    numbers its hash ids 0, 1, 2, ...) take a lookup table, no sort."""
    if ids.size:
        low, high = int(ids.min()), int(ids.max())
        if high - low < 4 * ids.size:
            used = np.zeros(high - low + 1, dtype=bool)
            used[ids - low] = True
            rank = np.cumsum(used, dtype=np.int64) - 1
            return np.flatnonzero(used) + low, rank[ids - low]
    return np.unique(ids, return_inverse=True)


def _add_chunk(builder: SampleBuilder, piece: HashIdTrace, block_size: int) -> None:
    """The kept blocks of one chunk of requests, found from its hash ids: the blocks of a
    slot whose sub-blocks are all dropped are never built."""
    nblocks, per = blocks_per_request(piece, block_size)
    first_block = np.cumsum(nblocks) - nblocks
    threshold = builder.threshold
    if per is None:
        # A block spans several native ids and is keyed by its last: one id per block.
        step = block_size // piece.native_block_size
        index = np.repeat(piece.offsets[:-1] + step - 1 - first_block * step, nblocks)
        index += np.arange(0, int(nblocks.sum()) * step, step, dtype=np.int64)
        hashes = key_hash(piece.hash_ids[index])
        keep = np.flatnonzero(keep_below(hashes, threshold))
        builder.add_kept(hashes[keep], keep, request_index(nblocks)[keep], nblocks)
        return
    layout = slot_layout(piece, piece.hash_ids, nblocks, first_block, per)
    distinct, which = _distinct(layout.key)
    # Every (distinct id, sub-block) of the chunk hashed once: a table, not a pass per block.
    table = key_hash_table(distinct, per)
    kept = keep_below(table, threshold)
    slots = np.flatnonzero(kept.any(axis=1)[which])
    rows = which[slots]
    mask = kept[rows] & (np.arange(per) < layout.count[slots, None])
    slot, sub = np.nonzero(mask)
    builder.add_kept(table[rows[slot], sub],
                     layout.start[slots[slot]].astype(np.int64) + sub,
                     layout.request[slots[slot]], nblocks)


def load_sampled_stream(source: TraceSource, *, block_size: int, format: str = "auto",
                        hash_block_size: int | None = None, rate: float = 1.0,
                        max_keys: int | None = None, **text_options: object
                        ) -> tuple[BlockStream, Sample]:
    """The sampled stream of ``source`` and the :class:`Sample` it stands for."""
    fmt = detect_format(source.path) if format == "auto" else format
    if fmt not in _CHUNKED:
        full = load_block_stream(source, block_size=block_size, format=format,
                                 hash_block_size=hash_block_size, **text_options)
        # A text stream's keys are dense ids of its blocks' 128-bit digests, numbered in
        # digest order: the same ids for the same trace and parameters on every machine.
        return sample_stream(full, key_hash(full.keys), rate, max_keys)
    builder = SampleBuilder(rate, max_keys)
    # A chunk's sampling (numpy, mostly without the GIL) runs in a second thread while the
    # next chunk is read; one at a time and in order, so the sample is the serial one.
    pending: list[Future] = []

    def settle() -> None:
        if pending:
            pending.pop().result()  # a chunk's error, raised in the order of the chunks

    def add(piece: HashIdTrace, first_request: int) -> None:
        settle()
        pending.append(worker.submit(_add_chunk, builder, piece, block_size))

    with ThreadPoolExecutor(1) as worker:
        try:
            trace = read_hash_id_trace(source.path, flavour=fmt,
                                       native_block_size=hash_block_size, on_chunk=add,
                                       chunk_requests=CHUNK_REQUESTS)
        except BaseException:
            settle()  # an earlier chunk's error comes first, as it would read serially
            raise
        settle()
    meta = {"format": fmt, "hash_block_size": trace.native_block_size,
            "path": str(source.name)}
    return builder.stream(block_size, trace.input_lengths, trace.timestamps,
                          trace.sessions, meta)
