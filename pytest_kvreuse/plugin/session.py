"""The run state of the pytest plugin: memoized analyses, check outcomes, the results that
cross xdist workers as plain dicts, and the end-of-run outputs. Hooks only forward here."""

from __future__ import annotations

import datetime as _dt
import inspect
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..checks import Check
from ..errors import KvReuseError
from ..loaders.fingerprint import content_sha256 as content_hash  # keys analyses by file content


def normalized_params(params: dict) -> dict:
    """Parameters as analyze() sees them, so ``{}`` and ``{"block_size": 64}`` are one key."""
    out = {"block_size": 64, "format": "auto"}
    out.update({k: v for k, v in params.items() if v is not None})
    return dict(sorted(out.items()))


@dataclass
class TraceEntry:
    """One analysed trace (file content + parameters) and what was checked on it."""

    key: str
    path: Path  # the first path seen, the one analysed
    params: dict
    names: set[str] = field(default_factory=set)
    paths: set[str] = field(default_factory=set)  # display paths of the same content
    sizes: set[int] = field(default_factory=set)
    checks: list[dict] = field(default_factory=list)
    analysis: object | None = None
    error: KvReuseError | None = None
    digest: str | None = None


class KvReuseSession:
    """Everything the plugin remembers during one pytest run (kept in ``config.stash``)."""

    def __init__(self, *, rootpath: Path, cache_dir: Callable[[], Path | None] | None,
                 use_cache: bool, args: list[str]) -> None:
        self.rootpath = rootpath
        self._cache_dir = cache_dir
        self.use_cache = use_cache
        self.args = args
        self.started = _dt.datetime.now(_dt.timezone.utc)
        self._t0 = time.perf_counter()
        self.entries: dict[str, TraceEntry] = {}
        self._digests: dict[tuple, str] = {}
        self.worker_payloads: list[dict] = []
        self.output_notes: list[str] = []
        self._results: list[dict] | None = None
        self._run_timings: dict[str, dict] = {}
        # Each turns (results, run) into what the report and JSON show (baselines add theirs).
        self.output_extenders: list[Callable[[list[dict], dict], tuple[list[dict], dict]]] = []

    # -- analyses -----------------------------------------------------------------------

    def _digest(self, path: Path) -> str:
        try:
            st = path.stat()
        except OSError:
            return content_hash(path)  # raises the one-line read error
        stamp = (str(path), st.st_mtime_ns, st.st_size)
        if stamp not in self._digests:
            self._digests[stamp] = content_hash(path)
        return self._digests[stamp]

    def display_name(self, path: Path) -> str:
        try:
            return path.resolve().relative_to(self.rootpath.resolve()).as_posix()
        except ValueError:
            return str(path)

    def entry(self, path: str | os.PathLike[str], params: dict, *, name: str | None = None,
              sizes: tuple[int, ...] = ()) -> TraceEntry:
        """The entry of ``path`` analysed with ``params``: analysed on first use only."""
        path = Path(path)
        params = normalized_params(params)
        try:
            digest = self._digest(path)
        except KvReuseError as exc:
            digest, error = None, exc
        else:
            error = None
        key = json.dumps([digest or f"unreadable:{path.resolve()}", params], sort_keys=True,
                         default=str)
        e = self.entries.get(key)
        if e is None:
            e = TraceEntry(key=key, path=path, params=params, digest=digest, error=error)
            if error is None:
                try:
                    e.analysis = self._analyze(path, params, digest)
                except KvReuseError as exc:
                    e.error = exc
            # Only now: an unexpected exception above leaves no half-made entry behind
            # for the summary and the report to trip over.
            self.entries[key] = e
        e.names.add(name or self.display_name(path))
        e.paths.add(self.display_name(path))
        e.sizes.update(sizes)
        self._results = None
        return e

    def analysis(self, path: str | os.PathLike[str], params: dict, **kw: object) -> object:
        """The ReuseAnalysis, or the loader's KvReuseError raised again (memoized too)."""
        e = self.entry(path, params, **kw)
        if e.error is not None:
            raise e.error
        return e.analysis

    def cache_kwargs(self, analyze: Callable) -> dict:
        """Cache switches for analyze(), only those its signature accepts."""
        accepted = inspect.signature(analyze).parameters
        out: dict = {}
        if "use_cache" in accepted:
            out["use_cache"] = self.use_cache
        if self.use_cache and "cache_dir" in accepted and self._cache_dir is not None:
            cache_dir = self._cache_dir()
            if cache_dir is not None:
                out["cache_dir"] = cache_dir
        return out

    def _analyze(self, path: Path, params: dict, digest: str) -> object:
        # Looked up on the module at call time: tests count calls by patching it.
        from .. import api as analysis_module

        analyze = analysis_module.analyze
        extra = self.cache_kwargs(analyze)
        if "known_sha256" in inspect.signature(analyze).parameters:
            extra["known_sha256"] = digest  # hashed for the memo: the cache reuses it
        return analyze(path, **params, **extra)

    def check_trace(self, path: str | os.PathLike[str], params: dict,
                    checks: tuple[Check, ...], *, name: str, sizes: tuple[int, ...],
                    nodeid: str, properties: list) -> None:
        """Analyse (memoized), evaluate and record ``checks``, add the junitxml
        ``properties``; raise the trace's one-line error, or one ThresholdViolation naming
        every bound that does not hold."""
        from ..checks import ThresholdViolation, evaluate, violation_paragraph

        sizes = (*sizes, *(c.at for c in checks if c.at is not None))
        entry = self.entry(path, params, name=name, sizes=sizes)
        properties.extend(self.properties(entry, name))
        self._results = None
        records = [{"nodeid": nodeid, "metric": c.metric, "at": c.at, "min": c.min,
                    "max": c.max, "value": None, "passed": False, "message": None}
                   for c in checks]
        entry.checks.extend(records)
        if entry.error is not None:
            for record in records:
                record["message"] = entry.error.one_line()
            raise entry.error
        failures = []
        for check, record in zip(checks, records, strict=True):
            try:
                value, problem = evaluate(entry.analysis, check)
            except KvReuseError as exc:
                record["message"] = exc.one_line()
                raise
            if problem is not None:
                failures.append(violation_paragraph(name, self.display_name(entry.path),
                                                    entry.analysis, problem))
            record.update(value=None if value != value else value, passed=problem is None,
                          message=failures[-1] if problem is not None else None)
            properties.append((f"kvreuse_check_{check.label}", record["value"]))
        if failures:
            raise ThresholdViolation("\n".join(failures))

    def properties(self, entry: TraceEntry, trace_name: str) -> list[tuple[str, object]]:
        """Key figures of a trace as junitxml properties."""
        props: list[tuple[str, object]] = [("kvreuse_trace", trace_name),
                                           ("kvreuse_path", self.display_name(entry.path))]
        a = entry.analysis
        if a is None:
            return props + [("kvreuse_error", entry.error.one_line() if entry.error else "")]
        props += [("kvreuse_block_size", a.block_size), ("kvreuse_requests", a.num_requests),
                  ("kvreuse_tokens", a.total_tokens),
                  ("kvreuse_reused_fraction", _num(a.reused_fraction))]
        props += [(f"kvreuse_offloadable_fraction@{c}", _num(a.offloadable_fraction(c)))
                  for c in sorted(entry.sizes)]
        return props

    # -- results ------------------------------------------------------------------------

    def _result(self, e: TraceEntry) -> dict:
        # The smallest name and path, not the first: under xdist which test reaches a
        # trace first varies, and the results must not.
        name, path = min(e.names), min(e.paths)
        if e.analysis is not None:
            from ..result import trace_result

            r = trace_result(e.analysis, name=name, gpu_cache_sizes=sorted(e.sizes))
            r["params"]["path"] = path
            r["error"] = None
        else:
            r = {"name": name, "params": {**e.params, "path": path},
                 "figures": {}, "offloadable_fraction": {}, "curves": {},
                 "error": e.error.one_line() if e.error else None}
        r["content_hash"] = e.digest
        r["checks"] = list(e.checks)
        # A JSON round trip leaves only plain types (NaN -> None): safe for execnet and
        # byte-identical between a serial run and workers.
        return json.loads(json.dumps(r, default=_plain))

    def payload(self) -> dict:
        """This process's results as plain dicts (what a worker sends to the controller)."""
        return {"traces": [{"key": e.key, "names": sorted(e.names), "result": self._result(e),
                            "timings": self._timings(e)} for e in self.entries.values()]}

    @staticmethod
    def _timings(e: TraceEntry) -> dict:
        if e.analysis is None:
            return {}
        from ..result import trace_timings

        return trace_timings(e.analysis)

    def add_worker_payload(self, payload: dict) -> None:
        self.worker_payloads.append(payload)
        self._results = None

    def results(self) -> list[dict]:
        """All traces of the run (this process and every worker), in a stable order."""
        if self._results is None:
            self._results = self._merge()
        return self._results

    def _merge(self) -> list[dict]:
        merged: dict[str, dict] = {}
        timings: dict[str, dict] = {}
        for payload in [self.payload(), *self.worker_payloads]:
            for item in payload.get("traces", []):
                r = item["result"]
                if item.get("timings"):
                    timings.setdefault(item["key"], item["timings"])
                have = merged.get(item["key"])
                if have is None:
                    merged[item["key"]] = {**r, "params": dict(r["params"]),
                                           "checks": list(r["checks"])}
                    continue
                have["name"] = min(have["name"], r["name"])
                have["params"]["path"] = min(have["params"]["path"], r["params"]["path"])
                have["checks"].extend(r["checks"])
                # Every per-size figure: each process computed the sizes its tests asked for.
                have["offloadable_fraction"] = _by_size(have["offloadable_fraction"],
                                                        r["offloadable_fraction"])
                if isinstance(have.get("lru"), dict) and isinstance(r.get("lru"), dict):
                    have["lru"] = {k: _by_size(v, r["lru"].get(k)) if isinstance(v, dict)
                                   else v for k, v in have["lru"].items()}
        out = list(merged.values())
        for r in out:
            r["checks"].sort(key=lambda c: (c["nodeid"], c["metric"], c["at"] or 0))
        out.sort(key=lambda r: (r["name"], r["params"].get("path", ""),
                                json.dumps(r["params"], sort_keys=True, default=str)))
        self._run_timings = {merged[k]["name"]: t for k, t in sorted(
            timings.items(), key=lambda kv: merged[kv[0]]["name"])}
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


def _by_size(a: dict, b: dict | None) -> dict:
    """Two maps from a cache size (a string of digits) to a figure, merged in size order."""
    return dict(sorted({**a, **(b or {})}.items(), key=lambda kv: int(kv[0])))


def _num(x: float) -> float | None:
    return None if x != x else round(float(x), 6)


def _plain(value: object) -> object:
    # numpy scalars and paths in params: their plain value or text.
    if hasattr(value, "item"):
        return value.item()
    return str(value)


