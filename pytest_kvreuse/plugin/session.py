"""The run state of the pytest plugin: declared traces, the analyses they share, check
records, the results that cross xdist workers, and the end-of-run outputs. Hooks only
forward here.

A *declared trace* is what a manifest ``[[trace]]`` or a marked test names: a name, a path
and analysis parameters. Each is one row of the summary, the JSON and the report. Two
declared traces whose files have the same content and whose parameters give the same
analysis share one :class:`Analysed` underneath: the trace is read once.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..checks import Check, ThresholdViolation, evaluate, violation_paragraph
from ..errors import KvReuseError
from ..loaders.fingerprint import content_sha256 as content_hash
from ..loaders.registry import detect_format
from ..metrics import METRICS, OPT_METRICS
from ..params import AnalysisParams
from ..result import TraceResult, trace_timings

# Declared at collection: listed in collection order. Reached only through
# kvreuse_analyze: after them, by name.
DECLARED, DYNAMIC = 0, 1


@dataclass
class Analysed:
    """One analysis: a file's content under parameters that give the same result."""

    key: str
    digest: str | None
    analysis: object | None = None
    error: KvReuseError | None = None


@dataclass
class DeclaredTrace:
    """One trace as the run declared it, and what was checked on it."""

    key: str
    name: str
    display: str
    path: Path
    params: AnalysisParams
    order: list
    analysed: Analysed | None = None
    sizes: set[int] = field(default_factory=set)
    figures: list[tuple[str, dict]] = field(default_factory=list)
    checks: list[dict] = field(default_factory=list)

    @property
    def used(self) -> bool:
        return self.analysed is not None or bool(self.checks)


def record(nodeid: str, *, kind: str = "threshold", check: Check | None = None,
           value: float | None = None, passed: bool = False,
           message: str | None = None) -> dict:
    """A check record as results carry it (one per condition an item checked)."""
    return {"nodeid": nodeid, "kind": kind,
            "metric": check.metric if check else None, "at": check.at if check else None,
            "args": dict(check.args) if check and check.args else None,
            "min": check.min if check else None, "max": check.max if check else None,
            "value": value, "passed": passed, "message": message}


@dataclass(frozen=True)
class Computed:
    """What every result computes beyond the default figures (``--kvreuse-opt``,
    ``--kvreuse-ttl``, ``--kvreuse-policies``)."""

    opt: bool = False
    ttls: tuple[int | float, ...] = ()
    policies: tuple[str, ...] = ()

    def kwargs(self) -> dict:
        return {"include": OPT_METRICS if self.opt else (), "ttls": self.ttls,
                "policies": self.policies}


