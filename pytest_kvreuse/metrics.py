"""The metric registry: one entry per scalar figure of a trace.

Checks (manifests, marker bounds), drift tolerances, the terminal summary, the report's
tables, baselines, the CLI summary and its JSON all read :data:`METRICS`: a figure added
here (plus its computation on :class:`~pytest_kvreuse.core.analysis.ReuseAnalysis`) shows
up in all of them. No numpy here: manifests are checked against it at collection.

A figure is a metric and its arguments: ``offloadable_fraction`` at ``at = 345792`` tokens
is the figure ``offloadable_fraction@345792``. Definitions: ``docs/definitions.md``.
"""

from __future__ import annotations

import difflib
import math
import numbers
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from .errors import KvReuseError
from .formatting import (
    COUNT,
    FRACTION,
    RATIO,
    SECONDS,
    TOKENS,
    exact_text,
    percent,
    seconds,
    value_text,
)
from .sizes import ByteSize, parse_size


class MetricError(KvReuseError):
    """A metric name, or its arguments, that no figure has."""


def parse_cache_size(name: str, value: object) -> int | ByteSize:
    """A cache size: tokens (``345792``, ``"345,792"``), or bytes with a unit (``64GiB``),
    kept as a :class:`~pytest_kvreuse.sizes.ByteSize` until the model's bytes per token
    turn it into tokens."""
    try:
        return parse_size(name, value)
    except KvReuseError as exc:
        raise MetricError(exc.message) from None


def parse_fraction(name: str, value: object) -> float:
    """A fraction in [0, 1] (``0.3``, not ``30``); text as a result's key holds it."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, numbers.Real) \
            or not 0.0 <= float(value) <= 1.0:
        raise MetricError(f"{name!r} must be a fraction between 0 and 1 (0.3 for 30 %), got "
                          f"{value!r}")
    return float(value)


_DURATION = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*(s|sec|min|h)?\s*$")
_PER_UNIT = {None: 1, "s": 1, "sec": 1, "min": 60, "h": 3600}


def parse_seconds(name: str, value: object) -> int | float:
    """A duration in seconds: a non-negative number, or text with a unit, ``600s``,
    ``10min``, ``1h`` (no unit: seconds). Whole seconds come back as an int, so the figure
    is keyed ``"600"`` in results whichever way it was written."""
    if isinstance(value, str):
        m = _DURATION.match(value.lower())
        if m is None:
            raise MetricError(f"{name!r} must be a duration such as 600s, 10min or 1h, got "
                              f"{value!r}")
        value = float(m.group(1)) * _PER_UNIT[m.group(2)]
    if isinstance(value, bool) or not isinstance(value, numbers.Real) \
            or not math.isfinite(value) or value < 0:
        raise MetricError(f"{name!r} must be a non-negative finite number of seconds, got "
                          f"{value!r}")
    v = float(value)
    return int(v) if v.is_integer() else v


#: Routing policies of replicas behind a router (docs/replicas.md).
ROUTINGS = ("round-robin", "prefix", "session", "random")


def parse_replicas(name: str, value: object) -> int:
    """A number of replicas: a positive integer (digits in text)."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise MetricError(f"{name!r} must be a positive number of replicas, got {value!r}")
    return int(value)


def parse_routing(name: str, value: object) -> str:
    """A routing policy, lower-cased (``round-robin``, ``prefix``, ``session``,
    ``random``)."""
    text = value.strip().lower() if isinstance(value, str) else value
    if text not in ROUTINGS:
        raise MetricError(f"{name!r} must be a routing policy ({', '.join(ROUTINGS)}), got "
                          f"{value!r}")
    return text  # type: ignore[return-value]


_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")


def parse_name(name: str, value: object) -> str:
    """A name (an eviction policy: ``arc``, ``S3FIFO``), lower-cased: one figure however
    it is capitalised."""
    if not isinstance(value, str) or not _NAME.match(value.strip()):
        raise MetricError(f"{name!r} must be a name such as arc or s3fifo, got {value!r}")
    return value.strip().lower()


