"""aiperf ``inputs.json``: ``{"data": [entry, ...]}`` read one entry at a time.

The file can be hundreds of megabytes on one line, so it is never parsed whole: a buffered
scan walks the top-level object and decodes each ``data`` entry with
``json.JSONDecoder.raw_decode`` (the C scanner), keeping one entry and one read buffer in
memory.
"""

from __future__ import annotations

import codecs
import json
import os
import re
from collections.abc import Callable, Iterator

from ..errors import TraceFormatError
from .jsonl import open_trace, read_error

_READ = 1 << 22
_SPACE = re.compile(r"[ \t\r\n]*")
HEAD = re.compile(rb'\A(?:\xef\xbb\xbf)?\s*\{\s*"data"\s*:\s*\[')
# Python's json decodes a lone surrogate escape into a str that no encoder accepts (the
# tokenizer would fail far from the file). Any surrogate escape, paired or not, is a
# candidate; only then are the decoded strings looked at, so plain text costs one scan.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_LONE_ESCAPE = re.compile(r"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})"
                          r"|(?<!\\u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F][0-9a-fA-F]{2}")
_SURROGATE = re.compile("[\ud800-\udfff]")


class _Scanner:
    """Decoded text of a file, read on demand, with line numbers for errors."""

    def __init__(self, path: str, fh, on_bytes: Callable[[int], None] | None) -> None:
        self.path = path
        self.fh = fh
        self.on_bytes = on_bytes
        self.decoder = codecs.getincrementaldecoder("utf-8-sig")()
        self.buf = ""
        self.pos = 0
        # Line number at buf[_cpos]: counted forward only, so a huge one-line file is
        # scanned for newlines once, not once per entry.
        self._cpos = 0
        self._cline = 1
        self.eof = False
        # Python's json takes NaN and Infinity, which JSON (and orjson, for JSONL) refuses.
        self.json = json.JSONDecoder(parse_constant=_refuse_constant)

    def line_at(self, pos: int) -> int:
        if pos < self._cpos:
            return self._cline - self.buf.count("\n", pos, self._cpos)
        self._cline += self.buf.count("\n", self._cpos, pos)
        self._cpos = pos
        return self._cline

    def fail(self, message: str, pos: int | None = None) -> TraceFormatError:
        return TraceFormatError(message, path=self.path,
                                line=self.line_at(self.pos if pos is None else pos))

    def more(self, size: int = _READ) -> None:
        if self.pos:
            self.line_at(self.pos)
            self.buf = self.buf[self.pos:]
            self._cpos -= self.pos
            self.pos = 0
        try:
            raw = self.fh.read(size)
        except OSError as exc:  # a read failing after the open (EIO, a lost mount)
            raise read_error(exc, self.path) from None
        if self.on_bytes is not None and raw:
            self.on_bytes(len(raw))
        try:
            text = self.decoder.decode(raw, final=not raw)
        except UnicodeDecodeError as exc:
            line = self.line_at(len(self.buf)) + raw[:max(exc.start, 0)].count(b"\n")
            raise TraceFormatError("not UTF-8 text", path=self.path, line=line) from None
        if not raw:
            self.eof = True
        self.buf += text

    def peek(self) -> str:
        """The next non-space character ('' at the end of the file)."""
        while True:
            self.pos = _SPACE.match(self.buf, self.pos).end()
            if self.pos < len(self.buf) or self.eof:
                return self.buf[self.pos:self.pos + 1]
            self.more()

    def expect(self, chars: str, what: str) -> str:
        ch = self.peek()
        if not ch or ch not in chars:
            found = repr(ch) if ch else "the end of the file"
            raise self.fail(f"not valid JSON: expected {what}, found {found}")
        self.pos += 1
        return ch

    def value(self) -> object:
        """Decode the next JSON value, reading more of the file while it is incomplete."""
        self.peek()
        size = _READ
        while True:
            try:
                value, end = self.json.raw_decode(self.buf, self.pos)
            except RecursionError:  # the C scanner gives up on very deep nesting
                raise self.fail("not valid JSON (nested too deeply)") from None
            except _NonFinite as exc:
                raise self.fail(f"not valid JSON ({exc.args[0]}: NaN and Infinity are not "
                                "JSON numbers)") from None
            except json.JSONDecodeError as exc:
                # Input cut off by the buffer fails at its very end, or as a string left
                # open: anything else is a real error, reported without reading on.
                cut_off = exc.msg.startswith("Unterminated string") or exc.pos + 16 >= len(
                    self.buf)
                if self.eof or not cut_off:
                    raise self.fail(f"not valid JSON ({exc.msg})", exc.pos) from None
                # Maybe only cut off by the buffer: read more (doubling, so a huge entry
                # is re-scanned a logarithmic number of times) and retry.
                self.more(size)
                size *= 2
                continue
            except ValueError:  # int() refuses literals of thousands of digits
                raise self.fail("not valid JSON (a number too large: thousands of "
                                "digits)") from None
            if end >= len(self.buf) and not self.eof:
                self.more(size)  # a number at the buffer's end may continue
                continue
            start, self.pos = self.pos, end
            if _SURROGATE_ESCAPE.search(self.buf, start, end) and _has_lone_surrogate(value):
                lone = _LONE_ESCAPE.search(self.buf, start, end)
                where = start if lone is None else lone.start()
                escape = "" if lone is None else f" {lone.group(0)}"
                raise self.fail(f"not valid Unicode text: a lone surrogate escape{escape} "
                                "(half of a UTF-16 pair)", where)
            return value


class _NonFinite(Exception):
    """NaN or Infinity met by the decoder (not a ValueError: nothing may mistake it for
    the decoder's own errors)."""


def _refuse_constant(name: str) -> float:
    raise _NonFinite(name)


def _has_lone_surrogate(value: object) -> bool:
    """Whether any string (key or value) in ``value`` holds a surrogate code point: a
    decoded pair is one astral character, so any that is left is a lone half."""
    todo = [value]
    while todo:
        item = todo.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return True
        elif isinstance(item, dict):
            todo.extend(item)
            todo.extend(item.values())
        elif isinstance(item, list):
            todo.extend(item)
    return False


def iter_aiperf_entries(path: str | os.PathLike[str],
                        on_bytes: Callable[[int], None] | None = None
                        ) -> Iterator[tuple[int, int, object]]:
    """Yield ``(index, line, entry)`` for every element of the top-level ``data`` list."""
    spath = os.fspath(path)
    with open_trace(spath) as fh:
        sc = _Scanner(spath, fh, on_bytes)
        sc.expect("{", "an object with a 'data' list")
        found = False
        if sc.peek() == "}":
            sc.pos += 1
        else:
            while True:
                if sc.peek() != '"':
                    raise sc.fail("not valid JSON: expected a key")
                key = sc.value()
                sc.expect(":", "':'")
                if key == "data" and not found:
                    found = True
                    if sc.peek() != "[":
                        raise sc.fail("'data' must be a list")
                    sc.pos += 1
                    index = 0
                    if sc.peek() == "]":
                        sc.pos += 1
                    else:
                        while True:
                            sc.peek()
                            line = sc.line_at(sc.pos)
                            yield index, line, sc.value()
                            index += 1
                            if sc.expect(",]", "',' or ']'") == "]":
                                break
                else:
                    sc.value()
                if sc.expect(",}", "',' or '}'") == "}":
                    break
        if sc.peek():
            raise sc.fail("not valid JSON: extra data after the top-level object")
        if not found:
            raise TraceFormatError("no 'data' list: not an aiperf inputs.json", path=spath)
