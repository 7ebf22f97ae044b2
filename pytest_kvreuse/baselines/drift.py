"""Drift of a run's figures from a saved baseline, against tolerances such as
``offloadable_fraction:0.02`` (absolute) or ``reused_fraction:5%`` (relative).

Pure data in, plain data out: the ``kvreuse compare`` command and the pytest plugin share
it. A trace is matched to its baseline by name; its figures are looked up by metric name
(see :func:`metric_values`, the registry's metrics), and a per-size figure such as
``offloadable_fraction`` is compared at every size both runs measured. Trace results are
:class:`~pytest_kvreuse.result.TraceResult` objects, or their JSON (any version).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ..errors import KvReuseError
from ..formatting import FRACTION
from ..metrics import HEADLINE_METRICS, METRICS
from ..params import with_defaults
from ..result import TraceLike, TraceResult, as_result

_EXPR = re.compile(
    r"""^\s*(?P<metric>[A-Za-z_][A-Za-z0-9_]*)
        (?:@(?P<at>[0-9][0-9_,]*))?
        \s*:\s*
        (?P<amount>[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)
        \s*(?P<percent>%)?\s*$""",
    re.VERBOSE,
)

# Floats that differ only by rounding must not count as drift at exactly the tolerance.
_SLACK = 1e-12


@dataclass(frozen=True)
class Tolerance:
    """How far one metric may move: ``amount`` absolute, or ``amount`` % of the baseline."""

    metric: str
    amount: float
    relative: bool = False
    at: int | None = None
    text: str = ""

    def limit(self, baseline: float) -> float:
        return abs(baseline) * self.amount / 100.0 if self.relative else self.amount

    def describe(self) -> str:
        amount = f"{self.amount:g}"
        return f"{amount}%" if self.relative else amount

    def applies_to(self, metric: str, at: int | None) -> bool:
        return metric == self.metric and (self.at is None or self.at == at)


def parse_tolerance(text: str) -> Tolerance:
    """Parse ``METRIC[@SIZE]:AMOUNT[%]``; a bad expression raises :class:`KvReuseError`."""
    match = _EXPR.match(text or "")
    if not match:
        raise KvReuseError(
            f"bad drift tolerance {text!r}: expected METRIC:AMOUNT (absolute, e.g. "
            "offloadable_fraction:0.02) or METRIC:AMOUNT% (relative, e.g. reused_fraction:5%)"
            ", optionally METRIC@SIZE:AMOUNT for one GPU cache size")
    amount = float(match["amount"])
    if not math.isfinite(amount):
        raise KvReuseError(f"bad drift tolerance {text!r}: the amount must be finite")
    at = match["at"]
    return Tolerance(metric=match["metric"], amount=amount, relative=bool(match["percent"]),
                     at=None if at is None else int(at.replace("_", "").replace(",", "")),
                     text=text.strip())


def parse_tolerances(texts: Iterable[str]) -> list[Tolerance]:
    return [parse_tolerance(t) for t in texts]


def _number(value: object) -> float | None | bool:
    """The figure as a float, None when undefined, False when not a figure at all."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return None if value != value else value


def metric_values(trace: TraceLike, metric: str) -> dict[int | str | None, float | None] | None:
    """The values of ``metric`` in one trace result, keyed by GPU cache size (None for a
    figure without arguments; the argument key for one with more than a size); None when
    the trace has no such figure."""
    values = as_result(trace).values(metric)
    if values is None:
        return None
    out: dict[int | str | None, float | None] = {}
    for key, v in values.items():
        n = _number(v)
        if n is False:
            continue
        out[int(key) if isinstance(key, str) and key.isdigit() else key] = n  # type: ignore[assignment]
    return out


def figure_label(metric: str, at: int | None) -> str:
    return metric if at is None else f"{metric}@{at}"


def format_value(value: float | None) -> str:
    if value is None:
        return "undefined"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.6g}"