@dataclass(frozen=True)
class Arg:
    """An argument of a metric: its name in manifests (``at``), how a value is read, and
    how it reads in words (``345,792 tokens``, ``600 s``)."""

    name: str
    help: str
    parse: Callable[[str, object], object] = parse_cache_size
    unit: str = TOKENS

    def text(self, value: object) -> str:
        if isinstance(value, ByteSize):
            return value.text
        if self.unit == TOKENS:
            return f"{_int_text(value)} tokens"
        if self.unit == FRACTION:
            return percent(value)
        if self.unit == SECONDS:
            return seconds(value)
        return str(value)


AT = Arg("at", "a GPU KV cache size in tokens, or in bytes (64GiB) with the model")
LOWER_TIER = Arg("lower_tier", "the size of a lower (CPU/SSD) tier below the GPU cache, "
                               "in tokens, or in bytes (1TiB) with the model")
HIT = Arg("hit", "an LRU hit fraction to reach (0.3 for 30 %)", parse_fraction, FRACTION)
SHARE = Arg("share", "a share of the reachable LRU hit rate (0.9 for 90 %)", parse_fraction,
            FRACTION)
TTL = Arg("at", "a time-to-live in seconds (600s, 10min, 1h)", parse_seconds, SECONDS)
POLICY = Arg("policy", "a libCacheSim eviction policy (arc, s3fifo, ...)", parse_name, "")
REPLICAS = Arg("replicas", "a number of replicas behind a router, each with a GPU cache of "
                           "`at` tokens", parse_replicas, "")
ROUTING = Arg("routing", "how requests are routed to the replicas: "
                         + ", ".join(ROUTINGS), parse_routing, "")

NO_TIMESTAMPS = "the trace carries no timestamps"
# Capacity planning: the share of the reachable LRU hit rate a GPU cache is sized for, and the
# share of an unbounded lower tier's hits a bounded tier must serve.
REACHABLE_SHARE = 0.9
LOWER_TIER_SHARE = 0.99
NO_SESSIONS = "the trace carries no session ids"


@dataclass(frozen=True)
class Metric:
    """One scalar figure: what it is called and shown as, and how it is computed."""

    name: str
    label: str
    unit: str
    help: str
    compute: Callable[..., object]
    args: tuple[Arg, ...] = ()
    # Column header of the terminal summary.
    short: str = ""
    # Compared and trended between runs even when no tolerance names it.
    headline: bool = False
    # Left out of results where undefined (a figure some traces cannot have).
    optional: bool = False
    # Why the figure is undefined when the trace lacks what it needs (checks say so).
    needs: str | None = None
    # Computed for every result; False: only when asked (OPT may take a while).
    default: bool = True

    @property
    def arg_names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.args)

    @property
    def is_fraction(self) -> bool:
        return self.unit == FRACTION

    @property
    def sized(self) -> bool:
        """Read at a cache size alone: computed at every size of interest of a trace."""
        return self.args == (AT,)

    @property
    def at_tokens(self) -> bool:
        """Its ``at`` is a cache size in tokens (not a TTL)."""
        return AT in self.args

    def args_text(self, args: Mapping[str, object]) -> str:
        """The arguments in words: ``at 345,792 tokens, policy arc``."""
        parts = []
        for arg in self.args:
            if args.get(arg.name) is None:
                continue
            label = "at" if arg.name == "at" else arg.name.replace("_", " ")
            parts.append(f"{label} {arg.text(args[arg.name])}")
        return ", ".join(parts)

    def read_args(self, values: Mapping[str, object]) -> dict[str, object]:
        """The arguments this metric takes, parsed; a missing or extra one is refused."""
        out: dict[str, object] = {}
        for arg in self.args:
            if values.get(arg.name) is None:
                raise MetricError(f"metric {self.name!r} needs {arg.name!r} ({arg.help})")
            out[arg.name] = arg.parse(arg.name, values[arg.name])
        extra = [k for k, v in values.items() if k not in self.arg_names and v is not None]
        if extra:
            if not self.args:
                raise MetricError(f"metric {self.name!r} takes no {extra[0]!r}")
            raise MetricError(f"metric {self.name!r} takes {', '.join(self.arg_names)}, not "
                              f"{', '.join(map(repr, extra))}")
        return out

    def value(self, analysis: object, **args: object) -> float | int | None:
        """The figure on ``analysis``; None where it is undefined."""
        v = self.compute(analysis, **args)
        if v is None or (isinstance(v, float) and v != v):
            return None
        return v  # type: ignore[return-value]

    def text(self, value: object, digits: int = 2, undefined: str = "—") -> str:
        return value_text(self.unit, value, digits, undefined)

    def exact(self, value: object) -> str:
        return exact_text(self.unit, value)


