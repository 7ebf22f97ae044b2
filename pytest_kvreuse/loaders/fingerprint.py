"""Content hash of a trace file: what the stream cache, the plugin's memo and the baselines
key on."""

from __future__ import annotations

import hashlib
import os
import stat

from ..errors import TraceReadError

# Large reads: SHA-256 runs in hardware on current CPUs, so the read loop is the cost.
_CHUNK = 1 << 22


def content_sha256(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of the file's bytes, read in chunks (constant memory).

    Only a regular file has a content hash to key on: a pipe's bytes are gone once read
    (and opening a FIFO may block forever), so anything else is refused in one line;
    :func:`pytest_kvreuse.loaders.source.open_source` copies a pipe and hashes the copy."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise TraceReadError(f"cannot read the trace: {exc.strerror or exc}",
                             path=path) from None
    if stat.S_ISDIR(mode):
        raise TraceReadError("is a directory, not a trace file", path=path)
    if not stat.S_ISREG(mode):
        raise TraceReadError("not a regular file (a pipe or a device): it can be read only "
                             "once, so it has no content hash", path=path)
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                digest.update(chunk)
    except OSError as exc:
        raise TraceReadError(f"cannot read the trace: {exc.strerror or exc}",
                             path=path) from None
    return digest.hexdigest()
