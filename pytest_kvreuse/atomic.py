"""Atomic file writes: a crash or kill mid-write leaves the previous file intact."""

from __future__ import annotations

import contextlib
import functools
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from .errors import KvReuseError


@functools.cache
def file_mode() -> int:
    """The mode open() gives a new file: 0666 less the umask.

    mkstemp creates 0600 files; a report or results file is meant to be shared (CI
    artifacts, web servers). Read on the first write, not at import: reading the umask
    sets it for a moment, and importing the plugin must change nothing in the process."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """A binary file that replaces ``path`` only when the ``with`` block ends cleanly
    (written to a temporary file beside it, flushed to disk, then renamed over it); on any
    error the temporary file is removed and ``path`` keeps its previous content. OS errors
    become one-line KvReuseErrors naming ``path``."""
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise KvReuseError(f"cannot write: {exc.strerror or exc}", path=target) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            if hasattr(os, "fchmod"):  # POSIX only
                os.fchmod(fh.fileno(), file_mode())
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise KvReuseError(f"cannot write: {exc.strerror or exc}", path=target) from None
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_open(path) as fh:
        fh.write(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))
