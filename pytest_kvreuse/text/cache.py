"""On-disk cache of tokenized BlockStreams, keyed by what decides them: the trace's
content, the tokenizer's files, the prompt mode and the block size."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np

from ..atomic import atomic_open
from ..core.blocks import BlockStream

# Bump when the stream a given input produces changes (key scheme, join rules, ...).
CACHE_VERSION = 3  # 2: the header holds a digest of the arrays; 3: aiperf stamps in seconds
_ARRAYS = ("keys", "request", "prompt_tokens", "timestamps", "sessions")


def default_cache_dir() -> Path:
    """``$KVREUSE_CACHE_DIR``, else the user cache directory of the platform."""
    env = os.environ.get("KVREUSE_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "pytest-kvreuse"


def cache_key(**parts: object) -> str:
    text = json.dumps({"version": CACHE_VERSION, **parts}, sort_keys=True)
    return hashlib.blake2b(text.encode(), digest_size=20).hexdigest()


def cache_file(cache_dir: str | os.PathLike[str] | None, key: str) -> Path:
    return Path(cache_dir if cache_dir is not None else default_cache_dir()) / f"{key}.npz"


def _arrays_digest(arrays: dict[str, np.ndarray]) -> str:
    """Digest of every array's dtype, shape and bytes: an entry whose arrays are not the
    ones written (damaged, truncated, swapped) never matches its header."""
    h = hashlib.blake2b(digest_size=20)
    for name in _ARRAYS:
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}:{a.dtype.str}:{a.shape}".encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def read_cached(path: Path) -> BlockStream | None:
    """The stream stored at ``path``; None when missing, unreadable or not exactly what
    was written (then it is rebuilt and rewritten)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {name: z[name] for name in _ARRAYS}
            header = json.loads(bytes(z["header"]).decode("utf-8"))
        if header.get("digest") != _arrays_digest(arrays):
            return None
        stream = BlockStream(block_size=int(header["block_size"]), meta=dict(header["meta"]),
                             **arrays)
        n = stream.prompt_tokens.shape[0]
        consistent = (stream.block_size > 0
                      and stream.request.shape == stream.keys.shape
                      and stream.timestamps.shape == (n,) and stream.sessions.shape == (n,)
                      and int((stream.prompt_tokens // stream.block_size).sum())
                      == stream.keys.shape[0])
        return stream if consistent else None
    except Exception:  # any damage at all: a cache miss, never an error
        return None


def write_cached(path: Path, stream: BlockStream) -> None:
    arrays = {name: getattr(stream, name) for name in _ARRAYS}
    header = json.dumps({"block_size": stream.block_size, "meta": stream.meta,
                         "digest": _arrays_digest(arrays)})
    # Streamed into the temporary file: never a second copy of the arrays in memory.
    with atomic_open(path) as fh:
        np.savez(fh, header=np.frombuffer(header.encode("utf-8"), dtype=np.uint8), **arrays)
