"""Spatial sampling of a block stream (SHARDS, Waldspurger et al., FAST'15).

A block key is kept iff a fixed 64-bit hash of it falls below ``threshold = rate * 2**64``:
every touch of a kept key stays, and the choice is the same on every run and platform (the
hash is integer arithmetic on uint64, no seed, no Python ``hash``). Pure numpy on key
arrays, no trace format here: any reader (one process, a Dask partition) can filter its
blocks with :func:`key_hash` and :func:`keep_below`, and :class:`SampleBuilder` gathers the
kept blocks of a stream read chunk by chunk, counting the others.

With a key budget (``max_keys``, the fixed-size variant, as SHARDS-adj) the threshold only
ever goes down: a key kept at the end was below every earlier threshold, so it was never
dropped, and the final sample is exactly the fixed-rate sample at the final rate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .blocks import BlockStream, dense_ids, smallest_index_dtype

_TWO64 = float(2**64)
# splitmix64's increment and finalizer constants (Steele, Lea, Flood 2014).
_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
# Independent hash sub-samples the error estimate splits the kept keys into.
GROUPS = 10


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer over uint64 (wrapping): a bijection, so distinct inputs never
    share a hash, and nearby inputs (ids 0, 1, 2, ...) land far apart."""
    return _mix64_in_place(np.asarray(x).astype(np.uint64, copy=True))


def _mix64_in_place(z: np.ndarray) -> np.ndarray:
    # One temporary for the shifts, reused: the hash runs over every kept chunk's keys.
    shifted = np.empty_like(z)
    with np.errstate(over="ignore"):
        for shift, factor in ((30, _M1), (27, _M2), (31, None)):
            np.right_shift(z, np.uint64(shift), out=shifted)
            z ^= shifted
            if factor is not None:
                z *= factor
    return z


def key_hash(ids: np.ndarray, sub: np.ndarray | int = 0) -> np.ndarray:
    """The sampling hash of block keys given as an original 64-bit id (a Mooncake hash id,
    the first 8 bytes of a text block's digest) and a sub-block index (analysis block
    ``s`` of native id ``ids``; 0 when a block is a whole native id)."""
    ids = np.asarray(ids).astype(np.int64, copy=False).view(np.uint64)
    sub = np.asarray(sub).astype(np.uint64)
    with np.errstate(over="ignore"):
        return mix64(mix64(ids) + (sub + np.uint64(1)) * _GAMMA)


def key_hash_table(ids: np.ndarray, per: int) -> np.ndarray:
    """``key_hash(ids[i], s)`` for every id and sub-block ``s < per``, as rows: the id's own
    mix made once per id, not once per sub-block."""
    inner = mix64(np.asarray(ids).astype(np.int64, copy=False).view(np.uint64))
    with np.errstate(over="ignore"):
        steps = (np.arange(per, dtype=np.uint64) + np.uint64(1)) * _GAMMA
        return _mix64_in_place(inner[:, None] + steps[None, :])


def rate_threshold(rate: float) -> np.uint64:
    """The hash threshold of a sampling rate in (0, 1]: keys hashing below it are kept."""
    if not 0.0 < rate <= 1.0:
        raise ValueError(f"sampling rate must be in (0, 1], got {rate!r}")
    if rate >= 1.0:
        return np.uint64(2**64 - 1)
    return np.uint64(min(int(rate * _TWO64), 2**64 - 1))


def threshold_rate(threshold: np.uint64) -> float:
    return 1.0 if int(threshold) >= 2**64 - 1 else int(threshold) / _TWO64


def keep_below(hashes: np.ndarray, threshold: np.uint64) -> np.ndarray:
    """Mask of the blocks whose key is kept. At rate 1 every key is, the maximal hash too."""
    if int(threshold) >= 2**64 - 1:
        return np.ones(hashes.shape, dtype=bool)
    return hashes < threshold


def hash_group(hashes: np.ndarray, groups: int = GROUPS) -> np.ndarray:
    """Sub-sample of each kept key, from its hash's low bits (independent of the
    threshold test, which reads the high ones)."""
    return (hashes % np.uint64(groups)).astype(np.int8)


@dataclass(frozen=True, eq=False)
class Sample:
    """What a sampled stream stands for: the rate its keys were kept at, and the exact
    counts of the whole stream (read once, counted, not stored)."""

    rate: float
    max_keys: int | None
    kept_keys: int
    kept_blocks: int
    blocks_per_request: np.ndarray
    groups: np.ndarray  # hash sub-sample of every kept block

    @property
    def total_blocks(self) -> int:
        return int(self.blocks_per_request.sum())


