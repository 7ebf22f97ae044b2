"""Content hash of a trace: what the stream cache, the plugin's memo and the baselines key
on.

The hash is over the trace's content, not its container: a compressed file hashes as its
decompressed bytes (``t.jsonl.gz`` and ``t.jsonl`` share the stream cache and compare as
the same trace in ``kvreuse compare``), and a shard set as its files' bytes in name
order, a newline put after a file that does not end in one (the bytes of the single
file ``cat``-ing them together gives when every shard ends its last line)."""

from __future__ import annotations

import hashlib
import os
import stat

from ..errors import TraceReadError
from .shards import trace_files

# Large reads: SHA-256 runs in hardware on current CPUs, so the read loop is the cost.
_CHUNK = 1 << 22


def content_sha256(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of the trace's content, read in chunks (constant memory).

    Only regular files have a content hash to key on: a pipe's bytes are gone once read
    (and opening a FIFO may block forever), so anything else is refused in one line;
    :func:`pytest_kvreuse.loaders.source.open_source` copies a pipe and hashes the copy."""
    digest = hashlib.sha256()
    files = trace_files(path)
    for name in files:
        last = _hash_file(name, digest)
        if len(files) > 1 and last not in (b"", b"\n"):
            digest.update(b"\n")
    return digest.hexdigest()


def _hash_file(path: str, digest) -> bytes:
    """Feed the file's content to ``digest``; its last byte (b"" when empty)."""
    # Imported here: the plugin imports this module at collection, the codecs are rarely
    # needed.
    from .jsonl import open_trace

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
    last = b""
    try:
        with open_trace(path) as fh:
            while chunk := fh.read(_CHUNK):
                digest.update(chunk)
                last = chunk[-1:]
    except OSError as exc:
        raise TraceReadError(f"cannot read the trace: {exc.strerror or exc}",
                             path=path) from None
    return last
