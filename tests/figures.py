"""Every default figure of an analysis, for tests that two readings of a trace agree."""

from __future__ import annotations

import math

from pytest_kvreuse.metrics import METRICS

SIZES = (2_048, 16_384, 345_792)


def figures(a, sizes=SIZES) -> dict:
    """``{(metric, size or None): value}`` of every default figure with no argument or a
    cache size alone (None where undefined)."""
    out = {}
    for name, m in METRICS.items():
        if not m.default:
            continue
        if not m.args:
            out[name, None] = m.value(a)
        elif m.sized:
            out.update(((name, s), m.value(a, at=s)) for s in sizes)
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in out.items()}
