"""Declarative trace checks: ``kvreuse*.toml`` manifests.

::

    [defaults]                      # optional: applies to every trace
    block_size = 64

    [[trace]]
    name = "chat"                   # optional: defaults to the file name
    path = "chat.mooncake.jsonl"    # relative to the manifest
    gpu_cache_tokens = 345_792      # optional: default 'at' of checks, shown in the summary

    [[trace.check]]
    metric = "offloadable_fraction"
    at = 345_792
    min = 0.2
    max = 0.35

Every key is checked (unknown key or wrong type: one line naming the manifest and, when it
can be found, the line). No pytest here.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..checks import Check
from ..errors import KvReuseError
from ..formatting import TOKENS
from ..metrics import METRICS, metric
from ..params import PARAM_BY_NAME, PARAM_NAMES, AnalysisParams

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

TRACE_KEYS = ("name", "path", "gpu_cache_tokens", "check")
# A check names its metric and bounds, and the metric's arguments (``at``, ...).
CHECK_KEYS = tuple(dict.fromkeys(("metric", "at", "min", "max",
                                  *(a.name for m in METRICS.values() for a in m.args))))


class ManifestError(KvReuseError):
    """A manifest that does not say what it must, or says something unknown."""


@dataclass(frozen=True)
class CheckSpec:
    check: Check
    line: int | None


@dataclass(frozen=True)
class TraceSpec:
    name: str
    path: Path
    params: AnalysisParams
    gpu_cache_tokens: tuple[int, ...]
    checks: tuple[CheckSpec, ...]
    line: int | None


@dataclass(frozen=True)
class Manifest:
    path: Path
    traces: tuple[TraceSpec, ...] = field(default=())


class _Lines:
    """Best-effort line numbers: tomllib gives none, so find table headers and keys."""

    _HEADER = re.compile(r"^\s*\[\[?\s*([A-Za-z0-9_.\"' -]+?)\s*\]\]?\s*(#.*)?$")

    def __init__(self, text: str) -> None:
        self.headers: list[tuple[int, str]] = []  # (line, table name)
        self.lines = text.splitlines()
        for i, line in enumerate(self.lines, 1):
            m = self._HEADER.match(line)
            if m:
                self.headers.append((i, m.group(1).replace(" ", "").replace('"', "")))

    def table(self, name: str, index: int = 0, after: int = 0) -> int | None:
        """Line of the ``index``-th ``[name]`` / ``[[name]]`` header after line ``after``."""
        found = [ln for ln, n in self.headers if n == name and ln > after]
        return found[index] if index < len(found) else None

    def section_end(self, start: int) -> int:
        later = [ln for ln, _ in self.headers if ln > start]
        return later[0] if later else len(self.lines) + 1

    def key(self, key: str, start: int | None) -> int | None:
        """Line of ``key = ...`` in the section starting at ``start`` (0: top level)."""
        if start is None:
            return None
        pat = re.compile(rf"^\s*[\"']?{re.escape(key)}[\"']?\s*=")
        for ln in range(start + 1, self.section_end(start)):
            if pat.match(self.lines[ln - 1]):
                return ln
        return None


class _Reader:
    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.lines = _Lines(text)
        self.param_names = PARAM_NAMES

    def error(self, message: str, line: int | None) -> ManifestError:
        return ManifestError(message, path=self.path, line=line)

    def table(self, value: object, what: str, line: int | None) -> dict:
        if not isinstance(value, dict):
            raise self.error(f"{what} must be a table, got {_type(value)}", line)
        return value

    def unknown(self, table: dict, allowed: tuple[str, ...], what: str,
                section: int | None) -> None:
        for key in table:
            if key not in allowed:
                raise self.error(f"unknown key {key!r} in {what} (allowed: "
                                 f"{', '.join(allowed)})",
                                 self.lines.key(key, section) or section or None)

    def string(self, value: object, key: str, line: int | None) -> str:
        if not isinstance(value, str) or not value:
            raise self.error(f"{key!r} must be a non-empty string, got {value!r}", line)
        return value

    def number(self, value: object, key: str, line: int | None) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.error(f"{key!r} must be a number, got {value!r}", line)
        return value

    def params(self, table: dict, section: int | None) -> dict:
        """The analysis parameters of a table, each checked where it is written."""
        out = {}
        for key in self.param_names:
            if key not in table:
                continue
            try:
                PARAM_BY_NAME[key].validate(table[key], repr(key))
            except KvReuseError as exc:
                raise self.error(exc.message, self.lines.key(key, section) or section
                                 or None) from None
            out[key] = table[key]
        return out

    def sizes(self, table: dict, section: int | None,
              default: tuple[tuple[object, int | None], ...]
              ) -> tuple[tuple[object, int | None], ...]:
        """``gpu_cache_tokens`` of a table: one size or a list of them, each with its line,
        as written (tokens, or bytes that the trace's model turns into tokens)."""
        if "gpu_cache_tokens" not in table:
            return default
        value, line = table["gpu_cache_tokens"], self.lines.key("gpu_cache_tokens", section)
        values = value if isinstance(value, list) else [value]
        return tuple((v, line or section) for v in values)

    def tokens(self, params: AnalysisParams, key: str, value: object,
               line: int | None) -> int:
        """A size of a trace in tokens: bytes through the trace's model."""
        try:
            return params.size_tokens(key, value)
        except KvReuseError as exc:
            raise self.error(exc.message, line) from None

    def array(self, table: dict, key: str, header: str, line: int | None) -> list:
        value = table.get(key, [])
        if not isinstance(value, list):
            raise self.error(f"{key!r} must be an array of tables: write {header}", line)
        return value

    def check(self, raw: object, line: int | None, default_at: int | None,
              params: AnalysisParams) -> CheckSpec:
        table = self.table(raw, "a [[trace.check]] entry", line)
        self.unknown(table, CHECK_KEYS, "[[trace.check]]", line)

        def at_line(key: str) -> int | None:
            return self.lines.key(key, line) or line

        if "metric" not in table:
            raise self.error("[[trace.check]] needs 'metric'", line)
        name = self.string(table["metric"], "metric", at_line("metric"))
        try:
            m = metric(name)
        except KvReuseError as exc:
            raise self.error(exc.message, line) from None
        args = {k: table[k] for k in CHECK_KEYS if k in table and k not in
                ("metric", "min", "max")}
        if m.at_tokens and "at" not in args and default_at is not None:
            args["at"] = default_at
        for key in args:
            arg = next((a for a in m.args if a.name == key), None)
            if arg is not None and arg.unit == TOKENS:
                # A cache size: bytes become tokens through the trace's model, here.
                args[key] = self.tokens(params, key, args[key], at_line(key))
            elif arg is not None:
                try:
                    args[key] = arg.parse(key, args[key])
                except KvReuseError as exc:
                    raise self.error(exc.message, at_line(key)) from None
        try:
            parsed = m.read_args(args)
        except KvReuseError as exc:
            raise self.error(exc.message, line) from None
        # A bound on a size (lru_capacity_for) may be written as one: max = "80GiB".
        bounds = {k: self.tokens(params, k, table[k], at_line(k))
                  if m.unit == TOKENS and isinstance(table[k], str)
                  else self.number(table[k], k, at_line(k)) for k in ("min", "max")
                  if k in table}
        try:
            check = Check(name, parsed.get("at"), bounds.get("min"), bounds.get("max"),
                          tuple((k, v) for k, v in parsed.items() if k != "at")).validate()
        except KvReuseError as exc:
            raise self.error(exc.message, line) from None
        return CheckSpec(check, line)

    def trace(self, raw: object, index: int, defaults: dict,
              default_sizes: tuple[tuple[object, int | None], ...]) -> TraceSpec:
        line = self.lines.table("trace", index)
        table = self.table(raw, "[[trace]]", line)
        self.unknown(table, TRACE_KEYS + self.param_names, "[[trace]]", line)
        if "path" not in table:
            raise self.error("[[trace]] needs 'path' (the trace file, relative to the "
                             "manifest)", line)
        rel = self.string(table["path"], "path", self.lines.key("path", line))
        path = (self.path.parent / rel) if not os.path.isabs(rel) else Path(rel)
        name = table.get("name", Path(rel).name)
        name = self.string(name, "name", self.lines.key("name", line))
        if "::" in name:
            raise self.error(f"trace name {name!r} must not contain '::'",
                             self.lines.key("name", line))
        values = {**defaults, **self.params(table, line)}
        try:
            params = AnalysisParams.from_mapping(values)
        except KvReuseError as exc:  # pragma: no cover - every value is checked above
            raise self.error(exc.message, line) from None
        sizes = tuple(self.tokens(params, "gpu_cache_tokens", v, at)
                      for v, at in self.sizes(table, line, default_sizes))
        raw_checks = self.array(table, "check", "[[trace.check]]", line)
        checks = []
        seen: dict[str, int | None] = {}
        inline = self.lines.key("check", line)
        next_trace = self.lines.table("trace", index + 1)
        headers = [ln for ln, n in self.lines.headers if n == "trace.check"
                   and ln > (line or 0) and (next_trace is None or ln < next_trace)]
        for j, rc in enumerate(raw_checks):
            cline = inline or (headers[j] if j < len(headers) else line)
            spec = self.check(rc, cline, sizes[0] if len(sizes) == 1 else None, params)
            if spec.check.label in seen:
                raise self.error(f"duplicate check {spec.check.label} in trace {name!r}: "
                                 "put min and max in one check", cline)
            seen[spec.check.label] = cline
            checks.append(spec)
        return TraceSpec(name=name, path=path, params=params, gpu_cache_tokens=sizes,
                         checks=tuple(checks), line=line)

    def read(self, doc: dict) -> Manifest:
        self.unknown(doc, ("defaults", "trace"), "the manifest (top level)", 0)
        dline = self.lines.table("defaults")
        defaults_raw = self.table(doc.get("defaults", {}), "[defaults]", dline)
        self.unknown(defaults_raw, ("gpu_cache_tokens",) + self.param_names, "[defaults]",
                     dline)
        defaults = self.params(defaults_raw, dline)
        sizes = self.sizes(defaults_raw, dline, ())
        raw_traces = self.array(doc, "trace", "[[trace]]", self.lines.table("trace"))
        traces = []
        names: set[str] = set()
        for i, rt in enumerate(raw_traces):
            spec = self.trace(rt, i, defaults, sizes)
            if spec.name in names:
                raise self.error(f"duplicate trace name {spec.name!r} (set 'name' to tell "
                                 "them apart)", spec.line)
            names.add(spec.name)
            traces.append(spec)
        return Manifest(path=self.path, traces=tuple(traces))


def _type(value: object) -> str:
    return {str: "a string", int: "an integer", float: "a number", bool: "a boolean",
            list: "an array", dict: "a table"}.get(type(value), type(value).__name__)


_TOML_AT = re.compile(r"\(at line (\d+), column \d+\)")


def load_manifest(path: str | os.PathLike[str]) -> Manifest:
    """Read and check one manifest; every mistake is a ManifestError of one line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"cannot read the manifest: {exc}", path=path) from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        m = _TOML_AT.search(msg)
        line = int(m.group(1)) if m else getattr(exc, "lineno", None)
        raise ManifestError(f"invalid TOML: {_TOML_AT.sub('', msg).strip()}", path=path,
                            line=line) from None
    return _Reader(path, text).read(doc)
