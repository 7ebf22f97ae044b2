"""Exact analysis on a Dask cluster (the extra ``[dask]``): docs/dask.md.

The work is spread in two stages, each one task per partition:

1. **Blocks.** A text trace is read once by the client and tokenized and keyed on the
   workers, in partitions of whole requests (loaders/partitions.py: a key chains only
   inside its request). A hash-id trace has nothing to tokenize: the client reads it as a
   single run does.
2. **Reuse intervals.** A distributed sort of ``(key, position)``: every partition sends
   each of its blocks to the bucket ``hash(key) mod P``, so all occurrences of a key land
   in one bucket, where consecutive occurrences give the intervals and the reuse pairs.
   A bucket returns only those (its sorted intervals, its number of keys, the requests of
   its pairs); the client merges the sorted runs.

The LRU, OPT and policy figures need the whole touch stream in order: the client gathers
the block keys (:func:`client_stream`, the one place a sampled stream would plug in) and
runs the exact single-process passes on them. Every figure is the single-process figure,
to the last digit.
"""

from __future__ import annotations

import operator
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from .core.blocks import BlockStream
from .core.intervals import ReusePairs, interval_dtype
from .errors import KvReuseError
from .loaders.partitions import IN_FLIGHT_PER_JOB, load_part

EXTRA_HINT = 'pip install "pytest-kvreuse[dask]"'
# An unreachable scheduler fails in this many seconds, not after Dask's own minutes.
CONNECT_TIMEOUT_S = 10.0
ENV = "KVREUSE_DASK"
LRU_SOURCE = "exact, from the block keys gathered to the client"


class ClusterError(KvReuseError):
    """The Dask extra is missing, or the scheduler cannot be reached or used."""


def resolve(dask: object) -> object:
    """``dask`` as given, or ``$KVREUSE_DASK`` when it is None; '' or False: no cluster."""
    if dask is None:
        dask = os.environ.get(ENV) or None
    return None if dask in ("", False) else dask