def is_fraction(metric: str) -> bool:
    m = METRICS.get(metric)
    return m.unit == FRACTION if m is not None else metric.endswith("_fraction")


@dataclass(frozen=True)
class FigureDrift:
    """One figure of one trace, baseline against current."""

    metric: str
    at: int | None
    baseline: float | None
    current: float | None
    tolerance: Tolerance | None

    @property
    def label(self) -> str:
        return figure_label(self.metric, self.at)

    @property
    def delta(self) -> float | None:
        if self.baseline is None or self.current is None:
            return None
        return self.current - self.baseline

    @property
    def limit(self) -> float | None:
        if self.tolerance is None or self.baseline is None:
            return None
        return self.tolerance.limit(self.baseline)

    @property
    def drifted(self) -> bool:
        if self.tolerance is None:
            return False
        if self.baseline is None or self.current is None:
            # A figure that became (un)defined has moved by more than any tolerance.
            return (self.baseline is None) != (self.current is None)
        slack = _SLACK * max(1.0, abs(self.baseline), abs(self.current))
        return abs(self.current - self.baseline) > self.limit + slack

    def describe_tolerance(self) -> str:
        if self.tolerance is None:
            return "-"
        if self.tolerance.relative and self.limit is not None:
            return f"{self.tolerance.describe()} (±{self.limit:.6g})"
        return f"±{self.tolerance.describe()}"

    def describe_delta(self) -> str:
        delta = self.delta
        if delta is None:
            return "-"
        text = f"{delta:+.6g}" if isinstance(delta, float) else f"{delta:+,}"
        if self.baseline:
            text += f" ({delta / abs(self.baseline) * 100:+.2f}%)"
        return text

    def message(self) -> str:
        """``offloadable_fraction@345792: baseline 0.59, current 0.65, delta +0.06 ...``"""
        return (f"{self.label}: baseline {format_value(self.baseline)}, current "
                f"{format_value(self.current)}, delta {self.describe_delta()}, tolerance "
                f"{self.describe_tolerance()}")

    def to_dict(self) -> dict:
        return {"metric": self.metric, "at": self.at, "label": self.label,
                "baseline": self.baseline, "current": self.current, "delta": self.delta,
                "tolerance": None if self.tolerance is None else self.tolerance.text,
                "limit": self.limit, "drifted": self.drifted}


NEW = "new"
MISSING = "missing"
DRIFTED = "drifted"
WITHIN = "within tolerance"
ERROR = "error"


@dataclass
class TraceComparison:
    """The outcome for one trace: ``new`` (no baseline; reported, not failed), ``missing``
    (in the baseline only), ``error`` (unreadable in this run), ``drifted`` or
    ``within tolerance``; ``changed`` tells whether the file's content hash moved."""

    name: str
    status: str
    figures: list[FigureDrift] = field(default_factory=list)
    baseline_sha256: str | None = None
    current_sha256: str | None = None

    @property
    def changed(self) -> bool | None:
        if not self.baseline_sha256 or not self.current_sha256:
            return None
        return self.baseline_sha256 != self.current_sha256

    @property
    def drifted(self) -> list[FigureDrift]:
        return [f for f in self.figures if f.drifted]

    def message(self) -> str:
        """One paragraph for a failing test: which trace, and every figure that drifted."""
        head = f"trace {self.name!r} drifted from the baseline"
        if self.changed:
            head += (f" (trace changed: content sha256 {self.baseline_sha256[:12]} -> "
                     f"{self.current_sha256[:12]})")
        return "\n".join([head + ":", *(f"  {f.message()}" for f in self.drifted)])

    def to_dict(self) -> dict:
        return {"name": self.name, "status": self.status, "changed": self.changed,
                "baseline_sha256": self.baseline_sha256, "current_sha256": self.current_sha256,
                "figures": [f.to_dict() for f in self.figures]}


