"""Any trace path as a regular, seekable file and the sha256 of its content.

Format detection, parsing and hashing each read the file; a pipe (``/dev/stdin``,
``<(zcat t.jsonl.gz)``, a FIFO) can be read only once, and a second open of a FIFO blocks
forever. So a trace that is not a regular file is copied once into a temporary file
(hashed on the way), and everything reads that copy: the hash is the hash of the bytes
parsed, never that of the empty rest of a drained pipe.
"""

from __future__ import annotations

import hashlib
import os
import stat
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from ..errors import KvReuseError, TraceReadError
from .compression import MAGIC_BYTES, compression_of
from .fingerprint import content_sha256
from .shards import is_shard_set, trace_files

STDIN = "-"

_CHUNK = 1 << 22


@dataclass
class TraceSource:
    """``path``: a regular file holding the trace's bytes (a temporary copy for a pipe);
    ``name``: the path the user gave, which errors and results name."""

    path: str
    name: str
    spooled: bool
    known_sha256: str | None = None

    def __fspath__(self) -> str:
        # A source passes for a path: load_block_stream(source) reads the same bytes.
        return self.path

    def sha256(self) -> str:
        """Hex sha256 of the bytes ``path`` holds (read once, then remembered)."""
        if self.known_sha256 is None:
            self.known_sha256 = content_sha256(self.path)
        return self.known_sha256


def _stat(path: str) -> os.stat_result:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise TraceReadError("no such file", path=path) from None
    except OSError as exc:
        raise TraceReadError(f"cannot open: {exc.strerror or exc}", path=path) from None
    if stat.S_ISDIR(st.st_mode):
        raise TraceReadError("is a directory, not a trace file", path=path)
    return st


def _identity(st: os.stat_result) -> tuple[int, int, int, int]:
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


@contextmanager
def open_source(path: str | os.PathLike[str] | TraceSource, *,
                known_sha256: str | None = None
                ) -> Iterator[TraceSource]:
    """The trace at ``path`` as a :class:`TraceSource`, for the duration of the block.

    A regular file is read in place (``known_sha256``, the caller's hash of it, saves a
    read); anything else is spooled to a temporary file, removed at the end. Errors
    raised in the block that name the spool are renamed to ``path``. A TraceSource is
    handed back as it is."""
    if isinstance(path, TraceSource):  # already opened by the caller
        yield path
        return
    name = os.fspath(path)
    if name != STDIN and is_shard_set(name):
        files = trace_files(name)
        before = [_identity(_stat(f)) for f in files]
        yield TraceSource(name, name, spooled=False, known_sha256=known_sha256)
        if trace_files(name) != files or [_identity(os.stat(f)) for f in files] != before:
            raise TraceReadError("the trace changed while it was read; run again",
                                 path=name)
        return
    st = None if name == STDIN else _stat(name)
    if st is not None and stat.S_ISREG(st.st_mode):
        yield TraceSource(name, name, spooled=False, known_sha256=known_sha256)
        # Hash, detection and parse read the file one after the other: a file rewritten
        # in between would pair one content's hash with another's figures.
        try:
            now = os.stat(name)
        except OSError:
            now = None
        if now is None or _identity(now) != _identity(st):
            raise TraceReadError("the trace changed while it was read; run again",
                                 path=name)
        return
    spool, digest = _spool(name)
    try:
        yield TraceSource(spool, name, spooled=True, known_sha256=digest)
    except KvReuseError as exc:
        if exc.path == spool:
            exc.path = name
            exc.args = (exc.one_line(),)
        raise
    finally:
        try:
            os.unlink(spool)
        except OSError:
            pass


def _spool(name: str) -> tuple[str, str | None]:
    """Copy the stream at ``name`` (``-``: standard input) into a temporary file: its path
    and the content's sha256, None for a compressed stream (its content hash is that of
    the decompressed bytes, taken from the spool when needed)."""
    digest = hashlib.sha256()
    try:
        # A FIFO with no writer yet waits for one, as cat does. Standard input is
        # duplicated so that closing the copy leaves sys.stdin usable.
        src = (os.fdopen(os.dup(sys.stdin.fileno()), "rb") if name == STDIN
               else open(name, "rb"))
    except (OSError, ValueError) as exc:
        raise TraceReadError(f"cannot open: {getattr(exc, 'strerror', None) or exc}",
                             path=name) from None
    head = b""
    with src:
        fd, spool = tempfile.mkstemp(prefix="kvreuse-", suffix=".trace")
        try:
            with os.fdopen(fd, "wb") as out:
                while True:
                    try:
                        chunk = src.read(_CHUNK)
                    except OSError as exc:
                        raise TraceReadError(f"cannot read the trace: {exc.strerror or exc}",
                                             path=name) from None
                    if not chunk:
                        break
                    if len(head) < MAGIC_BYTES:
                        head += chunk[:MAGIC_BYTES]
                    digest.update(chunk)
                    try:
                        out.write(chunk)
                    except OSError as exc:
                        raise TraceReadError(
                            "cannot copy the stream to a temporary file: "
                            f"{exc.strerror or exc} (set TMPDIR to a roomier directory)",
                            path=name) from None
        except BaseException:
            try:
                os.unlink(spool)
            except OSError:
                pass
            raise
    return spool, None if compression_of(head) else digest.hexdigest()