def connect(dask: object) -> tuple[Any, bool]:
    """A ``distributed.Client`` for ``dask`` (an address or a Client) and whether this
    module opened it (and so must close it)."""
    try:
        import distributed
    except ImportError:
        raise ClusterError(f"--dask needs the Dask extra: {EXTRA_HINT}") from None
    if isinstance(dask, distributed.Client):
        return dask, False
    if not isinstance(dask, str) or not dask.strip():
        raise ClusterError(f"dask must be a scheduler address or a distributed.Client, "
                           f"got {dask!r}")
    try:
        client = distributed.Client(dask, timeout=CONNECT_TIMEOUT_S,
                                    set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise ClusterError(f"cannot reach the Dask scheduler at {dask}: {_reason(exc)}"
                           ) from None
    try:
        # A scheduler with no worker would take the tasks and never run them.
        client.wait_for_workers(1, timeout=CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError) as exc:
        client.close()
        raise ClusterError(f"the Dask scheduler at {dask} has no worker: {_reason(exc)}"
                           ) from None
    return client, True


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@contextmanager
def session(dask: object) -> Iterator[Any]:
    """A client for ``dask`` for the duration of the block, closed after if opened here."""
    client, owned = connect(dask)
    try:
        yield client
    finally:
        if owned:
            client.close()


def worker_count(client: Any) -> int:
    return max(1, sum(client.nthreads().values()))


class ClusterMapper:
    """Tokenizes the partitions of a text trace on the cluster and keeps each one's
    future: the interval sort reads the keys where they were made."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.futures: list[Any] = []
        self.sizes: list[int] = []

    def __call__(self, path: str, fmt: str, partitions: Iterator[list], options: dict,
                 jobs: int) -> list:
        from distributed import wait

        for part in partitions:
            self.futures.append(self.client.submit(load_part, path, fmt, part, options,
                                                   pure=False))
            pending = [f for f in self.futures if not f.done()]
            if len(pending) > IN_FLIGHT_PER_JOB * jobs:  # the text held stays bounded
                wait(pending, return_when="FIRST_COMPLETED")
        parts = client_stream(self.client, self.futures)
        self.sizes = [p.num_blocks for p in parts]
        return parts


def client_stream(client: Any, futures: list) -> list:
    """The partitions' blocks, gathered to the client for the figures that need the whole
    touch stream in order (LRU, OPT, policies). A sampled stream plugs in here."""
    return client.gather(futures)


# -- the distributed sort ------------------------------------------------------------------

def _part_words(part: Any) -> np.ndarray:
    return part.digest_words()


def _key_words(keys: np.ndarray) -> np.ndarray:
    """Dense integer keys as the ``(n, 2)`` words a bucket compares (high word 0)."""
    words = np.zeros((keys.shape[0], 2), dtype=np.uint64)
    words[:, 1] = keys
    return words


def split_by_key(words: np.ndarray, offset: int, buckets: int
                 ) -> list[tuple[np.ndarray, np.ndarray]]:
    """A partition's blocks, as ``(words, global positions)`` per bucket of the key."""
    target = (words[:, 0] ^ words[:, 1]) % np.uint64(buckets)
    order = np.argsort(target, kind="stable")
    bounds = np.searchsorted(target[order], np.arange(buckets + 1, dtype=np.uint64))
    positions = np.arange(offset, offset + words.shape[0], dtype=np.int64)
    return [(words[order[a:b]], positions[order[a:b]])
            for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def bucket_reuse(pieces: Sequence[tuple[np.ndarray, np.ndarray]],
                 request_starts: np.ndarray, block_size: int, counted_from: int
                 ) -> tuple[np.ndarray, int, np.ndarray, np.ndarray]:
    """One bucket's share of the interval pass (core/intervals.py, same definitions):
    sorted cross-request intervals in tokens whose second occurrence is counted, the
    number of distinct keys, and the requests ``(first, second)`` of every pair of
    consecutive occurrences."""
    words = np.concatenate([w for w, _ in pieces]) if pieces else np.zeros((0, 2), np.uint64)
    positions = np.concatenate([p for _, p in pieces]) if pieces else np.zeros(0, np.int64)
    order = np.lexsort((positions, words[:, 1], words[:, 0]))
    words, positions = words[order], positions[order]
    same = np.flatnonzero((words[1:, 0] == words[:-1, 0]) & (words[1:, 1] == words[:-1, 1]))
    prev, nxt = positions[same], positions[same + 1]
    first = np.searchsorted(request_starts, prev, side="right") - 1
    second = np.searchsorted(request_starts, nxt, side="right") - 1
    keep = (first != second) & (nxt >= counted_from)
    intervals = np.sort((nxt[keep] - prev[keep] - 1) * block_size)
    return intervals, int(positions.shape[0] - same.shape[0]), first, second


def distributed_reuse(client: Any, stream: BlockStream, key_futures: list,
                      sizes: Sequence[int], counted_from: int
                      ) -> tuple[np.ndarray, int, ReusePairs]:
    """The interval pass of ``stream`` on the cluster, from its keys in partitions
    (``key_futures``, of ``sizes`` blocks each, in stream order): what
    :func:`~pytest_kvreuse.core.intervals.reuse_intervals_and_pairs` returns."""
    buckets = max(1, len(key_futures))
    offsets = np.concatenate([[0], np.cumsum(sizes)])  # global positions: a prefix sum
    [starts] = client.scatter([stream.request_starts], broadcast=True)
    splits = [client.submit(split_by_key, words, int(offsets[i]), buckets, pure=False)
              for i, words in enumerate(key_futures)]
    pieces = [[client.submit(operator.getitem, s, q) for s in splits] for q in range(buckets)]
    results = client.gather([
        client.submit(bucket_reuse, piece, starts, stream.block_size, counted_from,
                      pure=False) for piece in pieces])
    intervals = np.sort(np.concatenate([r[0] for r in results]))
    request_dtype = stream.request.dtype
    pairs = ReusePairs(np.concatenate([r[2] for r in results]).astype(request_dtype),
                       np.concatenate([r[3] for r in results]).astype(request_dtype))
    return (intervals.astype(interval_dtype(stream), copy=False),
            sum(r[1] for r in results), pairs)


def keys_on_cluster(client: Any, stream: BlockStream, mapper: ClusterMapper | None
                    ) -> tuple[list, list[int]]:
    """The stream's keys in partitions on the workers: where the tokenizing left them, or
    scattered from the client (a hash-id trace, a stream from the cache)."""
    if mapper is not None and mapper.futures:
        return [client.submit(_part_words, f) for f in mapper.futures], mapper.sizes
    parts = max(1, min(worker_count(client), stream.num_blocks // (1 << 16) or 1))
    bounds = np.linspace(0, stream.num_blocks, parts + 1).astype(np.int64)
    chunks = [_key_words(stream.keys[a:b]) for a, b in zip(bounds[:-1], bounds[1:],
                                                            strict=True)]
    return client.scatter(chunks), [c.shape[0] for c in chunks]


def cluster_info(client: Any) -> dict:
    """What the output says of the cluster run (docs/dask.md)."""
    return {"scheduler": client.scheduler.address, "workers": len(client.nthreads()),
            "lru": LRU_SOURCE}