class SampleBuilder:
    """Gathers the kept blocks of a stream read chunk by chunk (requests in order).

    ``add(hashes, request, blocks_per_request)`` per chunk: the hashes of the chunk's
    blocks in stream order, their request numbers within the chunk, and every request's
    full-block count. Only kept blocks are stored: memory is the kept touches, not the stream.
    """

    def __init__(self, rate: float = 1.0, max_keys: int | None = None) -> None:
        self.threshold = rate_threshold(rate)
        self.max_keys = max_keys
        self._hashes: list[np.ndarray] = []
        self._positions: list[np.ndarray] = []
        self._requests: list[np.ndarray] = []
        self._counts: list[np.ndarray] = []
        self._blocks = 0
        self._num_requests = 0
        self._pending = 0

    def add(self, hashes: np.ndarray, request: np.ndarray,
            blocks_per_request: np.ndarray) -> None:
        keep = np.flatnonzero(keep_below(hashes, self.threshold))
        self.add_kept(hashes[keep], keep, np.asarray(request)[keep], blocks_per_request)

    def add_kept(self, hashes: np.ndarray, positions: np.ndarray, request: np.ndarray,
                 blocks_per_request: np.ndarray) -> None:
        """A chunk already filtered at :attr:`threshold` (positions within the chunk, in
        stream order): for a reader that can skip the blocks of dropped keys unbuilt."""
        counts = np.asarray(blocks_per_request, dtype=np.int64)
        self._hashes.append(hashes)
        self._positions.append(positions.astype(np.int64) + self._blocks)
        self._requests.append(request.astype(np.int64) + self._num_requests)
        self._counts.append(counts)
        self._num_requests += int(counts.shape[0])
        self._blocks += int(counts.sum())
        self._pending += int(hashes.shape[0])
        # Compacting once the new blocks reach the key budget keeps the work amortised
        # (each compaction costs about what was added since) and memory at about twice
        # the budget's touches.
        if self.max_keys is not None and self._pending >= self.max_keys:
            self._compact()

    def _compact(self) -> None:
        hashes = np.concatenate(self._hashes)
        uniq = np.unique(hashes)
        self._pending = 0
        if uniq.shape[0] <= self.max_keys:  # type: ignore[operator]
            self._hashes = [hashes]
            self._positions = [np.concatenate(self._positions)]
            self._requests = [np.concatenate(self._requests)]
            return
        self.threshold = uniq[self.max_keys]  # the budget's keys hash strictly below it
        keep = hashes < self.threshold
        self._hashes = [hashes[keep]]
        self._positions = [np.concatenate(self._positions)[keep]]
        self._requests = [np.concatenate(self._requests)[keep]]

    def stream(self, block_size: int, prompt_tokens: np.ndarray, timestamps: np.ndarray,
               sessions: np.ndarray, meta: dict | None = None) -> tuple[BlockStream, Sample]:
        """The kept blocks as a BlockStream (``positions``: their place in the whole
        stream) and the :class:`Sample` it stands for."""
        if self.max_keys is not None:
            self._compact()
        hashes = np.concatenate(self._hashes) if self._hashes else np.zeros(0, np.uint64)
        positions = (np.concatenate(self._positions) if self._positions
                     else np.zeros(0, np.int64))
        requests = (np.concatenate(self._requests) if self._requests
                    else np.zeros(0, np.int64))
        counts = np.concatenate(self._counts) if self._counts else np.zeros(0, np.int64)
        keys, kept_keys = dense_ids(hashes.view(np.int64))
        num_requests = int(prompt_tokens.shape[0])
        stream = BlockStream(
            keys=keys,
            request=smallest_index_dtype(requests, max(num_requests, 1)),
            block_size=block_size, prompt_tokens=prompt_tokens, timestamps=timestamps,
            sessions=sessions, meta=dict(meta or {}),
            positions=smallest_index_dtype(positions, max(self._blocks, 1)))
        sample = Sample(rate=threshold_rate(self.threshold), max_keys=self.max_keys,
                        kept_keys=kept_keys, kept_blocks=int(keys.shape[0]),
                        blocks_per_request=counts, groups=hash_group(hashes))
        return stream, sample


def sample_stream(stream: BlockStream, hashes: np.ndarray, rate: float = 1.0,
                  max_keys: int | None = None) -> tuple[BlockStream, Sample]:
    """The sample of a stream already in memory, given its blocks' key hashes."""
    builder = SampleBuilder(rate, max_keys)
    counts = np.diff(stream.request_starts)
    builder.add(hashes, stream.request, counts)
    return builder.stream(stream.block_size, stream.prompt_tokens, stream.timestamps,
                          stream.sessions, stream.meta)


def sub_sample(stream: BlockStream, sample: Sample, group: int) -> tuple[BlockStream, Sample]:
    """The kept blocks of one hash sub-sample: a sample at ``rate / GROUPS``."""
    keep = sample.groups == group
    # Renumbered: a BlockStream's keys stay below a few times its blocks (its contract),
    # which a tenth of the blocks under the sample's numbering would not.
    keys, n_keys = dense_ids(stream.keys[keep])
    sub = BlockStream(keys=keys, request=stream.request[keep], block_size=stream.block_size,
                      prompt_tokens=stream.prompt_tokens, timestamps=stream.timestamps,
                      sessions=stream.sessions, meta=stream.meta,
                      positions=stream.positions[keep] if stream.positions is not None
                      else np.flatnonzero(keep))
    return sub, Sample(rate=sample.rate / GROUPS, max_keys=None, kept_keys=n_keys,
                       kept_blocks=int(keys.shape[0]),
                       blocks_per_request=sample.blocks_per_request,
                       groups=np.zeros(keys.shape[0], dtype=np.int8))
