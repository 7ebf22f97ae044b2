"""Content hash of a trace file: what the stream cache, the plugin's memo and the baselines
key on."""

from __future__ import annotations

import hashlib
import os

from ..errors import TraceReadError

# Large reads: SHA-256 runs in hardware on current CPUs, so the read loop is the cost.
_CHUNK = 1 << 22


def content_sha256(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of the file's bytes, read in chunks (constant memory)."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                digest.update(chunk)
    except OSError as exc:
        raise TraceReadError(f"cannot read the trace: {exc.strerror or exc}",
                             path=path) from None
    return digest.hexdigest()
