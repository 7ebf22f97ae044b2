"""Manifest files as pytest tests: file -> one node per trace -> one item per check."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ..checks import ThresholdViolation
from ..errors import KvReuseError
from .manifest import CheckSpec, TraceSpec, load_manifest
from .marker import MarkerSpec, marker_spec
from .state import session_of


def declared_trace(item: pytest.Item) -> tuple | None:
    """``(path, params, name)`` of the trace an item checks: a manifest item's, or the
    ``@pytest.mark.kvreuse`` marker's (name: its path); None otherwise or for a marker that
    cannot be read (the item fails with that error)."""
    if isinstance(item, CheckItem):
        return item.trace.path, item.trace.params, item.trace.name
    spec = marker_spec_of(item)
    return None if spec is None else (spec.path, spec.params, None)


_SPEC = pytest.StashKey[object]()


def marker_spec_of(item: pytest.Item, *, strict: bool = False) -> MarkerSpec | None:
    """The item's parsed ``@pytest.mark.kvreuse`` (parsed once per item); with ``strict``
    a marker that cannot be read raises its CheckError."""
    marker = item.get_closest_marker("kvreuse")
    if marker is None:
        return None
    if _SPEC not in item.stash:
        try:
            item.stash[_SPEC] = marker_spec(marker.args, marker.kwargs, Path(item.path).parent)
        except KvReuseError as exc:
            item.stash[_SPEC] = exc
    spec = item.stash[_SPEC]
    if isinstance(spec, KvReuseError):
        if strict:
            raise spec
        return None
    return spec  # type: ignore[return-value]


def one_line_failure(excinfo: pytest.ExceptionInfo[BaseException]) -> str | None:
    """The message of a plugin-domain failure, or None for anything else (a real bug)."""
    if isinstance(excinfo.value, ThresholdViolation):
        return str(excinfo.value)
    if isinstance(excinfo.value, KvReuseError):
        return f"kvreuse: {excinfo.value.one_line()}"
    return None


class ManifestFile(pytest.File):
    """A ``kvreuse*.toml`` manifest; a bad one is a one-line collection error."""

    def collect(self) -> Iterator[TraceNode]:
        manifest = load_manifest(self.path)
        for spec in manifest.traces:
            yield TraceNode.from_parent(self, name=spec.name, spec=spec)

    def repr_failure(self, excinfo):  # type: ignore[override]
        return one_line_failure(excinfo) or super().repr_failure(excinfo)


class TraceNode(pytest.Collector):
    """One ``[[trace]]``: its checks are the items."""

    def __init__(self, *, spec: TraceSpec, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.spec = spec

    def collect(self) -> Iterator[CheckItem]:
        if not self.spec.checks:
            # A trace without checks is still analysed: it shows in the summary and report,
            # and an unreadable file still fails.
            yield CheckItem.from_parent(self, name="analysis", trace=self.spec, check=None)
        for c in self.spec.checks:
            yield CheckItem.from_parent(self, name=c.check.label, trace=self.spec, check=c)

    def reportinfo(self):  # type: ignore[override]
        return self.path, (self.spec.line or 1) - 1, self.spec.name


class CheckItem(pytest.Item):
    """``min <= metric(at) <= max`` on one manifest trace."""

    def __init__(self, *, trace: TraceSpec, check: CheckSpec | None,
                 **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.trace = trace
        self.check = check

    @property
    def kvreuse_trace(self) -> TraceSpec:
        """The trace this item checks (how the entry point tells the plugin's items)."""
        return self.trace

    def runtest(self) -> None:
        checks = () if self.check is None else (self.check.check,)
        session_of(self.config).check_trace(
            self.trace.path, self.trace.params, checks, name=self.trace.name,
            sizes=self.trace.gpu_cache_tokens, nodeid=self.nodeid,
            properties=self.user_properties)

    def repr_failure(self, excinfo, style=None):  # type: ignore[override]
        return one_line_failure(excinfo) or super().repr_failure(excinfo, style)

    def reportinfo(self):  # type: ignore[override]
        line = self.check.line if self.check is not None else self.trace.line
        # Not "trace::name": a domain that ends the node id gets its dots turned into "::"
        # by the terminal, which would mangle trace names like "chat.jsonl".
        return self.path, (line or 1) - 1, f"{self.trace.name} {self.name}"
