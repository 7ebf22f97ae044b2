"""The saved run a test run is guarded against: per-trace drift verdicts, the report's
baseline-vs-current data and trend, and saving the run at the end.

No pytest here: ``drift_plugin.py`` only turns options into a :class:`BaselineGuard` and
forwards to it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from .drift import (
    ERROR,
    NEW,
    Comparison,
    Tolerance,
    TraceComparison,
    check_metrics,
    compare_runs,
    metric_values,
    pair_traces,
)
from .storage import BaselineStorage, SavedRun, baseline_document, describe_run

# What this module adds to results and run for the report; never saved with a run.
REPORT_KEYS = ("baseline", "trend")
BASELINE_CURVE = "baseline "


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
        self.document: dict | None = None
        self.traces: dict[str, dict] = {}
        if compare:
            self.saved_run, self.document = storage.load(selector)
            self.traces = {t["name"]: t for t in self.document.get("traces", [])}
            check_metrics(self.tolerances, list(self.traces.values()))

    @property
    def comparing(self) -> bool:
        return self.saved_run is not None

    def describe(self) -> str:
        if self.saved_run is None or self.document is None:
            return "no baseline"
        return describe_run(self.document, self.saved_run.path)

    def baseline_for(self, result: dict, names: Iterable[str] = ()) -> dict | None:
        """The baseline's result for this trace: by its name or another of its ``names``,
        else by the same file path and analysis parameters."""
        base = next((self.traces[n] for n in [result["name"], *names] if n in self.traces),
                    None)
        if base is None:
            [(_, base)], _ = pair_traces(list(self.traces.values()), [result])
        return base

    def baseline_sizes(self, result: dict, names: Iterable[str] = ()) -> list[int]:
        """GPU cache sizes the baseline measured for this trace: the current run measures
        them too, so every size can be compared."""
        base = self.baseline_for(result, names)
        values = metric_values(base, "offloadable_fraction") if base else None
        return sorted(s for s in (values or {}) if s is not None)

    def verdict(self, result: dict, names: Iterable[str] = ()) -> TraceComparison:
        """How one current trace result compares (``names``: other names of the trace)."""
        base = self.baseline_for(result, names)
        if base is None:
            return TraceComparison(result["name"], NEW)
        comparison = compare_runs([{**base, "name": result["name"]}], [result],
                                  self.tolerances, check_names=False)
        return comparison.traces[0]

    def compare(self, results: Sequence[dict]) -> Comparison:
        return compare_runs(list(self.traces.values()), results, self.tolerances,
                            check_names=False)

    def report_data(self, results: Sequence[dict], run: dict) -> tuple[list[dict], dict]:
        """``(results, run)`` for the report and JSON.

        Each trace compared with the baseline gets ``"baseline"`` (the verdict and every
        figure baseline vs current) and the baseline's CCDF as
        ``curves["baseline <run>"]``, drawn on the same plot as the current one. Each trace
        gets ``"trend"``: its headline figures in every saved run of the storage, oldest
        first, then this run. ``run["baseline"]`` names the saved run compared with.
        """
        out = [dict(r) for r in results]
        if self.comparing:
            label = self.saved_run.label
            verdicts = self.compare(out).by_name()
            pairs, _ = pair_traces(list(self.traces.values()), out)
            for r, base in pairs:
                t = verdicts.get(r["name"])
                if t is None or base is None or t.status == ERROR:
                    continue
                r["baseline"] = {"run": label,
                                 **{k: v for k, v in t.to_dict().items() if k != "name"}}
                r["checks"] = [*(r.get("checks") or []), *_drift_checks(t, label)]
                ccdf = (base.get("curves") or {}).get("ccdf")
                if ccdf:
                    r["curves"] = {**(r.get("curves") or {}), BASELINE_CURVE + label: ccdf}
            run = {**run, "baseline": self.describe()}
        history = self.storage.trend()
        if history:
            now = BaselineStorage.trend_point(out)
            for r in out:
                points = [{"run": f"{p['number']:04d}_{p['name']}", "number": p["number"],
                           "saved": p["saved"], "commit": p["commit"],
                           "figures": p["traces"][r["name"]]}
                          for p in history if r["name"] in p["traces"]]
                if points:
                    r["trend"] = [*points, {"run": "this run", "number": None,
                                            "saved": run.get("started"),
                                            "commit": run.get("git_commit"),
                                            "figures": now[r["name"]]}]
        return out, run

    def save(self, results: Sequence[dict], run: dict, name: str) -> SavedRun:
        """Store the run as the next numbered file (atomic; the report-only keys left out)."""
        plain = []
        for r in results:
            r = {k: v for k, v in r.items() if k not in REPORT_KEYS}
            if isinstance(r.get("curves"), dict):
                r["curves"] = {k: v for k, v in r["curves"].items()
                               if not k.startswith(BASELINE_CURVE)}
            if isinstance(r.get("checks"), list):
                r["checks"] = [c for c in r["checks"] if not (isinstance(c, dict)
                                                              and "baseline" in c)]
            plain.append(r)
        run = {k: v for k, v in run.items() if k not in REPORT_KEYS}
        return self.storage.save(baseline_document(plain, run), name)


def _drift_checks(verdict: TraceComparison, label: str) -> list[dict]:
    """Each figure under a tolerance as a check record (the report's shape): its bounds
    are the baseline value plus or minus the tolerance, so the report lists and counts
    drift beside the thresholds."""
    out = []
    for f in verdict.figures:
        if f.tolerance is None:
            continue
        lo = hi = None
        if f.baseline is not None and f.limit is not None:
            lo, hi = f.baseline - f.limit, f.baseline + f.limit
        out.append({"nodeid": f"--kvreuse-compare-fail={f.tolerance.text} against {label}",
                    "metric": f.metric, "at": f.at, "min": lo, "max": hi,
                    "value": f.current, "passed": not f.drifted,
                    "message": f.message() if f.drifted else None, "baseline": label})
    return out
