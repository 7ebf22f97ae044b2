"""Errors a user can cause: each renders as one line naming the file (and line) at fault."""

from __future__ import annotations

import os


class KvReuseError(Exception):
    """Base of every error caused by input or usage rather than by a bug."""

    def __init__(self, message: str, *, path: str | os.PathLike[str] | None = None,
                 line: int | None = None) -> None:
        self.message = message
        self.path = None if path is None else os.fspath(path)
        self.line = line
        super().__init__(self.one_line())

    def one_line(self) -> str:
        where = ""
        if self.path is not None:
            where = self.path if self.line is None else f"{self.path}:{self.line}"
            where += ": "
        return (where + self.message).replace("\n", " ")

    def __reduce__(self) -> tuple:
        # Raised in a worker process (--jobs, Dask), it must arrive with its file and line.
        return _rebuild, (type(self), self.message, self.path, self.line)


def _rebuild(cls: type[KvReuseError], message: str, path: str | None,
             line: int | None) -> KvReuseError:
    return cls(message, path=path, line=line)


class TraceReadError(KvReuseError):
    """The trace file cannot be opened or read."""


class TraceFormatError(KvReuseError):
    """The trace content is not what its format requires (bad JSON, wrong field, ...)."""


class EmptyTraceError(TraceFormatError):
    """The trace holds no requests."""


class BlockSizeError(KvReuseError):
    """A block size that is not positive, or does not fit the trace's native hash block."""


class TokenizerError(KvReuseError):
    """The tokenizer cannot be loaded (offline) or used."""