def arg_key(metric: Metric, args: Mapping[str, object]) -> str | None:
    """Where a figure sits in its metric's map in a result: ``"345792"`` for a size alone,
    ``"345792,lower_tier=1000000"`` with more arguments; None for a metric without any."""
    if not metric.args:
        return None
    at = [str(args["at"])] if "at" in metric.arg_names else []
    rest = [f"{a.name}={args[a.name]}" for a in metric.args if a.name != "at"]
    return ",".join(at + rest)


def parse_arg_key(metric: Metric, key: str) -> dict[str, object]:
    """The inverse of :func:`arg_key`."""
    out: dict[str, object] = {}
    for i, part in enumerate(str(key).split(",")):
        name, sep, value = part.partition("=")
        if not sep:
            if i or "at" not in metric.arg_names:
                raise MetricError(f"bad argument key {key!r} for {metric.name!r}")
            name, value = "at", part
        arg = next((a for a in metric.args if a.name == name), None)
        if arg is None:
            raise MetricError(f"bad argument key {key!r} for {metric.name!r}")
        out[name] = arg.parse(name, value)
    return out


def figure_label(metric: str, args: Mapping[str, object] | None = None) -> str:
    """``offloadable_fraction@345792``: a figure as node ids, tolerances and trends name
    it."""
    if not args:
        return metric
    at = args.get("at")
    rest = ",".join(f"{k}={v}" for k, v in args.items() if k != "at")
    return metric + (f"@{at}" if at is not None else "") + (f"[{rest}]" if rest else "")


def figure_title(metric: str, args: Mapping[str, object] | None = None) -> str:
    """``offloadable at 345,792 tokens``: a figure in words, for tables and messages."""
    m = METRICS.get(metric)
    words = m.label if m is not None else metric.replace("_", " ")
    args = dict(args or {})
    if m is not None and args:
        text = m.args_text(args)
        return f"{words} {text}" if text.startswith("at ") else f"{words}, {text}"
    if args.get("at") is not None:
        words += f" at {_int_text(args.pop('at'))} tokens"
    for k, v in args.items():
        words += f", {k.replace('_', ' ')} {_int_text(v)} tokens"
    return words


def _int_text(v: object) -> str:
    try:
        return f"{int(v):,}"  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return str(v)


def _tiers(a: object, at: int, lower_tier: int) -> tuple[float, float]:
    served = a.lru_offloadable_fraction(at, lower_tier)  # type: ignore[attr-defined]
    return served, a.lru_offloadable_fraction(at) - served  # type: ignore[attr-defined]


def _split(method: str, part: str) -> Callable[..., object]:
    def compute(a: object, at: int) -> object:
        split = getattr(a, method)(at)
        return None if split is None else split[part]
    return compute


def _opt_gap(a: object, at: int) -> float:
    return a.opt_hit_fraction(at) - a.lru_hit_fraction(at)  # type: ignore[attr-defined]


def _quantile(q: float) -> Callable[[object], object]:
    return lambda a: a.reuse_time_quantile(q)  # type: ignore[attr-defined]


# Off by default: OPT is exact but may take a while on a big trace. Asked for by a check
# naming them, `kvreuse analyze --opt`, `--kvreuse-opt`.
OPT_METRICS = ("opt_hit_fraction", "opt_gap_fraction")

