"""Compressed traces, told from their first bytes (never from the file name) and read as a
stream: a ``.jsonl.gz`` of gigabytes costs one read buffer, not its decompressed size.

Stdlib codecs (gzip, xz, bz2) are imported when a file needs them; zstd needs the optional
``zstandard`` package (``pip install 'pytest-kvreuse[zstd]'``).
"""

from __future__ import annotations

import io
import os
from typing import BinaryIO

from ..errors import TraceReadError

# Magic numbers (RFC 1952, the xz and bzip2 file formats, RFC 8878).
_MAGIC = ((b"\x1f\x8b", "gzip"), (b"\xfd7zXZ\x00", "xz"), (b"BZh", "bz2"),
          (b"\x28\xb5\x2f\xfd", "zstd"))
MAGIC_BYTES = max(len(m) for m, _ in _MAGIC)
_BUFFER = 1 << 20
ZSTD_EXTRA = "pytest-kvreuse[zstd]"


def compression_of(head: bytes) -> str | None:
    """The codec whose magic number ``head`` starts with, or None for plain bytes."""
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    return None


class _Decoded(io.RawIOBase):
    """A codec's stream whose failures (a corrupt or cut-off file) are one-line errors."""

    def __init__(self, inner: BinaryIO, raw: BinaryIO, codec: str, path: str) -> None:
        self._inner, self._raw, self._codec, self._path = inner, raw, codec, path

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        try:
            return self._inner.readinto(buffer)
        except TraceReadError:
            raise
        except Exception as exc:
            # Each codec has its own error types (lzma.LZMAError, zlib.error, EOFError,
            # zstandard.ZstdError, ...); from a decoder they all mean corrupt or cut-off input.
            raise TraceReadError(f"not valid {self._codec} data, the file is corrupt or cut "
                                 f"off ({exc})", path=self._path) from None

    def close(self) -> None:
        try:
            self._inner.close()
        finally:
            self._raw.close()
            super().close()


def _codec_stream(codec: str, raw: BinaryIO, path: str) -> BinaryIO:
    if codec == "gzip":
        import gzip

        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    if codec == "xz":
        import lzma

        return lzma.LZMAFile(raw)  # type: ignore[return-value]
    if codec == "bz2":
        import bz2

        return bz2.BZ2File(raw)  # type: ignore[return-value]
    try:
        import zstandard
    except ImportError:
        raise TraceReadError(f"is zstd-compressed: install the zstd extra to read it (pip "
                             f"install '{ZSTD_EXTRA}')", path=path) from None
    return zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)


def decompressed(raw: io.BufferedReader, path: str | os.PathLike[str]) -> BinaryIO:
    """``raw`` (a file opened for binary reading) as the bytes it holds: decompressed when
    its first bytes are a codec's magic number, else ``raw`` itself."""
    try:
        head = raw.peek(MAGIC_BYTES)[:MAGIC_BYTES]
    except OSError:
        return raw  # the caller's first read reports it
    codec = compression_of(head)
    if codec is None:
        return raw
    spath = os.fspath(path)
    try:
        inner = _codec_stream(codec, raw, spath)
    except BaseException:
        raw.close()
        raise
    return io.BufferedReader(_Decoded(inner, raw, codec, spath), _BUFFER)  # type: ignore
