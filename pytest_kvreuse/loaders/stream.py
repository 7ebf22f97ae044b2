"""From a trace file to a BlockStream: format dispatch and parameter checks."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from ..core.blocks import BlockStream, request_index, segments_in_order
from ..errors import BlockSizeError, KvReuseError, TokenizerError
from ..text import blocks as text_blocks
from ..text.cache import cache_file, cache_key, read_cached, write_cached
from ..text.tokenizer import DEFAULT_TOKENIZER, check_alias_for_prompt, tokenizer_identity
from .hashids import hash_id_block_stream, read_hash_id_trace
from .partitions import PartMapper, check_jobs, in_processes, partitioned_stream
from .registry import FORMAT_NAMES, HASH_ID_FORMATS, TEXT_FORMATS, TOKEN_FORMATS, detect_format
from .source import TraceSource, open_source
from .weka import read_weka_trace

_TEXT_OPTIONS = frozenset({"tokenizer", "prompt", "cache_dir", "use_cache", "progress",
                           "known_sha256", "jobs", "mapper"})


def check_positive(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise BlockSizeError(f"{name} must be a positive integer, got {value!r}")
    if value <= 0:
        raise BlockSizeError(f"{name} must be a positive integer, got {value}")
    return value


def load_block_stream(path: str | os.PathLike[str], *, block_size: int = 64,
                      format: str = "auto", hash_block_size: int | None = None,
                      **text_options: object) -> BlockStream:
    """Read ``path`` and cut it into full blocks of ``block_size`` tokens.

    Text options: ``tokenizer`` (default 'deepseek-v3'), ``prompt`` ('raw', 'chat' or
    'per-message'), ``cache_dir``, ``use_cache`` (default True), ``progress`` (None: on
    for a terminal outside CI), ``known_sha256`` (the file's content hash when the caller
    has just computed it: the cache key then costs no second read of the file), ``jobs``
    (tokenize in that many processes, same stream; default 1), ``mapper`` (tokenize the
    partitions elsewhere: a Dask cluster's, see loaders/partitions.py).

    ``path`` may be a pipe (``/dev/stdin``, ``-`` for standard input, a FIFO): it is read
    once, into a temporary file (see :func:`~pytest_kvreuse.loaders.source.open_source`),
    or a TraceSource that function gave; a compressed file (gzip, xz, bz2, zstd), read as
    its decompressed content; a directory or a glob, one trace of its files in name order
    (docs/formats.md).
    """
    unknown = set(text_options) - _TEXT_OPTIONS
    if unknown:
        raise TypeError(f"unexpected option(s): {', '.join(sorted(unknown))}")
    check_positive("block size", block_size)  # before a pipe is drained into a spool
    if hash_block_size is not None:
        check_positive("hash block size", hash_block_size)
    known = text_options.pop("known_sha256", None)
    with open_source(path, known_sha256=known) as source:  # type: ignore[arg-type]
        return _load(source, block_size, format, hash_block_size, text_options)


def _load(source: TraceSource, block_size: int, format: str, hash_block_size: int | None,
          text_options: dict) -> BlockStream:
    """Detection, parse and cache key all read ``source.path``, the same bytes; the
    stream names ``source.name``."""
    path = source.path
    fmt = detect_format(path) if format == "auto" else format
    if fmt not in FORMAT_NAMES:
        raise KvReuseError(f"unknown format {fmt!r} (known: auto, {', '.join(FORMAT_NAMES)})",
                           path=path)
    if fmt == "weka":
        trace, categories = read_weka_trace(path, native_block_size=hash_block_size)
        stream = hash_id_block_stream(trace, block_size)
        stream.categories.update(categories)
        meta = {"format": fmt, "hash_block_size": trace.native_block_size}
    elif fmt in HASH_ID_FORMATS:
        trace = read_hash_id_trace(path, flavour=fmt, native_block_size=hash_block_size)
        stream = hash_id_block_stream(trace, block_size)
        meta = {"format": fmt, "hash_block_size": trace.native_block_size}
    else:
        stream = _cached_token_stream(source, fmt, block_size, **text_options)
        meta = {"format": fmt}
    stream.meta.update(meta, path=str(Path(source.name)))
    return stream


def _cached_token_stream(source: TraceSource, fmt: str, block_size: int, *,
                         tokenizer: str | None = None, prompt: str = "raw",
                         cache_dir: str | os.PathLike[str] | None = None,
                         use_cache: bool = True, progress: bool | None = None,
                         jobs: int = 1, mapper: PartMapper | None = None) -> BlockStream:
    """Text and token-id traces: tokenizing dominates, so the stream is cached on disk."""
    path = source.path
    tokenizer = DEFAULT_TOKENIZER if tokenizer is None else tokenizer
    if not isinstance(tokenizer, str) or not tokenizer:
        raise TokenizerError(f"tokenizer must be a non-empty name, got {tokenizer!r}")
    text_blocks.check_prompt_mode(prompt)
    check_alias_for_prompt(tokenizer, prompt)
    check_jobs(jobs)
    text = fmt in TEXT_FORMATS
    if not text and fmt not in TOKEN_FORMATS:  # pragma: no cover - FORMATS is checked
        raise KvReuseError(f"format {fmt!r} is not readable", path=path)
    entry = None
    if use_cache:
        parts: dict = {"file": source.sha256(), "format": fmt,
                       "block_size": block_size}
        if text:
            parts.update(tokenizer=tokenizer_identity(tokenizer), prompt=prompt)
        entry = cache_file(cache_dir, cache_key(**parts))
        stream = read_cached(entry)
        if stream is not None:
            return stream
    if jobs > 1 or mapper is not None:
        options = {"block_size": block_size, "tokenizer": tokenizer, "prompt": prompt}
        stream = partitioned_stream(
            path, fmt, options, jobs=jobs, mapper=mapper or in_processes,
            meta={"tokenizer": tokenizer, "prompt": prompt} if text else {})
    elif text:
        stream = text_blocks.text_block_stream(path, fmt, block_size=block_size,
                                               tokenizer=tokenizer, prompt=prompt,
                                               progress=progress)
    else:
        stream = text_blocks.token_block_stream(path, block_size=block_size, progress=progress)
    if fmt == "mooncake-trace-text":
        stream = _by_time(stream)
    if entry is not None:
        try:
            write_cached(entry, stream)
        except KvReuseError as exc:  # a read-only cache must not stop the analysis
            warnings.warn(f"kvreuse: cache not written: {exc.one_line()}", stacklevel=3)
    return stream


def _by_time(stream: BlockStream) -> BlockStream:
    """An aiperf mooncake_trace text stream's requests merged by time (aiperf replays a
    multi-turn trace's sessions concurrently), ties in file order. Keys name prefixes,
    not positions: reordering requests leaves every key valid."""
    stamps = stream.timestamps
    if not (stamps != 0).any():
        # No record had a timestamp or a delay: the times are unknown, not all 0.
        stamps[:] = np.nan
        return stream
    if np.isnan(stamps).any() or bool((np.diff(stamps) >= 0).all()):
        return stream
    order = np.argsort(stamps, kind="stable")
    gather, offsets = segments_in_order(stream.request_starts, order)
    return BlockStream(keys=stream.keys[gather], request=request_index(np.diff(offsets)),
                       block_size=stream.block_size,
                       prompt_tokens=stream.prompt_tokens[order], timestamps=stamps[order],
                       sessions=stream.sessions[order], meta=stream.meta)