_METRICS: tuple[Metric, ...] = (
    Metric("num_requests", "requests", COUNT, "requests in the trace",
           lambda a: a.num_requests, short="requests"),
    Metric("num_blocks", "blocks", COUNT, "full KV blocks of all requests",
           lambda a: a.num_blocks),
    Metric("unique_blocks", "unique blocks", COUNT, "distinct block keys (prefixes)",
           lambda a: a.unique_blocks, headline=True),
    Metric("total_tokens", "total tokens", TOKENS,
           "full-block tokens of all requests (blocks x block size)",
           lambda a: a.total_tokens, short="tokens"),
    Metric("prompt_tokens", "prompt tokens", TOKENS,
           "all prompt tokens of all requests, partial tails included: the denominator of "
           "vLLM's own prefix cache hit rate",
           lambda a: a.prompt_tokens),
    Metric("warmup_requests", "warm-up requests", COUNT,
           "requests that fill the cache but are not counted",
           lambda a: a.warmup_requests),
    Metric("counted_tokens", "counted tokens", TOKENS,
           "full-block tokens of the counted requests: the denominator of every fraction",
           lambda a: a.counted_tokens),
    Metric("reuse_count", "reuses (cross-request)", COUNT,
           "blocks seen in an earlier request (one reuse interval each)",
           lambda a: a.reuse_count),
    Metric("reused_fraction", "reused tokens", FRACTION,
           "share of tokens seen before, in an earlier request",
           lambda a: a.reused_fraction, short="reused %", headline=True),
    Metric("interval_min", "interval min, tokens", TOKENS, "shortest reuse interval",
           lambda a: a.interval_min),
    Metric("interval_median", "interval median, tokens", TOKENS,
           "median reuse interval (sorted[n // 2])", lambda a: a.interval_median),
    Metric("interval_max", "interval max, tokens", TOKENS, "longest reuse interval",
           lambda a: a.interval_max),
    Metric("compulsory_fraction", "compulsory (first touch)", FRACTION,
           "share of tokens whose prefix is seen for the first time: no cache serves them",
           lambda a: a.compulsory_fraction, headline=True),
    Metric("broken_reuse_fraction", "broken reuse (turns)", FRACTION,
           "share of tokens in full blocks of a session's previous prompt that its next "
           "turn did not re-send: reuse a prompt change broke (docs/causes.md)",
           lambda a: a.broken_reuse_fraction, short="broken %", optional=True,
           needs=NO_SESSIONS),
    Metric("offloadable_fraction", "offloadable (interval)", FRACTION,
           "share of tokens reused more than `at` tokens apart: seen before, but not "
           "within the last `at` tokens",
           lambda a, at: a.offloadable_fraction(at), args=(AT,), short="offload %",
           headline=True),
    Metric("lru_hit_fraction", "LRU hit", FRACTION,
           "share of tokens an LRU cache of `at` tokens serves",
           lambda a, at: a.lru_hit_fraction(at), args=(AT,), short="LRU hit %",
           headline=True),
    Metric("lru_hit_tokens", "LRU hit tokens", TOKENS,
           "tokens an LRU cache of `at` tokens serves (hit blocks x block size; with "
           "engine vllm, vLLM's hit tokens)",
           lambda a, at: a.lru_hit_tokens(at), args=(AT,)),
    Metric("lru_hit_prompt_fraction", "LRU hit / prompt tokens", FRACTION,
           "LRU hit tokens at `at` tokens over all prompt tokens, partial tails included "
           "(with engine vllm: the prefix cache hit rate vLLM reports)",
           lambda a, at: a.lru_hit_prompt_fraction(at), args=(AT,)),
    Metric("lru_offloadable_fraction", "LRU offloadable", FRACTION,
           "share of tokens seen before that an LRU cache of `at` tokens no longer holds",
           lambda a, at: a.lru_offloadable_fraction(at), args=(AT,),
           short="LRU offload %", headline=True),
    Metric("lru_hit_same_session_fraction", "LRU hit, same session", FRACTION,
           "LRU hits whose previous touch came from the same session",
           _split("lru_hit_split", "same_session"), args=(AT,), optional=True,
           needs=NO_SESSIONS),
    Metric("lru_hit_cross_session_fraction", "LRU hit, cross-session", FRACTION,
           "LRU hits whose previous touch came from another (or unknown) session",
           _split("lru_hit_split", "cross_session"), args=(AT,), optional=True,
           needs=NO_SESSIONS),
    Metric("opt_hit_fraction", "OPT hit", FRACTION,
           "share of tokens a Belady-optimal cache of `at` tokens serves: no eviction "
           "policy does better",
           lambda a, at: a.opt_hit_fraction(at), args=(AT,), short="OPT hit %",
           default=False),
    Metric("opt_gap_fraction", "OPT - LRU gap", FRACTION,
           "OPT hit less LRU hit at `at` tokens: what a smarter eviction policy could win",
           _opt_gap, args=(AT,), short="OPT gap", default=False),
    Metric("policy_hit_fraction", "block-level hit", FRACTION,
           "share of tokens libCacheSim's `policy` with `at` tokens serves, block by block "
           "(ignores that a prefix breaks at its first missing block)",
           lambda a, at, policy: a.policy_hit_fraction(policy, at), args=(AT, POLICY),
           short="block hit %"),
    Metric("routed_hit_fraction", "routed hit", FRACTION,
           "share of tokens `replicas` replicas with an LRU cache of `at` tokens each hit "
           "when requests are routed by `routing`",
           lambda a, at, replicas, routing: a.routed_hit_fraction(
               at, replicas=replicas, routing=routing),
           args=(AT, REPLICAS, ROUTING), short="routed hit %"),
    Metric("routed_load_imbalance", "load imbalance", RATIO,
           "most requests any of the `replicas` replicas took, over the mean (1 is even)",
           lambda a, at, replicas, routing: a.routed(
               at, replicas=replicas, routing=routing).imbalance,
           args=(AT, REPLICAS, ROUTING)),
    Metric("reuse_time_p50", "reuse time median", SECONDS,
           "median seconds between two uses of a block in different requests "
           "(sorted[n // 2])", _quantile(0.5), optional=True, needs=NO_TIMESTAMPS),
    Metric("reuse_time_p90", "reuse time p90", SECONDS,
           "90th percentile of the reuse times (sorted[floor(0.9 n)])", _quantile(0.9),
           optional=True, needs=NO_TIMESTAMPS),
    Metric("reuse_time_p99", "reuse time p99", SECONDS,
           "99th percentile of the reuse times (sorted[floor(0.99 n)])", _quantile(0.99),
           optional=True, needs=NO_TIMESTAMPS),
    Metric("ttl_hit_fraction", "TTL hit", FRACTION,
           "share of tokens a cache of unbounded size serves when it drops a block `at` "
           "seconds after its last use",
           lambda a, at: a.ttl_hit_fraction(at), args=(TTL,), short="TTL hit %",
           optional=True, needs=NO_TIMESTAMPS),
    Metric("ttl_peak_tokens", "TTL cache peak", TOKENS,
           "the most block tokens that cache (TTL `at` seconds) holds at any moment: what "
           "such a tier must be sized for",
           lambda a, at: a.ttl_peak_tokens(at), args=(TTL,), optional=True,
           needs=NO_TIMESTAMPS),
    Metric("lower_tier_hit_fraction", "served by the lower tier", FRACTION,
           "share of tokens the GPU cache of `at` tokens no longer holds but a lower tier "
           "of `lower_tier` tokens (exclusive, LRU) still does",
           lambda a, at, lower_tier: _tiers(a, at, lower_tier)[0], args=(AT, LOWER_TIER)),
    Metric("beyond_tiers_fraction", "held by neither tier", FRACTION,
           "share of tokens seen before that neither the GPU cache nor the lower tier holds",
           lambda a, at, lower_tier: _tiers(a, at, lower_tier)[1], args=(AT, LOWER_TIER)),
    Metric("lru_capacity_reachable", "LRU cache for a share of the reachable hit", TOKENS,
           "the smallest LRU cache, in tokens, whose hit fraction reaches `share` of what an "
           "unbounded one hits (1 - compulsory)",
           lambda a, share: a.lru_capacity_reachable(share), args=(SHARE,),
           short="LRU cache for"),
    Metric("lower_tier_capacity", "lower tier for 99 %", TOKENS,
           "the smallest lower tier, in tokens, below a GPU cache of `at` tokens that serves "
           "99 % of what an unbounded lower tier would: beyond it more tier buys under 1 %",
           lambda a, at: a.lru_lower_tier_for(at, LOWER_TIER_SHARE), args=(AT,),
           short="tier 99 %"),
    Metric("lru_capacity_for", "LRU cache for a hit", TOKENS,
           "the smallest LRU cache, in tokens, whose hit fraction reaches `hit` (undefined "
           "when none does: first touches never hit)",
           lambda a, hit: a.lru_capacity_for(hit), args=(HIT,), short="LRU cache for",
           needs="no cache size reaches that hit fraction (first touches never hit)"),
)
METRICS: dict[str, Metric] = {m.name: m for m in _METRICS}
# Figures that are cache sizes in tokens: results show them in bytes too, with a model.
SIZE_FIGURES = ("lru_capacity_reachable", "lower_tier_capacity", "lru_capacity_for",
                "ttl_peak_tokens")
