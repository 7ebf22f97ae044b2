"""From a trace file to a BlockStream: format dispatch and parameter checks."""

from __future__ import annotations

import os
from pathlib import Path

from .blocks import BlockStream
from .errors import BlockSizeError, KvReuseError
from .formats import FORMATS, HASH_ID_FORMATS, detect_format
from .formats.hashids import hash_id_block_stream, read_hash_id_trace


def check_positive(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise BlockSizeError(f"{name} must be a positive integer, got {value!r}")
    if value <= 0:
        raise BlockSizeError(f"{name} must be a positive integer, got {value}")
    return value


def load_block_stream(path: str | os.PathLike[str], *, block_size: int = 64,
                      format: str = "auto", hash_block_size: int | None = None,
                      **text_options: object) -> BlockStream:
    """Read ``path`` and cut it into full blocks of ``block_size`` tokens."""
    check_positive("block size", block_size)
    if hash_block_size is not None:
        check_positive("hash block size", hash_block_size)
    fmt = detect_format(path) if format == "auto" else format
    if fmt not in FORMATS:
        raise KvReuseError(f"unknown format {fmt!r} (known: auto, {', '.join(FORMATS)})",
                           path=path)
    if fmt in HASH_ID_FORMATS:
        trace = read_hash_id_trace(path, flavour=fmt, native_block_size=hash_block_size)
        stream = hash_id_block_stream(trace, block_size)
        meta = {"format": fmt, "hash_block_size": trace.native_block_size}
    else:  # pragma: no cover - text formats register themselves in FORMATS
        raise KvReuseError(f"format {fmt!r} is not readable yet", path=path)
    stream.meta.update(meta, path=str(Path(path)))
    return stream