@dataclass
class Comparison:
    traces: list[TraceComparison]
    tolerances: list[Tolerance]

    @property
    def failed(self) -> bool:
        return any(t.status == DRIFTED for t in self.traces)

    def by_name(self) -> dict[str, TraceComparison]:
        return {t.name: t for t in self.traces}

    def to_dict(self) -> dict:
        return {"tolerances": [t.text for t in self.tolerances], "failed": self.failed,
                "traces": [t.to_dict() for t in self.traces]}


def content_sha256_of(trace: TraceLike) -> str | None:
    """The trace file's sha256 recorded in a result."""
    return as_result(trace).content_sha256 or None


def _figures(base: TraceResult, cur: TraceResult,
             tolerances: Sequence[Tolerance]) -> list[FigureDrift]:
    metrics = list(dict.fromkeys([*(t.metric for t in tolerances), *HEADLINE_METRICS]))
    out = []
    for metric in metrics:
        before, after = metric_values(base, metric), metric_values(cur, metric)
        if before is None or after is None:
            continue
        # Sizes measured by one run only have nothing to compare against.
        sizes = [s for s in before if s in after]
        for at in sorted(sizes, key=_size_order):
            tol = next((t for t in tolerances if t.applies_to(metric, at)), None)
            out.append(FigureDrift(metric, at, before[at], after[at], tol))
    return out


def _size_order(s: int | str | None) -> tuple:
    return (0, 0) if s is None else (1, s) if isinstance(s, int) else (2, s)


def check_metrics(tolerances: Sequence[Tolerance], traces: Sequence[TraceLike]) -> None:
    """Reject a tolerance whose metric no trace of ``traces`` has (most likely a typo)."""
    if not traces:
        return
    traces = [as_result(t) for t in traces]
    for tol in tolerances:
        values = [v for t in traces if (v := metric_values(t, tol.metric)) is not None]
        if not values:
            known = sorted({m for t in traces for m in t.figures if m in METRICS})
            word = "unknown metric" if tol.metric not in METRICS else "no trace has metric"
            raise KvReuseError(f"{word} {tol.metric!r} in drift tolerance {tol.text!r} (the "
                               f"traces have: {', '.join(known)})")
        if tol.at is not None and not any(tol.at in v for v in values):
            sizes = sorted({s for v in values for s in v if isinstance(s, int)})
            raise KvReuseError(f"drift tolerance {tol.text!r}: no trace measured "
                               f"{tol.metric} at {tol.at} (sizes: "
                               f"{', '.join(map(str, sizes)) or 'none'})")


def _identity(trace: TraceResult) -> str | None:
    """The trace file and analysis parameters, content aside: one trace under two names."""
    if not trace.path:
        return None
    return repr((trace.path, sorted(with_defaults(trace.params).items(),
                                    key=lambda kv: kv[0])))


def _results(traces: Sequence[TraceLike], what: str) -> list[TraceResult]:
    return [as_result(t, f"{what}: a trace result") for t in traces]


def pair_traces(baseline: Sequence[TraceLike], current: Sequence[TraceLike], *,
                pair_single: bool = False,
                ) -> tuple[list[tuple[TraceResult, TraceResult | None]], list[TraceResult]]:
    """``([(current, its baseline or None)], baseline traces left unpaired)``.

    A current trace pairs with the baseline trace of its name; failing that, with the one
    of the same file path and analysis parameters (a test that names the trace by its path
    while the saved run used a manifest's name). With ``pair_single`` two runs of one trace
    each always pair.
    """
    baseline = _results(baseline, "baseline")
    current = _results(current, "current run")
    if pair_single and len(baseline) == 1 and len(current) == 1:
        return [(current[0], baseline[0])], []
    by_name = {b.name: b for b in baseline}
    identities: dict[str, list[TraceResult]] = {}
    for b in baseline:
        if (key := _identity(b)) is not None:
            identities.setdefault(key, []).append(b)
    claimed = {id(by_name[c.name]) for c in current if c.name in by_name}
    pairs = []
    for cur in current:
        base = by_name.get(cur.name)
        if base is None:
            same = [b for b in identities.get(_identity(cur) or "", []) if id(b) not in claimed]
            if len(same) == 1:
                base = same[0]
                claimed.add(id(base))
        pairs.append((cur, base))
    return pairs, [b for b in baseline if id(b) not in claimed]


