"""Sharded exports: a directory or a glob pattern names one trace, its files in name order.

Light on purpose (stdlib only): the plugin expands manifest paths at collection.
"""

from __future__ import annotations

import glob
import os
import re

from ..errors import TraceReadError

_GLOB = re.compile(r"[*?[]")


def is_shard_set(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` names several files: a directory, or a pattern no file is named."""
    name = os.fspath(path)
    return os.path.isdir(name) or (_GLOB.search(name) is not None
                                   and not os.path.lexists(name))


def trace_files(path: str | os.PathLike[str]) -> list[str]:
    """The files the trace at ``path`` is made of, in name order: ``[path]`` for a file;
    a directory's files (hidden ones and subdirectories skipped); a pattern's matches.

    Name order is the order of the export (``part-00000``, ``2026-06-01``, ...): a
    shard set reads as the concatenation of its files."""
    name = os.fspath(path)
    if not is_shard_set(name):
        return [name]
    if os.path.isdir(name):
        try:
            entries = os.listdir(name)
        except OSError as exc:
            raise TraceReadError(f"cannot list the directory: {exc.strerror or exc}",
                                 path=name) from None
        files = sorted(os.path.join(name, e) for e in entries if not e.startswith("."))
        files = [f for f in files if os.path.isfile(f)]
        if not files:
            raise TraceReadError("is a directory holding no trace files (a directory is read "
                                 "as one trace, its files in name order)", path=name)
        return files
    files = sorted(f for f in glob.glob(name) if os.path.isfile(f))
    if not files:
        raise TraceReadError("no file matches this pattern", path=name)
    return files