HEADLINE_METRICS: tuple[str, ...] = tuple(m.name for m in _METRICS if m.headline)


def metric(name: object) -> Metric:
    """The registered metric ``name``; anything else is refused, listing the valid ones."""
    m = METRICS.get(name) if isinstance(name, str) else None
    if m is None:
        # The likely intended names first: the list is long.
        close = difflib.get_close_matches(str(name), METRICS, n=3, cutoff=0.5)
        known = [*close, *(n for n in METRICS if n not in close)]
        raise MetricError(f"unknown metric {name!r} (known: {', '.join(known)}; these are "
                          f"the scalar metrics)")
    return m


@dataclass(frozen=True)
class Figure:
    """A metric with its arguments: one number of a trace."""

    metric: str
    args: dict = field(default_factory=dict, hash=False, compare=False)

    @property
    def label(self) -> str:
        return figure_label(self.metric, self.args)

    def __hash__(self) -> int:
        return hash(self.label)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Figure) and other.label == self.label


# -- sampled analysis (docs/sampling.md) ---------------------------------------------------

# Counted on the whole stream even when the keys are sampled: exact, no error.
COUNTED_WHEN_SAMPLED = frozenset({"num_requests", "num_blocks", "total_tokens",
                                  "warmup_requests", "counted_tokens"})
# What a sample cannot estimate, and why (the figure is undefined in a sampled result).
NOT_SAMPLED: dict[str, str] = {
    "interval_min": "an extreme of the kept keys says nothing of the whole trace's",
    "interval_max": "an extreme of the kept keys says nothing of the whole trace's",
    "routed_hit_fraction": "a router's choice depends on every block of a request, and a "
                           "sample keeps only some (run without sampling)",
    "routed_load_imbalance": "a router's choice depends on every block of a request, and a "
                             "sample keeps only some (run without sampling)",
    "broken_reuse_fraction": "a turn's prompt is every block of it, and a sample keeps only "
                             "some (run without sampling)",
}


def sampling_of(name: str) -> str:
    """How a sampled analysis gives the figure ``name``: ``"exact"`` (counted on the whole
    stream), ``"none"`` (cannot be sampled: :data:`NOT_SAMPLED` says why) or
    ``"estimate"`` (every other figure, with its standard error)."""
    if name in COUNTED_WHEN_SAMPLED:
        return "exact"
    return "none" if name in NOT_SAMPLED else "estimate"