def compare_runs(baseline: Sequence[TraceLike], current: Sequence[TraceLike],
                 tolerances: Sequence[Tolerance] = (), *, pair_single: bool = False,
                 check_names: bool = True) -> Comparison:
    """Compare ``current`` trace results with ``baseline`` ones (paired by
    :func:`pair_traces`); ``check_names=False`` skips the unknown-metric check (done once
    up front instead)."""
    pairs, unpaired = pair_traces(baseline, current, pair_single=pair_single)
    if check_names:
        check_metrics(tolerances, [*(b for _, b in pairs if b is not None), *unpaired,
                                   *(c for c, _ in pairs)])
    traces = []
    for cur, base in pairs:
        if base is None:
            traces.append(TraceComparison(cur.name, NEW, current_sha256=cur.content_sha256))
            continue
        if cur.error or base.error:
            traces.append(TraceComparison(cur.name, ERROR, baseline_sha256=base.content_sha256,
                                          current_sha256=cur.content_sha256))
            continue
        figures = _figures(base, cur, tolerances)
        status = DRIFTED if any(f.drifted for f in figures) else WITHIN
        traces.append(TraceComparison(cur.name, status, figures, base.content_sha256,
                                      cur.content_sha256))
    traces += [TraceComparison(b.name, MISSING, baseline_sha256=b.content_sha256)
               for b in unpaired]
    return Comparison(traces, list(tolerances))


def format_comparison(comparison: Comparison) -> str:
    """A plain-text table of every compared figure, then the trace-level notes."""
    header = ("trace", "figure", "baseline", "current", "delta", "tolerance", "result")
    rows = []
    for t in comparison.traces:
        for f in t.figures:
            result = "DRIFT" if f.drifted else ("ok" if f.tolerance else "")
            rows.append((t.name, f.label, format_value(f.baseline), format_value(f.current),
                         f.describe_delta(), f.describe_tolerance(), result))
    lines = []
    if rows:
        widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
        right = {2, 3, 4}

        def fmt(row: Sequence[str]) -> str:
            cells = [c.rjust(w) if i in right else c.ljust(w)
                     for i, (c, w) in enumerate(zip(row, widths, strict=True))]
            return "  ".join(cells).rstrip()

        lines += [fmt(header), fmt(["-" * w for w in widths]), *map(fmt, rows), ""]
    for t in comparison.traces:
        note = {NEW: "new (not in the baseline; not compared)",
                MISSING: "missing from this run (in the baseline only)",
                ERROR: "not compared (the trace could not be analysed)",
                DRIFTED: f"DRIFTED ({len(t.drifted)} figure(s) beyond tolerance)",
                WITHIN: "within tolerance" if any(f.tolerance for f in t.figures)
                else "compared (no tolerance applies)"}[t.status]
        if t.changed:
            note += (f"; trace changed (content sha256 {t.baseline_sha256[:12]} -> "
                     f"{t.current_sha256[:12]})")
        elif t.changed is False:
            note += "; same trace content"
        lines.append(f"{t.name}: {note}")
    drifted = [t for t in comparison.traces if t.status == DRIFTED]
    if drifted:
        n = sum(len(t.drifted) for t in drifted)
        lines.append(f"\n{n} figure(s) of {len(drifted)} trace(s) drifted beyond tolerance.")
    elif not comparison.tolerances:
        lines.append("\nNo tolerance given (--fail METRIC:AMOUNT): nothing can fail.")
    return "\n".join(lines)
