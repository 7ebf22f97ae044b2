"""Plain-dict results of one analysed trace: what the plugin, the report, the JSON output
and the baselines exchange (dicts cross xdist workers; analyses do not)."""

from __future__ import annotations

from collections.abc import Iterable

from .analysis import ReuseAnalysis
from .plot import downsample

CURVE_POINTS = 400


def _num(x: float) -> float | None:
    return None if x != x else float(x)


def trace_result(analysis: ReuseAnalysis, *, name: str,
                 gpu_cache_sizes: Iterable[int] = ()) -> dict:
    """Figures, offloadable fractions at ``gpu_cache_sizes``, and down-sampled curves."""
    figures = analysis.to_dict()
    params = figures.pop("params")
    x, y = analysis.ccdf()
    cx, cy = downsample(x, y, CURVE_POINTS)
    return {
        "name": name,
        "params": params,
        "figures": figures,
        "offloadable_fraction": {str(int(c)): _num(analysis.offloadable_fraction(c))
                                 for c in sorted(set(int(c) for c in gpu_cache_sizes))},
        "curves": {"ccdf": {"x": [int(v) for v in cx], "y": [float(v) for v in cy]}},
        "timings": {k: round(float(v), 4) for k, v in sorted(analysis.timings.items())},
    }
