"""``analyze()``: from a trace file to its ReuseAnalysis (loaders, then the core)."""

from __future__ import annotations

import os
import time

from .core.analysis import ReuseAnalysis, warmup_requests
from .loaders.source import open_source
from .loaders.stream import check_positive, load_block_stream


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
    ``path`` may be a pipe (``/dev/stdin``, ``<(zcat t.jsonl.gz)``): it is read once; the
    result's ``content_sha256`` is then the sha256 of the bytes read (None when a regular
    file's hash was not needed).

    ``warmup``: fraction of the requests (the first ``floor(warmup * n)``) that fill the
    cache but are not counted; fractions are then shares of the counted requests' tokens
    (see :class:`ReuseAnalysis`). Default 0: the whole trace.
    """
    warmup_requests(warmup, 1)  # reject a bad fraction before reading the trace
    check_positive("block size", block_size)  # and a bad size before draining a pipe
    if hash_block_size is not None:
        check_positive("hash block size", hash_block_size)
    start = time.perf_counter()
    # One source for detection, parse and hash: a pipe is read once, into a temporary file.
    with open_source(path, known_sha256=known_sha256) as source:
        stream = load_block_stream(source, block_size=block_size, format=format,
                                   hash_block_size=hash_block_size, tokenizer=tokenizer,
                                   prompt=prompt, cache_dir=cache_dir, use_cache=use_cache,
                                   progress=progress)
    load_s = time.perf_counter() - start
    params = {"path": os.fspath(path), "block_size": block_size, **stream.meta}
    if warmup:
        params["warmup"] = float(warmup)
    analysis = ReuseAnalysis(stream, params=params, timings={"load_s": load_s},
                             warmup=warmup)
    # The hash of the bytes analysed when it was computed (always for a pipe, whose
    # bytes cannot be read again); None for a regular file nobody hashed.
    analysis.content_sha256 = source.known_sha256
    return analysis
