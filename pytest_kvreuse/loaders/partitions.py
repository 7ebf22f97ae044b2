"""A text or token-id trace in partitions of whole requests, tokenized apart and merged.

A block's key chains only inside its request, so consecutive runs of records (aiperf
entries, JSONL lines) can be tokenized anywhere, in any order: the merge gives every
block its global position (the partitions' sizes, summed in order) and the dense keys of
a single pass (:func:`~pytest_kvreuse.text.blocks.merge_parts`). ``--jobs N`` maps the
partitions over N local processes; a Dask cluster (pytest_kvreuse/cluster.py) over its
workers.

Each partition parses the records before its own (not tokenizing them): JSON parsing is a
small share of tokenizing, and every error is the one a single pass reports first.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from ..core.blocks import BlockStream
from ..errors import KvReuseError
from ..text.blocks import StreamPart, merge_parts, text_stream_part, token_stream_part
from .aiperf import iter_aiperf_entries
from .jsonl import open_trace, read_error
from .registry import TEXT_FORMATS

# Partitions per job: request sizes vary (later turns re-send longer histories), so a few
# partitions a job keep the jobs busy until the end.
PARTS_PER_JOB = 2

# (path, format, record ranges, options) -> the partitions, in order.
PartMapper = Callable[[str, str, Sequence[tuple[int, int]], dict], list[StreamPart]]


def check_jobs(jobs: object) -> int:
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise KvReuseError(f"jobs must be a positive integer, got {jobs!r}")
    return jobs


def record_sizes(path: str, fmt: str) -> np.ndarray:
    """A size per record (bytes of a JSONL line, characters of an aiperf entry's text):
    what tokenizing it costs, roughly, to cut partitions of equal work."""
    if fmt == "aiperf":
        # The parse errors are those the partitions would raise first; the shape is
        # checked there, so this only weighs what it finds.
        return np.array([_entry_chars(entry) for _, _, entry in iter_aiperf_entries(path)],
                        dtype=np.int64)
    sizes = []
    with open_trace(path) as fh:
        try:
            for raw in fh:
                if not raw.isspace():  # as the JSONL readers skip blank lines
                    sizes.append(len(raw))
        except OSError as exc:
            raise read_error(exc, path) from None
    return np.asarray(sizes, dtype=np.int64)


def _entry_chars(entry: object) -> int:
    total = 1
    payloads = entry.get("payloads") if isinstance(entry, dict) else None
    for payload in payloads if isinstance(payloads, list) else ():
        messages = payload.get("messages") if isinstance(payload, dict) else None
        for m in messages if isinstance(messages, list) else ():
            content = m.get("content") if isinstance(m, dict) else None
            total += len(content) if isinstance(content, str) else 1
    return total


def record_ranges(sizes: np.ndarray, parts: int) -> list[tuple[int, int]]:
    """Up to ``parts`` consecutive ``(lo, hi)`` record ranges of about equal size."""
    n = int(sizes.shape[0])
    if n == 0:
        return [(0, 0)]
    cum = np.cumsum(sizes)
    targets = cum[-1] * np.arange(1, parts) / parts
    cuts = np.unique(np.concatenate([[0], np.searchsorted(cum, targets, side="right"), [n]]))
    return [(int(a), int(b)) for a, b in zip(cuts[:-1], cuts[1:], strict=True) if b > a]


def load_part(path: str, fmt: str, records: tuple[int, int], options: dict) -> StreamPart:
    """One partition's blocks (run in a worker: a process of ``--jobs`` or of Dask)."""
    if fmt in TEXT_FORMATS:
        return text_stream_part(path, fmt, block_size=options["block_size"],
                                tokenizer=options["tokenizer"], prompt=options["prompt"],
                                progress=False, records=records)
    return token_stream_part(path, block_size=options["block_size"], progress=False,
                             records=records)


def partitioned_stream(path: str, fmt: str, options: dict, *, parts: int,
                       mapper: PartMapper, meta: dict) -> BlockStream:
    """The stream of ``path`` from ``parts`` partitions that ``mapper`` tokenizes; equal to
    the single-pass stream, number for number."""
    ranges = record_ranges(record_sizes(path, fmt), parts)
    done = mapper(path, fmt, ranges, options)
    if not any(p.tokens.size for p in done):
        # The single-pass reader's error for a trace of no requests.
        if fmt in TEXT_FORMATS:
            text_stream_part(path, fmt, block_size=options["block_size"],
                             tokenizer=options["tokenizer"], prompt=options["prompt"],
                             progress=False)
        else:
            token_stream_part(path, block_size=options["block_size"], progress=False)
    return merge_parts(done, options["block_size"], meta)


def process_mapper(jobs: int) -> PartMapper:
    """Partitions over ``jobs`` fresh processes (spawned: a fork would copy the
    tokenizer's threads mid-flight; a script calling it needs the usual
    ``if __name__ == "__main__":`` guard of multiprocessing)."""
    def run(path: str, fmt: str, ranges: Sequence[tuple[int, int]], options: dict
            ) -> list[StreamPart]:
        context = multiprocessing.get_context("spawn")
        threads = max(1, (os.cpu_count() or 1) // jobs)
        with ProcessPoolExecutor(min(jobs, len(ranges)), mp_context=context,
                                 initializer=_share_the_cores, initargs=(threads,)) as pool:
            futures = [pool.submit(load_part, path, fmt, r, options) for r in ranges]
            # In order: the first partition that fails names the error a single pass
            # would name first.
            return [f.result() for f in futures]
    return run


def _share_the_cores(threads: int) -> None:
    # The tokenizer's thread pool takes every core by default: N processes would run N
    # times as many threads as cores. Read once, at the pool's first use.
    os.environ.setdefault("RAYON_NUM_THREADS", str(threads))
