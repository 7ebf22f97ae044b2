"""Content hash of a trace file: how a baseline tells a new export from the same bytes."""

from __future__ import annotations

import hashlib
import os

from .errors import TraceReadError

_CHUNK = 1 << 20


def content_sha256(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of the file's bytes, read in 1 MiB chunks (constant memory)."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                digest.update(chunk)
    except OSError as exc:
        raise TraceReadError(f"cannot read the trace: {exc.strerror or exc}",
                             path=path) from None
    return digest.hexdigest()