class KvReuseSession:
    """Everything the plugin remembers during one pytest run (kept in ``config.stash``)."""

    def __init__(self, *, rootpath: Path, cache_dir: Callable[[], Path | None] | None,
                 use_cache: bool, args: list[str], computed: Computed | None = None) -> None:
        self.rootpath = rootpath
        self.computed = computed or Computed()
        self._cache_dir = cache_dir
        self.use_cache = use_cache
        self.args = args
        self.started = _dt.datetime.now(_dt.timezone.utc)
        self._t0 = time.perf_counter()
        self.traces: dict[str, DeclaredTrace] = {}
        self.analyses: dict[str, Analysed] = {}
        # The first analysis of each stream, by content and parameters less the model's.
        self._streams: dict[str, object] = {}
        self._digests: dict[tuple, str] = {}
        self.worker_payloads: list[dict] = []
        self.output_notes: list[str] = []
        self._results: list[TraceResult] | None = None
        self._run_timings: dict[str, dict] = {}
        # Each turns (results, run) into what the report and JSON show (baselines add theirs).
        self.output_extenders: list[Callable[[list[TraceResult], dict],
                                             tuple[list[TraceResult], dict]]] = []

    # -- declared traces ----------------------------------------------------------------

    def display_name(self, path: Path) -> str:
        try:
            return path.resolve().relative_to(self.rootpath.resolve()).as_posix()
        except ValueError:
            return str(path)

    def declare(self, path: str | os.PathLike[str], params: AnalysisParams, *,
                name: str | None = None, dynamic: bool = False) -> DeclaredTrace:
        """The declared trace ``name`` of ``path`` with ``params`` (not analysed yet)."""
        path = Path(path)
        display = self.display_name(path)
        name = name or display
        key = json.dumps([name, display, params.key()])
        t = self.traces.get(key)
        if t is None:
            order = [DYNAMIC, 0] if dynamic else [DECLARED, len(self.traces)]
            t = DeclaredTrace(key=key, name=name, display=display, path=path, params=params,
                              order=order)
            self.traces[key] = t
            self._results = None
        return t

    def trace(self, path: str | os.PathLike[str], params: AnalysisParams, *,
              name: str | None = None, sizes: tuple[int, ...] = (),
              dynamic: bool = False) -> DeclaredTrace:
        """The declared trace, analysed (once per file content and parameters)."""
        t = self.declare(path, params, name=name, dynamic=dynamic)
        if t.analysed is None:
            t.analysed = self._analysed(t.path, params)
        t.sizes.update(int(s) for s in sizes)
        self._results = None
        return t

    def analysis(self, path: str | os.PathLike[str], params: AnalysisParams,
                 **kw: object) -> object:
        """The ReuseAnalysis, or the loader's KvReuseError raised again (memoized too)."""
        a = self.trace(path, params, **kw).analysed
        if a.error is not None:
            raise a.error
        return a.analysis

    # -- analyses -----------------------------------------------------------------------

    def _digest(self, path: Path) -> str:
        try:
            st = path.stat()
        except OSError:
            return content_hash(path)  # a glob's hash, or the one-line read error
        if not path.is_file():
            # A directory's stamp misses a shard rewritten in place: hashed every time.
            return content_hash(path)
        stamp = (str(path), st.st_mtime_ns, st.st_size)
        if stamp not in self._digests:
            self._digests[stamp] = content_hash(path)
        return self._digests[stamp]

    def _analysed(self, path: Path, params: AnalysisParams) -> Analysed:
        try:
            digest = self._digest(path)
        except KvReuseError as exc:
            key = json.dumps([f"unreadable:{path.resolve()}", params.key()])
            return self.analyses.setdefault(key, Analysed(key, None, error=exc))
        fmt = _detected_format(path, params)
        key = json.dumps([digest, params.key(fmt)])
        a = self.analyses.get(key)
        if a is None:
            a = Analysed(key, digest)
            # The same stream for another served model: its figures are the stream's, only
            # the bytes differ, so it is neither loaded nor analysed again.
            stream_key = json.dumps([digest, params.stream_key(fmt)])
            twin = self._streams.get(stream_key)
            try:
                if twin is not None:
                    from .. import api

                    a.analysis = api.for_model(twin, params)
                else:
                    a.analysis = self._analyze(path, params, digest)
                    self._streams[stream_key] = a.analysis
            except KvReuseError as exc:
                a.error = exc
            # Only now: an unexpected exception above leaves no half-made entry behind
            # for the summary and the report to trip over.
            self.analyses[key] = a
        return a

    def cache_kwargs(self) -> dict:
        out: dict = {"use_cache": self.use_cache}
        if self.use_cache and self._cache_dir is not None:
            cache_dir = self._cache_dir()
            if cache_dir is not None:
                out["cache_dir"] = cache_dir
        return out

    def _analyze(self, path: Path, params: AnalysisParams, digest: str) -> object:
        # Looked up on the module at call time: tests count calls by patching it.
        from .. import api

        # The digest was computed for the memo key: the stream cache reuses it.
        return api.analyze(path, params, known_sha256=digest, **self.cache_kwargs())

    # -- checks -------------------------------------------------------------------------

    def check_trace(self, path: str | os.PathLike[str], params: AnalysisParams,
                    checks: tuple[Check, ...], *, name: str | None, sizes: tuple[int, ...],
                    nodeid: str, properties: list) -> None:
        """Analyse (memoized), evaluate and record ``checks``, add the junitxml
        ``properties``; raise the trace's one-line error, or one ThresholdViolation naming
        every bound that does not hold."""
        sizes = (*sizes, *(c.at for c in checks if c.at is not None
                           and METRICS[c.metric].at_tokens))
        t = self.trace(path, params, name=name, sizes=sizes)
        for c in checks:
            m = METRICS[c.metric]
            # A figure every result has at every size needs no entry of its own.
            if (c.arguments and not (m.sized and m.default)
                    and (c.metric, c.arguments) not in t.figures):
                t.figures.append((c.metric, c.arguments))
        properties.extend(self.properties(t))
        a = t.analysed
        if a.error is not None:
            message = a.error.one_line()
            t.checks.extend(record(nodeid, check=c, message=message) for c in checks)
            if not checks:
                t.checks.append(record(nodeid, kind="analysis", message=message))
            raise a.error
        if not checks:
            t.checks.append(record(nodeid, kind="analysis", passed=True))
        failures = []
        for check in checks:
            try:
                value, problem = evaluate(a.analysis, check)
            except KvReuseError as exc:
                t.checks.append(record(nodeid, check=check, message=exc.one_line()))
                raise
            message = None
            if problem is not None:
                message = violation_paragraph(t.name, t.display, a.analysis, problem)
                failures.append(message)
            t.checks.append(record(nodeid, check=check, value=None if value != value
                                   else value, passed=problem is None, message=message))
            properties.append((f"kvreuse_check_{check.label}", None if value != value
                               else value))
        self._results = None
        if failures:
            raise ThresholdViolation("\n".join(failures))

    def item_outcome(self, t: DeclaredTrace, nodeid: str, passed: bool,
                     message: str | None) -> None:
        """An item's outcome as pytest counts it: a test whose body failed, or that the
        drift guard failed, is a failed check even where every bound held."""
        mine = [c for c in t.checks if c["nodeid"] == nodeid]
        if not mine or (not passed and all(c["passed"] for c in mine)):
            t.checks.append(record(nodeid, kind="test", passed=passed,
                                   message=None if passed else message))
            self._results = None

    def properties(self, t: DeclaredTrace) -> list[tuple[str, object]]:
        """Key figures of a trace as junitxml properties."""
        props: list[tuple[str, object]] = [("kvreuse_trace", t.name),
                                           ("kvreuse_path", t.display)]
        a = t.analysed.analysis if t.analysed else None
        if a is None:
            err = t.analysed.error if t.analysed else None
            return props + [("kvreuse_error", err.one_line() if err else "")]
        props += [("kvreuse_block_size", a.block_size), ("kvreuse_requests", a.num_requests),
                  ("kvreuse_tokens", a.total_tokens),
                  ("kvreuse_reused_fraction", _num(a.reused_fraction))]
        props += [(f"kvreuse_offloadable_fraction@{c}", _num(a.offloadable_fraction(c)))
                  for c in sorted(t.sizes)]
        return props

    # -- results ------------------------------------------------------------------------

    def result(self, t: DeclaredTrace) -> TraceResult:
        a = t.analysed
        if a is not None and a.analysis is not None:
            r = TraceResult.from_analysis(a.analysis, name=t.name, path=t.display,
                                          sizes=t.sizes, figures=t.figures,
                                          content_sha256=a.digest,
                                          **self.computed.kwargs())
        else:
            r = TraceResult(name=t.name, path=t.display, params=t.params.to_dict(),
                            content_sha256=a.digest if a else None,
                            error=a.error.one_line() if a and a.error else None)
        r.checks = sorted(t.checks, key=_check_order)
        return r

    def payload(self) -> dict:
        """This process's results as plain dicts (what a worker sends to the controller)."""
        return {"traces": [
            {"key": t.key, "order": t.order, "timings": self._timings(t),
             # A JSON round trip leaves only plain types: safe for execnet, and
             # byte-identical between a serial run and workers.
             "result": json.loads(json.dumps(self.result(t).to_json(), default=_plain))}
            for t in self.traces.values() if t.used]}

    @staticmethod
    def _timings(t: DeclaredTrace) -> dict:
        if t.analysed is None or t.analysed.analysis is None:
            return {}
        return trace_timings(t.analysed.analysis)

    def add_worker_payload(self, payload: dict) -> None:
        self.worker_payloads.append(payload)
        self._results = None

    def results(self) -> list[TraceResult]:
        """Every declared trace of the run (this process and every worker), in declaration
        order."""
        if self._results is None:
            self._results = self._merge()
        return self._results

    def _merge(self) -> list[TraceResult]:
        merged: dict[str, tuple[list, TraceResult]] = {}
        timings: dict[str, dict] = {}
        for payload in [self.payload(), *self.worker_payloads]:
            for item in payload.get("traces", []):
                r = TraceResult.from_json(item["result"])
                if item.get("timings"):
                    timings.setdefault(r.name, item["timings"])
                have = merged.get(item["key"])
                if have is None:
                    merged[item["key"]] = (item["order"], r)
                else:
                    have[1].merge(r)
        ordered = sorted(merged.values(), key=lambda o_r: (o_r[0], o_r[1].name,
                                                           o_r[1].path or ""))
        out = [r for _, r in ordered]
        for r in out:
            r.checks.sort(key=_check_order)
        self._run_timings = {r.name: timings[r.name] for r in out if r.name in timings}
        return out

    def run_info(self) -> dict:
        from ..output.report import run_info

        run = run_info(self.args, started=self.started,
                       duration_s=time.perf_counter() - self._t0, cwd=self.rootpath)
        # Per trace (by name), here rather than in the results: they vary run to run.
        run["timings"] = dict(self._run_timings)
        return run

    def write_outputs(self, *, report: Path | None, json_path: Path | None,
                      template_dir: Path | None) -> None:
        """Write the report and JSON; a failure becomes one note, never an exception."""
        if report is None and json_path is None:
            return
        from ..output import report as report_module

        results = self.results()
        run = self.run_info()
        for extend in self.output_extenders:
            results, run = extend(results, run)
        jobs = []
        if json_path is not None:
            jobs.append(("JSON results", json_path,
                         lambda: report_module.write_json(json_path, results, run)))
        if report is not None:
            jobs.append(("report", report, lambda: report_module.write_report(
                report, results, run, template_dir=template_dir)))
        for what, path, job in jobs:
            try:
                job()
            except KvReuseError as exc:
                self.output_notes.append(f"kvreuse: warning: {what} not written: "
                                         f"{exc.one_line()}")
            except OSError as exc:
                self.output_notes.append(f"kvreuse: warning: {what} not written: "
                                         f"{path}: {exc.strerror or exc}")
            else:
                self.output_notes.append(f"kvreuse: {what} written to {path}")


def _detected_format(path: Path, params: AnalysisParams) -> str | None:
    if params.format != "auto":
        return params.format
    try:
        return detect_format(path)
    except KvReuseError:
        return None  # the analysis raises the same error, once


def _check_order(c: dict) -> tuple:
    return (c["nodeid"], c.get("kind") or "", c.get("metric") or "", c.get("at") or 0)


def _num(x: float) -> float | None:
    return None if x != x else round(float(x), 6)


def _plain(value: object) -> object:
    # numpy scalars and paths in params: their plain value or text.
    if hasattr(value, "item"):
        return value.item()
    return str(value)
