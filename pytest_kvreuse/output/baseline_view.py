"""The report's view of a trace's baseline: every compared figure baseline vs current, and
a trend chart over the saved runs (rendered by ``templates/_baseline.html.j2``).

Reads the ``extras["baseline"]`` and ``extras["trend"]`` blocks
:meth:`BaselineGuard.report_data` adds to a trace result; a result without them has no
baseline view. (The baseline's CCDF needs
nothing here: it travels as one more curve, drawn on the trace's own plot.)
"""

from __future__ import annotations

import math
import numbers

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..baselines.drift import is_fraction
from ..formatting import count, percent, signed_delta
from ..result import TraceLike, as_result
from .plot import svg_data_uri

_STATUS_TEXT = {"drifted": "drifted beyond tolerance", "within tolerance": "within tolerance"}


def _is_fraction(label: str) -> bool:
    return is_fraction(label.split("@", 1)[0])


def _figure_text(label: str) -> str:
    metric, _, at = label.partition("@")
    words = metric.replace("_", " ")
    return f"{words} at {int(at):,} tokens" if at.isdigit() else words


def _value(label: str, x: object) -> str:
    return percent(x) if _is_fraction(label) else count(x)


def _real(x: object) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool) and not math.isnan(x)


def _delta(label: str, delta: object, baseline: object) -> str:
    return signed_delta("fraction" if _is_fraction(label) else "count", delta, baseline)


def _tolerance(label: str, tolerance: object, limit: object) -> str:
    if not tolerance:
        return ""
    amount = str(tolerance).rsplit(":", 1)[-1].strip()
    if not _real(limit):
        return amount
    bound = f"± {limit * 100:.2f} pp" if _is_fraction(label) else f"± {count(limit)}"
    return f"{amount} ({bound})" if amount.endswith("%") else bound


def baseline_view(result: TraceLike) -> dict | None:
    """What ``_baseline.html.j2`` shows for one trace, or None without baseline data."""
    result = as_result(result)
    extras = result.extras
    block = extras.get("baseline") if isinstance(extras.get("baseline"), dict) else None
    trend = extras.get("trend") if isinstance(extras.get("trend"), list) else None
    if block is None and not trend:
        return None
    view: dict = {"run": None, "status": "", "drifted": False, "changed": "", "rows": [],
                  "trend_plot": None, "trend_alt": ""}
    if block is not None:
        status = str(block.get("status") or "")
        view.update(run=block.get("run"), status=_STATUS_TEXT.get(status, status),
                    drifted=status == "drifted")
        if block.get("changed") is True:
            view["changed"] = (f"trace changed (content sha256 "
                               f"{str(block.get('baseline_sha256'))[:12]} → "
                               f"{str(block.get('current_sha256'))[:12]})")
        elif block.get("changed") is False:
            view["changed"] = "same trace content"
        for f in block.get("figures") or []:
            label = str(f.get("label") or f.get("metric") or "?")
            view["rows"].append({
                "figure": _figure_text(label), "key": label,
                "baseline": _value(label, f.get("baseline")),
                "current": _value(label, f.get("current")),
                "delta": _delta(label, f.get("delta"), f.get("baseline")),
                "tolerance": _tolerance(label, f.get("tolerance"), f.get("limit")),
                "drifted": f.get("drifted") is True,
                "checked": bool(f.get("tolerance")),
            })
    if trend:
        view["trend_plot"], view["trend_alt"] = _trend_plot(trend, result.name)
    return view


def _trend_plot(trend: list[dict], name: str) -> tuple[str | None, str]:
    """Every fraction of the trace across the saved runs (and this one), as a data URI."""
    labels = [str(p.get("run") or "?") for p in trend]
    figures = sorted({k for p in trend for k in (p.get("figures") or {}) if _is_fraction(k)})
    if len(trend) < 2 or not figures:
        return None, ""
    # A bare Figure, not pyplot: no backend chosen, no figure left open in the host process.
    fig = Figure(figsize=(7.0, 3.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    xs = list(range(len(trend)))
    for key in figures:
        ys = [(p.get("figures") or {}).get(key) for p in trend]
        ys = [y * 100.0 if _real(y) else math.nan for y in ys]
        ax.plot(xs, ys, marker="o", ms=4, lw=1.5, label=_figure_text(key))
    ax.set_xticks(xs)
    ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("% of tokens")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    ax.set_title(f"{name}: figures over the saved runs", fontsize=10)
    fig.tight_layout()
    alt = (f"Trend of {name} over {len(trend)} runs ({labels[0]} to {labels[-1]}): "
           + ", ".join(_figure_text(k) for k in figures))
    return svg_data_uri(fig), alt
