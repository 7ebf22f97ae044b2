"""Plain-dict results of one analysed trace: what the plugin, the report, the JSON output
and the baselines exchange (dicts cross xdist workers; analyses do not)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from .core.analysis import ReuseAnalysis, defined
from .core.curves import downsample

CURVE_POINTS = 400


def _curve(x: np.ndarray, y: np.ndarray) -> dict:
    cx, cy = downsample(x, y, CURVE_POINTS)
    return {"x": [int(v) for v in cx], "y": [float(v) for v in cy]}


def trace_result(analysis: ReuseAnalysis, *, name: str,
                 gpu_cache_sizes: Iterable[int] = (), lru: bool = True) -> dict:
    """Figures, offloadable fractions at ``gpu_cache_sizes``, and down-sampled curves.

    With ``lru`` (the default; it costs one stack-distance pass) also ``"lru"``: the exact
    LRU ``hit_fraction`` and ``offloadable_fraction``, each a map from size to share, and
    ``curves["lru"]``, the share of tokens seen before that an LRU cache of ``x`` tokens no
    longer holds (the exact twin of ``curves["ccdf"]``, drawn on the same axes).
    """
    figures = analysis.to_dict()
    params = figures.pop("params")
    sizes = sorted(set(int(c) for c in gpu_cache_sizes))
    result = {
        "name": name,
        "params": params,
        "figures": figures,
        "offloadable_fraction": {str(c): defined(analysis.offloadable_fraction(c))
                                 for c in sizes},
        "curves": {"ccdf": _curve(*analysis.ccdf())},
    }
    if lru:
        result["lru"] = {
            "hit_fraction": {str(c): defined(analysis.lru_hit_fraction(c)) for c in sizes},
            "offloadable_fraction": {str(c): defined(analysis.lru_offloadable_fraction(c))
                                     for c in sizes},
        }
        result["curves"]["lru"] = _curve(*analysis.lru_offloadable_curve())
    return result


def trace_timings(analysis: ReuseAnalysis) -> dict:
    """Seconds each step took. Volatile, so never part of a trace's result: they go to the
    run block (``run["timings"][name]``), keeping per-trace results byte-identical."""
    return {k: round(float(v), 4) for k, v in sorted(analysis.timings.items())}
