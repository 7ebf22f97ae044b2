"""``analyze()``: from a trace file to its ReuseAnalysis (loaders, then the core)."""

from __future__ import annotations

import os
import time

from .core.analysis import ReuseAnalysis, warmup_requests
from .loaders.stream import load_block_stream


def analyze(path: str | os.PathLike[str], *, block_size: int = 64, format: str = "auto",
            hash_block_size: int | None = None, tokenizer: str = "deepseek-v3",
            prompt: str = "raw", cache_dir: str | os.PathLike[str] | None = None,
            use_cache: bool = True, progress: bool | None = None,
            warmup: float = 0.0, known_sha256: str | None = None) -> ReuseAnalysis:
    """Load the trace at ``path`` and compute its reuse figures.

    Text traces are tokenized with ``tokenizer`` ('deepseek-v3' built in, a local
    directory, or a cached Hugging Face name; never the network) in ``prompt`` mode
    ('raw', 'chat' or 'per-message'); the tokenized stream is cached under ``cache_dir``
    (default: the user cache directory) unless ``use_cache`` is false. ``progress``:
    True/False, or None for a bar only on a terminal outside CI. ``known_sha256``: the
    file's sha256 when the caller has it already (saves the cache key a read of the file).

    ``warmup``: fraction of the requests (the first ``floor(warmup * n)``) that fill the
    cache but are not counted; fractions are then shares of the counted requests' tokens
    (see :class:`ReuseAnalysis`). Default 0: the whole trace.
    """
    warmup_requests(warmup, 1)  # reject a bad fraction before reading the trace
    start = time.perf_counter()
    stream = load_block_stream(path, block_size=block_size, format=format,
                               hash_block_size=hash_block_size, tokenizer=tokenizer,
                               prompt=prompt, cache_dir=cache_dir, use_cache=use_cache,
                               progress=progress, known_sha256=known_sha256)
    load_s = time.perf_counter() - start
    params = {"path": os.fspath(path), "block_size": block_size, **stream.meta}
    if warmup:
        params["warmup"] = float(warmup)
    return ReuseAnalysis(stream, params=params, timings={"load_s": load_s}, warmup=warmup)
