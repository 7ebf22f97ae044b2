"""On-disk cache of tokenized BlockStreams, keyed by what decides them: the trace's
content, the tokenizer's files, the prompt mode and the block size."""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
from pathlib import Path

import numpy as np

from .atomic import atomic_write_bytes
from .blocks import BlockStream

# Bump when the stream a given input produces changes (key scheme, join rules, ...).
CACHE_VERSION = 1
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


def read_cached(path: Path) -> BlockStream | None:
    """The stream stored at ``path``; None when missing or unreadable (then rebuilt)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {name: z[name] for name in _ARRAYS}
            header = json.loads(bytes(z["header"]).decode("utf-8"))
        stream = BlockStream(block_size=int(header["block_size"]), meta=dict(header["meta"]),
                             **arrays)
        n = stream.prompt_tokens.shape[0]
        consistent = (stream.request.shape == stream.keys.shape
                      and stream.timestamps.shape == (n,) and stream.sessions.shape == (n,)
                      and int((stream.prompt_tokens // stream.block_size).sum())
                      == stream.keys.shape[0])
        return stream if consistent else None
    except Exception:  # any damage at all: a cache miss, never an error
        return None


def write_cached(path: Path, stream: BlockStream) -> None:
    header = json.dumps({"block_size": stream.block_size, "meta": stream.meta})
    buf = io.BytesIO()
    np.savez(buf, header=np.frombuffer(header.encode("utf-8"), dtype=np.uint8),
             **{name: getattr(stream, name) for name in _ARRAYS})
    atomic_write_bytes(path, buf.getvalue())
