"""ReuseAnalysis: the figures of one trace, computed from its BlockStream."""

from __future__ import annotations

import math
import os
import time
from functools import cached_property

import numpy as np

from .blocks import BlockStream
from .intervals import interval_ccdf, reuse_intervals, tokens_beyond
from .trace import load_block_stream


class ReuseAnalysis:
    """Reuse figures of one BlockStream; fractions are shares of all full-block tokens.

    When the trace has no full block every fraction is undefined: NaN here, ``None`` in
    :meth:`to_dict`.
    """

    def __init__(self, stream: BlockStream, *, params: dict | None = None,
                 timings: dict | None = None) -> None:
        self.stream = stream
        self.params = dict(params or {})
        self.timings = dict(timings or {})
        start = time.perf_counter()
        self.intervals, self.unique_blocks = reuse_intervals(stream)
        self.timings["intervals_s"] = time.perf_counter() - start

    @property
    def block_size(self) -> int:
        return self.stream.block_size

    @property
    def num_requests(self) -> int:
        return self.stream.num_requests

    @property
    def num_blocks(self) -> int:
        return self.stream.num_blocks

    @property
    def total_tokens(self) -> int:
        return self.stream.total_tokens

    @property
    def reuse_count(self) -> int:
        return int(self.intervals.size)

    def _share(self, tokens: int) -> float:
        return tokens / self.total_tokens if self.total_tokens else math.nan

    @property
    def reused_fraction(self) -> float:
        """Share of tokens seen before, in an earlier request."""
        return self._share(self.reuse_count * self.block_size)

    @cached_property
    def _interval_stats(self) -> tuple[int | None, int | None, int | None]:
        iv = self.intervals
        if iv.size == 0:
            return None, None, None
        # The original script's median: sorted[n // 2], kept for comparable results.
        return int(iv[0]), int(iv[iv.size // 2]), int(iv[-1])

    @property
    def interval_min(self) -> int | None:
        return self._interval_stats[0]

    @property
    def interval_median(self) -> int | None:
        return self._interval_stats[1]

    @property
    def interval_max(self) -> int | None:
        return self._interval_stats[2]

    def offloadable_fraction(self, gpu_cache_tokens: float) -> float:
        """Share of all tokens seen before but not within the last ``gpu_cache_tokens``."""
        return self._share(tokens_beyond(self.intervals, gpu_cache_tokens, self.block_size))

    def ccdf(self) -> tuple[np.ndarray, np.ndarray]:
        """``(x, F(x))``: at every distinct interval x, the share of tokens reused > x apart."""
        return interval_ccdf(self.intervals, self.block_size, self.total_tokens)

    def to_dict(self) -> dict:
        """JSON-ready figures, deterministic for the same inputs."""
        return {
            "params": {k: self.params[k] for k in sorted(self.params)},
            "num_requests": self.num_requests,
            "num_blocks": self.num_blocks,
            "unique_blocks": self.unique_blocks,
            "total_tokens": self.total_tokens,
            "block_size": self.block_size,
            "reuse_count": self.reuse_count,
            "reused_fraction": _finite(self.reused_fraction),
            "interval_min": self.interval_min,
            "interval_median": self.interval_median,
            "interval_max": self.interval_max,
        }

    def __repr__(self) -> str:
        return (f"ReuseAnalysis(requests={self.num_requests}, blocks={self.num_blocks}, "
                f"block_size={self.block_size}, reuses={self.reuse_count})")


def _finite(x: float) -> float | None:
    return None if math.isnan(x) else x


def analyze(path: str | os.PathLike[str], *, block_size: int = 64, format: str = "auto",
            hash_block_size: int | None = None, tokenizer: str = "deepseek-v3",
            prompt: str = "raw", cache_dir: str | os.PathLike[str] | None = None,
            use_cache: bool = True, progress: bool | None = None) -> ReuseAnalysis:
    """Load the trace at ``path`` and compute its reuse figures.

    Text traces are tokenized with ``tokenizer`` ('deepseek-v3' built in, a local
    directory, or a cached Hugging Face name; never the network) in ``prompt`` mode
    ('raw', 'chat' or 'per-message'); the tokenized stream is cached under ``cache_dir``
    (default: the user cache directory) unless ``use_cache`` is false. ``progress``:
    True/False, or None for a bar only on a terminal outside CI.
    """
    start = time.perf_counter()
    stream = load_block_stream(path, block_size=block_size, format=format,
                               hash_block_size=hash_block_size, tokenizer=tokenizer,
                               prompt=prompt, cache_dir=cache_dir, use_cache=use_cache,
                               progress=progress)
    load_s = time.perf_counter() - start
    params = {"path": os.fspath(path), "block_size": block_size, **stream.meta}
    return ReuseAnalysis(stream, params=params, timings={"load_s": load_s})
