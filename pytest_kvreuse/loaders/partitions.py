"""A text or token-id trace in partitions of whole requests, tokenized apart and merged.

A block's key chains only inside its request, so consecutive runs of requests can be
tokenized anywhere, in any order: the merge gives every block its global position (the
partitions' sizes, summed in order) and the dense keys of a single pass
(:func:`~pytest_kvreuse.text.blocks.merge_parts`). The trace is read once, here, by the
single-pass reader (every check, every error message as it is); the partitions go to N
local processes (``--jobs N``) or to a Dask cluster's workers (pytest_kvreuse/cluster.py)
as they are cut, a few at a time, so the text held in flight stays bounded.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

from ..core.blocks import BlockStream
from ..errors import KvReuseError
from ..text.blocks import StreamPart, merge_parts, text_stream_part, token_stream_part
from .registry import TEXT_FORMATS
from .text import iter_text_requests, iter_token_requests

# Partitions per job: request sizes vary (later turns re-send longer histories), so a few
# partitions a job keep the jobs busy until the end.
PARTS_PER_JOB = 2
# A partition holds at most this many bytes of the trace: what is in flight stays small
# whatever the trace's size.
MAX_PART_BYTES = 64 << 20
# Partitions sent but not done, per job, before the reader waits for one.
IN_FLIGHT_PER_JOB = 2

# (path, format, partitions of requests, options, jobs) -> the parts, in order.
PartMapper = Callable[[str, str, Iterator[list], dict, int], list[StreamPart]]


def check_jobs(jobs: object) -> int:
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise KvReuseError(f"jobs must be a positive integer, got {jobs!r}")
    return jobs


def iter_partitions(path: str, fmt: str, parts: int) -> Iterator[list]:
    """The trace's requests in consecutive runs of about ``1 / parts`` of its bytes each
    (at most MAX_PART_BYTES), read once."""
    try:
        size = os.path.getsize(path)
    except OSError:
        size = 0
    target = max(1, min(size // parts + 1, MAX_PART_BYTES))
    read = cut = 0

    def count(n: int) -> None:
        nonlocal read
        read += n

    requests = (iter_text_requests(path, fmt, count) if fmt in TEXT_FORMATS
                else iter_token_requests(path, count))
    batch: list = []
    for req in requests:
        batch.append(req)
        if read - cut >= target:
            yield batch
            batch, cut = [], read
    if batch:
        yield batch


def load_part(path: str, fmt: str, requests: list, options: dict) -> StreamPart:
    """One partition's blocks (run in a worker: a process of ``--jobs`` or of Dask)."""
    if fmt in TEXT_FORMATS:
        return text_stream_part(requests, path, block_size=options["block_size"],
                                tokenizer=options["tokenizer"], prompt=options["prompt"])
    return token_stream_part(requests, block_size=options["block_size"])


def partitioned_stream(path: str, fmt: str, options: dict, *, jobs: int,
                       mapper: PartMapper, meta: dict) -> BlockStream:
    """The stream of ``path`` tokenized in partitions by ``mapper``; equal to the
    single-pass stream, number for number."""
    parts = mapper(path, fmt, iter_partitions(path, fmt, jobs * PARTS_PER_JOB), options, jobs)
    return merge_parts(parts, options["block_size"], meta)


def in_process(path: str, fmt: str, partitions: Iterator[list], options: dict,
               jobs: int) -> list[StreamPart]:
    """The partitions tokenized one after the other, here (what the workers run)."""
    return [load_part(path, fmt, p, options) for p in partitions]


def in_processes(path: str, fmt: str, partitions: Iterator[list], options: dict,
                 jobs: int) -> list[StreamPart]:
    """The partitions over ``jobs`` fresh processes (spawned: a fork would copy the
    tokenizer's threads mid-flight; a script calling it needs the usual
    ``if __name__ == "__main__":`` guard of multiprocessing)."""
    context = multiprocessing.get_context("spawn")
    threads = max(1, (os.cpu_count() or 1) // jobs)
    pool = ProcessPoolExecutor(jobs, mp_context=context, initializer=_share_the_cores,
                               initargs=(threads,))
    try:
        futures = []
        for part in partitions:
            futures.append(pool.submit(load_part, path, fmt, part, options))
            pending = [f for f in futures if not f.done()]
            if len(pending) > IN_FLIGHT_PER_JOB * jobs:
                wait(pending, return_when=FIRST_COMPLETED)
        # In order: the first partition that fails names the error a single pass names.
        return [f.result() for f in futures]
    finally:
        pool.shutdown(cancel_futures=True)


def _share_the_cores(threads: int) -> None:
    # The tokenizer's thread pool takes every core by default: N processes would run N
    # times as many threads as cores. Read once, at the pool's first use.
    os.environ.setdefault("RAYON_NUM_THREADS", str(threads))

