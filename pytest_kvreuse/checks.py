"""Threshold checks on the figures of an analysis: a metric of the registry, its arguments
and its bounds, and the one-paragraph message of a violated bound. No pytest here: the
plugin's items and markers and the CLI share it."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

from . import __version__
from .errors import KvReuseError
from .formatting import TOKENS, error_text, size
from .loaders.registry import HASH_ID_FORMATS
from .metrics import NO_SESSIONS, NO_TIMESTAMPS, Metric, metric, sampling_of


class CheckError(KvReuseError):
    """A check or a marker that cannot be evaluated as written."""


class ThresholdViolation(Exception):
    """A figure of a trace is outside the bound its check sets (not an input error)."""


def metric_needs_at(name: str) -> bool:
    """Whether metric ``name`` is read at a cache size; an unknown name raises CheckError
    listing the scalar metrics."""
    return "at" in _metric(name).arg_names


def _metric(name: object) -> Metric:
    try:
        return metric(name)
    except KvReuseError as exc:
        raise CheckError(exc.message) from None


@dataclass(frozen=True)
class Check:
    """``min <= metric(at, **args) <= max``; either bound may be absent. ``args`` holds the
    metric's arguments besides ``at`` as ``(name, value)`` pairs."""

    metric: str
    at: int | None = None
    min: float | None = None
    max: float | None = None
    args: tuple[tuple[str, object], ...] = ()

    @property
    def arguments(self) -> dict[str, object]:
        return {**({"at": self.at} if self.at is not None else {}), **dict(self.args)}

    @property
    def label(self) -> str:
        label = self.metric if self.at is None else f"{self.metric}@{self.at}"
        return label + "".join(f",{k}={v}" for k, v in self.args)

    def validate(self) -> Check:
        m = _metric(self.metric)
        try:
            parsed = m.read_args(self.arguments)
        except KvReuseError as exc:
            raise CheckError(exc.message) from None
        if self.min is None and self.max is None:
            raise CheckError(f"check {self.label} sets neither 'min' nor 'max'")
        for name, bound in (("min", self.min), ("max", self.max)):
            if bound is None:
                continue
            if isinstance(bound, bool) or not isinstance(bound, numbers.Real) \
                    or math.isnan(bound):
                raise CheckError(f"{name} of check {self.label} must be a number, got "
                                 f"{bound!r}")
            if m.is_fraction and not 0 <= bound <= 1:
                raise CheckError(f"{name} = {bound} for {self.metric} is not a fraction "
                                 f"between 0 and 1 (write 0.25 for 25 %)")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise CheckError(f"check {self.label}: min {self.min} is above max {self.max}")
        at = parsed.get("at")
        rest = tuple((k, v) for k, v in parsed.items() if k != "at")
        if at != self.at or rest != self.args:
            return Check(self.metric, at, self.min, self.max, rest)  # type: ignore[arg-type]
        return self


def metric_value(analysis: object, name: str, at: int | None = None,
                 **args: object) -> float:
    """Read metric ``name`` off ``analysis`` (NaN when undefined)."""
    m = _metric(name)
    try:
        value = m.value(analysis, **m.read_args({"at": at, **args}))
    except AttributeError:
        raise CheckError(f"metric {name!r} is not available in pytest-kvreuse "
                         f"{__version__}") from None
    except KvReuseError as exc:
        raise CheckError(exc.message) from None
    return math.nan if value is None else float(value)


def why_undefined(analysis: object, m: Metric) -> str:
    """Why a figure has no value on this analysis, in words for a failure message."""
    if m.needs == NO_SESSIONS:
        return m.needs
    if m.needs == NO_TIMESTAMPS:
        # Says more than the metric can: timestamps present but out of order, or missing
        # on one request.
        reason = getattr(analysis, "times_reason", m.needs)
        if reason is not None:
            return reason
        if getattr(analysis, "reuse_count", 1) == 0:
            return "no block is reused"
    block = getattr(analysis, "block_size", "?")
    if m.needs is not None and getattr(analysis, "num_blocks", 1) \
            and getattr(analysis, "counted_tokens", 1):
        return m.needs
    if getattr(analysis, "num_blocks", 1) == 0:
        return f"no request holds a full block of {block} tokens"
    if getattr(analysis, "counted_tokens", 1) == 0:
        return "the warm-up leaves no full block to count"
    if m.name.startswith("interval_") and getattr(analysis, "reuse_count", 1) == 0:
        return "no block is reused"
    return f"no request holds a full block of {block} tokens"


def evaluate(analysis: object, check: Check) -> tuple[float, str | None]:
    """``(value, None)`` when the check holds, else ``(value, message)``."""
    m = _metric(check.metric)
    value = metric_value(analysis, check.metric, check.at, **dict(check.args))
    text = m.args_text(check.arguments)
    where = check.metric if not text else (
        f"{check.metric} {text}" if text.startswith("at ") else f"{check.metric}, {text}")
    if math.isnan(value):
        return value, f"{where} is undefined: {why_undefined(analysis, m)}"
    if m.unit == TOKENS:
        # A size: in tokens, and in bytes too when the model is known.
        bpt = getattr(analysis, "bytes_per_token", None)
        shown, bound = (lambda v: size(v, bpt)), (lambda v: size(v, bpt))
    else:
        shown, bound = m.exact, (lambda v: f"{v:g}")
    if check.min is not None and value < check.min:
        return value, (f"{where} is {shown(value)}{_sampled(analysis, check)}, below the "
                       f"minimum {bound(check.min)}")
    if check.max is not None and value > check.max:
        return value, (f"{where} is {shown(value)}{_sampled(analysis, check)}, above the "
                       f"maximum {bound(check.max)}")
    return value, None


def _sampled(analysis: object, check: Check) -> str:
    """`` (sampled at rate 0.01 (...): an estimate, standard error 0.32 points)`` for a
    figure of a sampled analysis (docs/sampling.md), else nothing."""
    error = getattr(analysis, "figure_error", None)
    if error is None or sampling_of(check.metric) == "exact":
        return ""
    e = error(check.metric, **check.arguments)
    text = error_text(_metric(check.metric).unit, e, 4, "unknown")
    return (f" ({analysis.sampled_note}: an estimate, "  # type: ignore[attr-defined]
            f"standard error {text})")


def describe_parameters(analysis: object) -> str:
    """Block size, tokenizer, requests and tokens of an analysis, for failure messages."""
    params = getattr(analysis, "params", {}) or {}
    tokenizer = params.get("tokenizer")
    if tokenizer is None:
        tokenizer = ("none (hash ids)" if params.get("format") in HASH_ID_FORMATS
                     else "default")
    model = ""
    if params.get("model") is not None:
        model = (f"model {params['model']} ({params.get('kv_dtype')}, tp "
                 f"{params.get('tp')}), ")
    return (f"block size {analysis.block_size}, tokenizer {tokenizer}, {model}"
            f"{analysis.num_requests:,} requests, {analysis.total_tokens:,} tokens")


def violation_paragraph(trace: str, path: str, analysis: object, message: str) -> str:
    """The one paragraph a failed check prints: trace, figure, value, bound, parameters."""
    return (f"kvreuse: trace {trace!r} ({path}): {message} "
            f"({describe_parameters(analysis)}).")
