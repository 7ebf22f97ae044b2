"""Threshold checks on the figures of a ReuseAnalysis: which metrics exist, how a value is
read, and the one-paragraph message of a violated bound. No pytest here: the plugin, the
manifests and (later) the CLI share it."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import KvReuseError
from .loaders import HASH_ID_FORMATS

# Figures that take a cache size in tokens (a method of ReuseAnalysis). Listed by name so a
# manifest can name one before the analysis provides it and still get a clear message.
AT_METRICS = ("offloadable_fraction", "lru_hit_fraction", "lru_offloadable_fraction")
SCALAR_METRICS = (
    "reused_fraction", "compulsory_fraction", "num_requests", "num_blocks", "unique_blocks",
    "total_tokens", "reuse_count", "interval_min", "interval_median", "interval_max",
)


class CheckError(KvReuseError):
    """A check or a marker that cannot be evaluated as written."""


class ThresholdViolation(Exception):
    """A figure of a trace is outside the bound its check sets (not an input error)."""


def metric_needs_at(metric: str) -> bool:
    """Whether ``metric`` is read at a cache size; unknown names raise CheckError."""
    from .core.analysis import ReuseAnalysis

    if metric in AT_METRICS:
        return True
    if metric in SCALAR_METRICS:
        return False
    attr = getattr(ReuseAnalysis, metric, None)
    if metric.startswith("_") or attr is None:
        raise CheckError(f"unknown metric {metric!r} (known: "
                         f"{', '.join(AT_METRICS + SCALAR_METRICS)})")
    # Figures added to ReuseAnalysis later work without listing them here: a method takes
    # the size, a property is a plain value.
    return callable(attr)


def is_fraction(metric: str) -> bool:
    return metric.endswith("_fraction")


@dataclass(frozen=True)
class Check:
    """``min <= metric(at) <= max``; either bound may be absent."""

    metric: str
    at: int | None = None
    min: float | None = None
    max: float | None = None

    @property
    def label(self) -> str:
        return self.metric if self.at is None else f"{self.metric}@{self.at}"

    def validate(self) -> Check:
        needs_at = metric_needs_at(self.metric)
        if needs_at and self.at is None:
            raise CheckError(f"metric {self.metric!r} needs 'at' (a cache size in tokens)")
        if not needs_at and self.at is not None:
            raise CheckError(f"metric {self.metric!r} takes no 'at'")
        if self.min is None and self.max is None:
            raise CheckError(f"check {self.label} sets neither 'min' nor 'max'")
        for name, bound in (("min", self.min), ("max", self.max)):
            if bound is not None and is_fraction(self.metric) and not 0 <= bound <= 1:
                raise CheckError(f"{name} = {bound} for {self.metric} is not a fraction "
                                 f"between 0 and 1 (write 0.25 for 25 %)")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise CheckError(f"check {self.label}: min {self.min} is above max {self.max}")
        return self


def metric_value(analysis: object, metric: str, at: int | None = None) -> float:
    """Read ``metric`` off ``analysis`` (called with ``at`` when it is a method)."""
    attr = getattr(analysis, metric, None)
    if attr is None or metric.startswith("_"):
        from . import __version__

        raise CheckError(f"metric {metric!r} is not available in pytest-kvreuse "
                         f"{__version__}")
    if callable(attr):
        if at is None:
            raise CheckError(f"metric {metric!r} needs 'at' (a cache size in tokens)")
        value = attr(at)
    else:
        value = attr
    return math.nan if value is None else float(value)


def format_value(metric: str, value: float | None) -> str:
    if value is None or math.isnan(value):
        return "undefined"
    if is_fraction(metric):
        return f"{value:.6g} ({value * 100:.2f} %)"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,}"


def describe_parameters(analysis: object) -> str:
    """Block size, tokenizer, requests and tokens of an analysis, for failure messages."""
    params = getattr(analysis, "params", {}) or {}
    tokenizer = params.get("tokenizer")
    if tokenizer is None:
        tokenizer = ("none (hash ids)" if params.get("format") in HASH_ID_FORMATS
                     else "default")
    return (f"block size {analysis.block_size}, tokenizer {tokenizer}, "
            f"{analysis.num_requests:,} requests, {analysis.total_tokens:,} tokens")


def evaluate(analysis: object, check: Check) -> tuple[float, str | None]:
    """``(value, None)`` when the check holds, else ``(value, message)``."""
    value = metric_value(analysis, check.metric, check.at)
    where = f"{check.metric} at {check.at:,} tokens" if check.at is not None else check.metric
    if math.isnan(value):
        return value, (f"{where} is undefined: no request holds a full block of "
                       f"{analysis.block_size} tokens")
    if check.min is not None and value < check.min:
        return value, (f"{where} is {format_value(check.metric, value)}, below the "
                       f"minimum {check.min:g}")
    if check.max is not None and value > check.max:
        return value, (f"{where} is {format_value(check.metric, value)}, above the "
                       f"maximum {check.max:g}")
    return value, None


def violation_paragraph(trace: str, path: str, analysis: object, message: str) -> str:
    """The one paragraph a failed check prints: trace, figure, value, bound, parameters."""
    return (f"kvreuse: trace {trace!r} ({path}): {message} "
            f"({describe_parameters(analysis)}).")
