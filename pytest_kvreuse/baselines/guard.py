"""The saved run a test run is guarded against: per-trace drift verdicts, the report's
baseline-vs-current data and trend, and saving the run at the end.

No pytest here: ``drift_plugin.py`` only turns options into a :class:`BaselineGuard` and
forwards to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from ..result import Results, TraceLike, TraceResult, as_result
from .drift import (
    ERROR,
    NEW,
    Comparison,
    Tolerance,
    TraceComparison,
    check_metrics,
    compare_runs,
    pair_traces,
)
from .storage import BaselineStorage, SavedRun, baseline_document, describe_run

BASELINE_CURVE = "baseline "
DRIFT_KIND = "drift"


class BaselineGuard:
    """One run's view of the baseline storage.

    With ``compare`` the chosen saved run (``selector``: None for the latest, a number or
    a name) is loaded at once, so a missing baseline or a tolerance naming a figure the
    baseline lacks is an error before any test runs.
    """

    def __init__(self, storage: BaselineStorage, tolerances: Sequence[Tolerance] = (), *,
                 compare: bool = False, selector: str | int | None = None) -> None:
        self.storage = storage
        self.tolerances = list(tolerances)
        self.saved_run: SavedRun | None = None
        self.document: Results | None = None
        self.traces: dict[str, TraceResult] = {}
        if compare:
            self.saved_run, self.document = storage.load(selector)
            self.traces = self.document.by_name()
            check_metrics(self.tolerances, list(self.traces.values()))

    @property
    def comparing(self) -> bool:
        return self.saved_run is not None

    def describe(self) -> str:
        if self.saved_run is None or self.document is None:
            return "no baseline"
        return describe_run(self.document.meta, self.saved_run.path)

    def baseline_for(self, result: TraceLike) -> TraceResult | None:
        """The baseline's result for this trace: by its name, else by the same file path
        and analysis parameters."""
        result = as_result(result)
        base = self.traces.get(result.name)
        if base is None:
            [(_, base)], _ = pair_traces(list(self.traces.values()), [result])
        return base

    def baseline_sizes(self, result: TraceLike) -> list[int]:
        """GPU cache sizes the baseline measured for this trace: the current run measures
        them too, so every size can be compared."""
        base = self.baseline_for(result)
        return sorted(base.sizes) if base is not None else []

    def verdict(self, result: TraceLike) -> TraceComparison:
        """How one current trace result compares."""
        result = as_result(result)
        base = self.baseline_for(result)
        if base is None:
            return TraceComparison(result.name, NEW)
        comparison = compare_runs([replace(base, name=result.name)], [result],
                                  self.tolerances, check_names=False)
        return comparison.traces[0]

    def compare(self, results: Sequence[TraceLike]) -> Comparison:
        return compare_runs(list(self.traces.values()), results, self.tolerances,
                            check_names=False)

    def report_data(self, results: Sequence[TraceLike], run: dict,
                    ) -> tuple[list[TraceResult], dict]:
        """``(results, run)`` for the report and JSON.

        Each trace compared with the baseline gets ``extras["baseline"]`` (the verdict and
        every figure baseline vs current), its drift records among its checks, and the
        baseline's CCDF as ``curves["baseline <run>"]``, drawn on the same plot as the
        current one. Each trace gets ``extras["trend"]``: its headline figures in every
        saved run of the storage, oldest first, then this run. ``run["baseline"]`` names
        the saved run compared with.
        """
        out = [replace(r, checks=list(r.checks), curves=dict(r.curves), extras=dict(r.extras))
               for r in map(as_result, results)]
        if self.comparing:
            label = self.saved_run.label
            verdicts = self.compare(out).by_name()
            pairs, _ = pair_traces(list(self.traces.values()), out)
            for r, base in pairs:
                t = verdicts.get(r.name)
                if t is None or base is None or t.status == ERROR:
                    continue
                r.extras["baseline"] = {"run": label, **{k: v for k, v in t.to_dict().items()
                                                         if k != "name"}}
                r.checks.extend(_drift_checks(t, label))
                ccdf = base.curves.get("ccdf")
                if ccdf:
                    r.curves[BASELINE_CURVE + label] = ccdf
            run = {**run, "baseline": self.describe()}
        history = self.storage.trend()
        if history:
            now = BaselineStorage.trend_point(out)
            for r in out:
                points = [{"run": f"{p['number']:04d}_{p['name']}", "number": p["number"],
                           "saved": p["saved"], "commit": p["commit"],
                           "figures": p["traces"][r.name]}
                          for p in history if r.name in p["traces"]]
                if points:
                    r.extras["trend"] = [*points, {"run": "this run", "number": None,
                                                   "saved": run.get("started"),
                                                   "commit": run.get("git_commit"),
                                                   "figures": now[r.name]}]
        return out, run

    def save(self, results: Sequence[TraceLike], run: dict, name: str) -> SavedRun:
        """Store the run as the next numbered file (atomic; what only the report shows
        left out)."""
        plain = [replace(r, extras={},
                         curves={k: v for k, v in r.curves.items()
                                 if not k.startswith(BASELINE_CURVE)},
                         checks=[c for c in r.checks if c.get("kind") != DRIFT_KIND])
                 for r in map(as_result, results)]
        run = {k: v for k, v in run.items() if k != "baseline"}
        return self.storage.save(baseline_document(plain, run), name)


def _drift_checks(verdict: TraceComparison, label: str) -> list[dict]:
    """Each figure under a tolerance as a check record: its bounds are the baseline value
    plus or minus the tolerance, so the report lists drift beside the thresholds. (Their
    items' outcomes already count the drift: these records are shown, not counted.)"""
    out = []
    for f in verdict.figures:
        if f.tolerance is None:
            continue
        lo = hi = None
        if f.baseline is not None and f.limit is not None:
            lo, hi = f.baseline - f.limit, f.baseline + f.limit
        out.append({"nodeid": f"--kvreuse-compare-fail={f.tolerance.text} against {label}",
                    "kind": DRIFT_KIND, "metric": f.metric, "at": f.at, "args": None,
                    "min": lo, "max": hi, "value": f.current, "passed": not f.drifted,
                    "message": f.message() if f.drifted else None, "baseline": label})
    return out
