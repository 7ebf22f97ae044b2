"""Curves as the report and the results carry them: a few hundred points, not millions.

Numpy only: results are built on every xdist worker, which should not pay for matplotlib.
"""

from __future__ import annotations

import numpy as np


def downsample(x: np.ndarray, y: np.ndarray, points: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """At most ``points`` points spread evenly on the log x axis, keeping both ends.

    The curve is a non-increasing step function, so keeping for each log bin the last
    point (lowest y) preserves its shape to the eye.
    """
    x = np.asarray(x)
    y = np.asarray(y)
    if x.size <= points:
        return x, y
    lx = np.log10(np.maximum(x.astype(np.float64), 1.0))
    edges = np.linspace(lx[0], lx[-1], points)
    idx = np.unique(np.concatenate([[0], np.searchsorted(lx, edges, side="right") - 1,
                                    [x.size - 1]]))
    idx = idx[idx >= 0]
    return x[idx], y[idx]
