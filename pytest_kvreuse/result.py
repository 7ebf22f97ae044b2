"""The one result document: :class:`TraceResult` per trace, :class:`Results` per run.

``kvreuse analyze --json``, the plugin's ``--kvreuse-json`` and saved baselines are all a
:class:`Results` document (``schema_version`` 1); the plugin's xdist workers send their
traces as ``TraceResult.to_json()`` dicts. Files written by pytest-kvreuse 0.1 (three
shapes) are read by :meth:`Results.from_json` too.

No numpy at import: a result is built from an analysis (:meth:`TraceResult.from_analysis`)
only where one exists.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import KvReuseError
from .formatting import TOKENS, defined
from .metrics import (
    METRICS,
    NOT_SAMPLED,
    OPT_METRICS,
    REACHABLE_SHARE,
    SIZE_FIGURES,
    Metric,
    MetricError,
    arg_key,
    parse_arg_key,
    parse_name,
    parse_replicas,
    parse_routing,
    parse_seconds,
    sampling_of,
)

SCHEMA_VERSION = 1
KIND = "kvreuse-results"
CURVE_POINTS = 400


class ResultsError(KvReuseError):
    """A results file that is not a kvreuse results document."""


@dataclass
class TraceResult:
    """The figures of one declared trace, and what was checked on it.

    ``figures`` maps a metric name (:data:`~pytest_kvreuse.metrics.METRICS`) to its value,
    or, for a metric with arguments, to ``{argument key: value}`` (the key of a size alone
    is the size in tokens, ``"345792"``). ``sizes`` are the GPU cache sizes of interest;
    ``curves`` down-sampled ``{"x": [...], "y": [...]}``; ``checks`` one record per
    condition checked; ``error`` the one-line error of a trace that could not be read.
    ``extras`` carries what a report adds for display (baseline comparison, trend), never
    saved with a baseline. ``causes``: where reuse comes from and where it breaks, when
    asked for (:func:`causes_document`, docs/causes.md); empty otherwise.
    """

    name: str
    path: str | None = None
    params: dict = field(default_factory=dict)
    content_sha256: str | None = None
    sizes: list[int] = field(default_factory=list)
    figures: dict = field(default_factory=dict)
    curves: dict = field(default_factory=dict)
    checks: list[dict] = field(default_factory=list)
    error: str | None = None
    extras: dict = field(default_factory=dict)
    # A sampled analysis (docs/sampling.md): rate, keys kept, and the standard error of
    # every estimated figure, keyed as ``figures``; None for an exact one.
    sample: dict | None = None
    causes: dict = field(default_factory=dict)

    # -- reading figures ----------------------------------------------------------------

    def value(self, metric: str, **args: object) -> float | int | None:
        """The figure's value (None when undefined); KeyError when it was not computed."""
        m = METRICS[metric]
        v = self.figures[metric]
        if not m.args:
            return v
        return v[arg_key(m, m.read_args(args))]

    def values(self, metric: str) -> dict[str | None, object] | None:
        """``{argument key or None: value}`` of one metric; None when it has none here."""
        v = self.figures.get(metric)
        if metric not in self.figures:
            return None
        return dict(v) if isinstance(v, dict) else {None: v}

    # -- building -----------------------------------------------------------------------

    @classmethod
    def from_analysis(cls, analysis: object, *, name: str, path: str | None = None,
                      sizes: Iterable[int] = (), figures: Iterable[tuple[str, dict]] = (),
                      content_sha256: str | None = None, include: Iterable[str] = (),
                      ttls: Iterable[object] = (), policies: Iterable[str] = (),
                      replicas: Iterable[int] = (), routings: Iterable[str] = (),
                      top_prefixes: int = 0, why: bool = False) -> TraceResult:
        """Every default metric of the registry: those without arguments, those taking a
        size at every size of ``sizes``; the metrics named in ``include`` (those computed
        only when asked, ``Metric.default`` False: OPT) at every size too; the TTL figures
        at every TTL of ``ttls``, the block-level hit of every policy of ``policies`` at
        every size; the routed hit and load imbalance of every number of ``replicas``
        under every routing of ``routings`` at every size, with the single pooled LRU cache
        of ``replicas * size`` beside them; and the explicit ``(metric, args)`` of
        ``figures``. Curves: the
        interval CCDF, the LRU curve, the OPT curve when an OPT figure is computed, and the
        reuse-time CCDF (seconds) when the trace has reuse times. ``top_prefixes`` (how
        many) and ``why`` fill :attr:`causes`."""
        from .core.curves import downsample

        sizes = sorted({int(s) for s in sizes})
        include = set(include)
        unknown = include - set(METRICS)
        if unknown:
            raise MetricError(f"unknown metric {sorted(unknown)[0]!r} to include")
        explicit = list(figures)
        for ttl in ttls:
            at = parse_seconds("ttl", ttl)
            explicit += [("ttl_hit_fraction", {"at": at}), ("ttl_peak_tokens", {"at": at})]
        for policy in policies:
            p = parse_name("policy", policy)
            explicit += [("policy_hit_fraction", {"at": s, "policy": p}) for s in sizes]
        if sizes:
            # Where a cache is sized, how big one reaches most of what caching can reach.
            explicit.append(("lru_capacity_reachable", {"share": REACHABLE_SHARE}))
        explicit += routed_figures(sizes, replicas, routings)
        out: dict = {}
        wanted: dict[str, list[dict]] = {}
        for m in METRICS.values():
            if not (m.default or m.name in include):
                continue
            if not m.args:
                wanted[m.name] = [{}]
            elif m.sized:
                wanted[m.name] = [{"at": s} for s in sizes]
        for metric, args in explicit:
            wanted.setdefault(metric, [])
            if args not in wanted[metric]:
                wanted[metric].append(dict(args))
        for name_, arg_sets in wanted.items():
            m = METRICS[name_]
            if not m.args:
                v = _plain(m.value(analysis))
                if v is not None or not m.optional:
                    out[name_] = v
                continue
            per = {arg_key(m, a): _plain(_value_or_none(m, analysis, a)) for a in arg_sets}
            if m.optional:
                per = {k: v for k, v in per.items() if v is not None}
                if not per:
                    continue
            out[name_] = _sorted_keys(m, per)

        def curve(xy: tuple, seconds: bool = False) -> dict:
            if seconds:
                # Spread the points over milliseconds: downsample() bins from 1 on up.
                x, y = downsample(xy[0] * 1000.0, xy[1], CURVE_POINTS)
                return {"x": [float(v) / 1000.0 for v in x], "y": [float(v) for v in y]}
            x, y = downsample(*xy, CURVE_POINTS)
            return {"x": [int(v) for v in x], "y": [float(v) for v in y]}

        curves = {"ccdf": curve(analysis.ccdf()),  # type: ignore[attr-defined]
                  "lru": curve(analysis.lru_offloadable_curve())}  # type: ignore[attr-defined]
        if any(wanted.get(n) for n in OPT_METRICS) or "opt_hit_fraction" in include:
            curves["opt"] = curve(analysis.opt_offloadable_curve())  # type: ignore[attr-defined]
        times = getattr(analysis, "reuse_time_ccdf", None)
        if times is not None:
            t = times()
            if t[0].size:
                curves["reuse_time"] = curve(t, seconds=True)
        params = dict(getattr(analysis, "params", {}) or {})
        return cls(name=name, path=path if path is not None else params.pop("path", None),
                   params={k: v for k, v in params.items() if k != "path"},
                   content_sha256=content_sha256, sizes=sizes, figures=out, curves=curves,
                   sample=sample_record(analysis, out),
                   causes=causes_document(analysis, top_prefixes=top_prefixes, why=why,
                                          sizes=sizes))

    def merge(self, other: TraceResult) -> None:
        """Add what another process computed for the same declared trace: its checks and
        the figures at the sizes it measured."""
        self.checks.extend(c for c in other.checks if c not in self.checks)
        self.sizes = sorted(set(self.sizes) | set(other.sizes))
        for name, v in other.figures.items():
            mine = self.figures.get(name)
            if isinstance(v, dict) and isinstance(mine, dict):
                self.figures[name] = _sorted_keys(METRICS.get(name), {**mine, **v})
            elif name not in self.figures:
                self.figures[name] = v
        for name, c in other.curves.items():
            self.curves.setdefault(name, c)
        for name, c in other.causes.items():
            self.causes.setdefault(name, c)
        if self.error is None:
            self.error = other.error

    # -- sizes in bytes ------------------------------------------------------------------

    @property
    def bytes_per_token(self) -> int | None:
        """The served model's KV bytes per token (None: no model named, or unknown)."""
        v = self.params.get("kv_bytes_per_token")
        return v if isinstance(v, int) and not isinstance(v, bool) else None

    def size_bytes(self) -> dict[str, int]:
        """``{tokens: bytes}`` of every cache size in the result: the sizes of interest,
        the sizes figures are read at, and figures that are sizes (a cache for a hit, a
        lower tier, a TTL cache's peak); empty without the model's bytes per token."""
        bpt = self.bytes_per_token
        if bpt is None:
            return {}
        found = set(self.sizes)
        for name, v in self.figures.items():
            m = METRICS.get(name)
            if m is None:
                continue
            per = v if isinstance(v, dict) else {None: v}
            for key, value in per.items():
                sized = [a.name for a in m.args if a.unit == TOKENS]  # not a TTL's seconds
                if key is not None and sized:
                    try:
                        args = parse_arg_key(m, key)
                    except MetricError:
                        args = {}
                    found.update(int(args[a]) for a in sized if isinstance(args.get(a), int))
                if m.unit == TOKENS and m.name in SIZE_FIGURES and isinstance(value, int):
                    found.add(value)
        return {str(t): t * bpt for t in sorted(found)}

    # -- JSON ---------------------------------------------------------------------------

    def to_json(self, *, extras: bool = True) -> dict:
        """Plain JSON types only (they cross xdist workers and go to files). With the
        model's bytes per token, ``size_bytes`` gives every size in bytes too (derived:
        not read back)."""
        doc = {"name": self.name, "path": self.path, "params": dict(self.params),
               "content_sha256": self.content_sha256, "sizes": list(self.sizes),
               "figures": self.figures, "curves": self.curves, "checks": self.checks,
               "error": self.error}
        in_bytes = self.size_bytes()
        if in_bytes:
            doc["size_bytes"] = in_bytes
        if self.causes:
            doc["causes"] = self.causes
        if extras and self.extras:
            doc["extras"] = self.extras
        if self.sample is not None:
            doc["sample"] = self.sample
        return doc

    @classmethod
    def from_json(cls, doc: Mapping, *, where: str = "a trace result") -> TraceResult:
        if not isinstance(doc, Mapping) or not isinstance(doc.get("name"), str):
            raise ResultsError(f"{where} has no name")
        try:
            result = cls._from_json(doc)
            _check_shape(result)
        except (TypeError, ValueError, AttributeError, KeyError) as exc:
            raise ResultsError(f"{where} ({doc['name']!r}) is malformed: {exc}") from None
        return result

    @classmethod
    def _from_json(cls, doc: Mapping) -> TraceResult:
        if "figures" in doc and "sizes" in doc:
            return cls(name=doc["name"], path=doc.get("path"),
                       params=dict(doc.get("params") or {}),
                       content_sha256=doc.get("content_sha256"),
                       sizes=[int(s) for s in doc.get("sizes") or []],
                       figures=dict(doc.get("figures") or {}),
                       curves=dict(doc.get("curves") or {}),
                       checks=list(doc.get("checks") or []), error=doc.get("error"),
                       extras=dict(doc.get("extras") or {}),
                       sample=dict(doc["sample"]) if doc.get("sample") else None,
                       causes=dict(doc.get("causes") or {}))
        return _from_v0(doc)


def routed_figures(sizes: Iterable[int], replicas: Iterable[int],
                   routings: Iterable[str]) -> list[tuple[str, dict]]:
    """The routed figures at every size, number of replicas and routing, and the LRU hit
    of the one pooled cache of ``N * size`` tokens they are read against."""
    counts = sorted({parse_replicas("replicas", n) for n in replicas})
    ways = list(dict.fromkeys(parse_routing("routing", r) for r in routings))
    out: list[tuple[str, dict]] = []
    for s in sizes:
        for n in counts:
            out.append(("lru_hit_fraction", {"at": n * s}))
            for way in ways:
                args = {"at": s, "replicas": n, "routing": way}
                out += [("routed_hit_fraction", args), ("routed_load_imbalance", args)]
    return out


def sample_record(analysis: object, figures: Mapping) -> dict | None:
    """What a sampled analysis's result says of its sample: rate, keys kept, and the
    standard error of each estimated figure among ``figures``; None for an exact one."""
    error = getattr(analysis, "figure_error", None)
    if error is None:
        return None
    sample = analysis.sample  # type: ignore[attr-defined]
    errors: dict = {}
    for name, value in figures.items():
        if sampling_of(name) != "estimate":
            continue
        m = METRICS[name]
        if not m.args:
            errors[name] = _plain(error(name))
        else:
            errors[name] = {k: _plain(error(name, **parse_arg_key(m, k))) for k in value}
    return {"method": "SHARDS", "rate": sample.rate, "kept_keys": sample.kept_keys,
            "max_keys": sample.max_keys,
            "error": analysis.error_method,  # type: ignore[attr-defined]
            "errors": errors,
            "exact": sorted(n for n in figures if sampling_of(n) == "exact"),
            "not_sampled": {n: NOT_SAMPLED[n] for n in figures if n in NOT_SAMPLED}}


def causes_document(analysis: Any, *, top_prefixes: int = 0, why: bool = False,
                    sizes: Sequence[int] = ()) -> dict:
    """Where reuse comes from (``top_prefixes`` shared prefixes, the reuse of each request
    category at ``sizes``) and, with ``why``, where it breaks: plain JSON for
    :attr:`TraceResult.causes`."""
    out: dict = {}
    if top_prefixes:
        out["top_prefixes"] = [p.to_dict() for p in analysis.top_prefixes(top_prefixes)]
        out["categories"] = [
            {"by": name, "rows": [r.to_dict()
                                  for r in analysis.reuse_by_category(list(sizes), by=name)]}
            for name in analysis.category_names]
    if why:
        breaks = analysis.turn_breaks
        if breaks is None:
            out["breaks"] = {"reason": analysis.breaks_reason}
        else:
            doc = {"turns": int(breaks.turn.shape[0]),
                   "broken_turns": int(breaks.broken.shape[0]),
                   "lost_tokens": breaks.lost_tokens,
                   "fraction": defined(analysis.broken_reuse_fraction)}
            explained = analysis.why()
            if explained is None:
                doc["reason"] = "no text to read the departures from (hash ids, or a pipe)"
            else:
                causes, doc["explained_turns"] = explained
                counted = analysis.counted_tokens
                doc["causes"] = [{**c.to_dict(), "fraction": c.lost_tokens / counted
                                  if counted else None} for c in causes]
            out["breaks"] = doc
    return out


def _check_shape(r: TraceResult) -> None:
    """Refuse a result whose fields are not of their types: later readers trust them."""
    def optional_str(v: object, what: str) -> None:
        if v is not None and not isinstance(v, str):
            raise TypeError(f"{what} is not a string")

    optional_str(r.path, "path")
    optional_str(r.content_sha256, "content_sha256")
    optional_str(r.error, "error")
    for name, v in r.figures.items():
        values = v.values() if isinstance(v, Mapping) else [v]
        if not isinstance(name, str) or not all(
                x is None or (isinstance(x, numbers.Real) and not isinstance(x, bool))
                for x in values):
            raise TypeError(f"figure {name!r} is not a number")
    if not all(isinstance(c, Mapping) and isinstance(c.get("nodeid", ""), str)
               for c in r.checks):
        raise TypeError("a check is not a record")
    if not all(isinstance(c, Mapping) for c in r.curves.values()):
        raise TypeError("a curve is not an object")


def _value_or_none(m: Metric, analysis: object, args: dict) -> object:
    """A figure asked for explicitly; None where it cannot be computed here (a policy
    without libCacheSim installed): the check on it records why."""
    try:
        return m.value(analysis, **args)
    except KvReuseError:
        return None


def _plain(v: object) -> object:
    v = defined(v)
    return v.item() if hasattr(v, "item") else v


def _sorted_keys(m: Metric | None, per: dict) -> dict:
    def order(key: str) -> tuple:
        try:
            args = parse_arg_key(m, key) if m is not None else {}
        except MetricError:
            return (1, key)
        return (0, *(v for v in args.values()))
    return dict(sorted(per.items(), key=lambda kv: order(kv[0])))


# Where 0.1 kept the figures read at a size: a top-level map, or inside its "lru" block.
_V0_SIZED = {"offloadable_fraction": ("offloadable_fraction", None),
             "lru_hit_fraction": ("lru", "hit_fraction"),
             "lru_offloadable_fraction": ("lru", "offloadable_fraction")}


def _from_v0(doc: Mapping) -> TraceResult:
    """A trace result as pytest-kvreuse 0.1 wrote it (plugin JSON and baselines)."""
    params = dict(doc.get("params") or {}) if isinstance(doc.get("params"), Mapping) else {}
    path = params.pop("path", None)
    sha = params.pop("content_sha256", None) or doc.get("content_hash")
    figures = {k: v for k, v in (doc.get("figures") or {}).items()
               if k in METRICS and not isinstance(v, dict)}
    if "block_size" in (doc.get("figures") or {}):
        params.setdefault("block_size", doc["figures"]["block_size"])
    sizes: set[int] = set()
    for metric, (where, inner) in _V0_SIZED.items():
        block = doc.get(where)
        if inner is not None and isinstance(block, Mapping):
            # An empty "lru" block: LRU figures computed at no size.
            block = block.get(inner, {} if not block else None)
        elif inner is not None:
            block = None
        if isinstance(block, Mapping):
            per = {str(k): v for k, v in block.items() if str(k).isdigit()}
            figures[metric] = _sorted_keys(METRICS[metric], per)
            sizes.update(int(k) for k in per)
    checks = []
    for c in doc.get("checks") or []:
        if isinstance(c, Mapping):
            checks.append({"kind": "drift" if "baseline" in c else "threshold", **c})
    return TraceResult(name=doc["name"], path=path, params=params, content_sha256=sha,
                       sizes=sorted(sizes), figures=figures,
                       curves=dict(doc.get("curves") or {}), checks=checks,
                       error=doc.get("error"))


def _from_v0_analysis(doc: Mapping) -> TraceResult:
    """``kvreuse analyze --json`` output of 0.1: one trace, flat figures at one size."""
    params = dict(doc.get("params") or {}) if isinstance(doc.get("params"), Mapping) else {}
    path = params.pop("path", None)
    sha = params.pop("content_sha256", None)
    params.setdefault("block_size", doc.get("block_size"))
    gpu = doc.get("gpu_cache_tokens")
    figures: dict = {}
    for key, value in doc.items():
        m = METRICS.get(key)
        if m is None:
            continue
        if not m.args:
            figures[key] = value
        elif m.sized and gpu is not None:
            figures[key] = {str(gpu): value}
    lower = doc.get("lower_tier_tokens")
    tiers = doc.get("lru_tiers")
    if gpu is not None and lower is not None and isinstance(tiers, Mapping):
        key = f"{gpu},lower_tier={lower}"
        figures["lower_tier_hit_fraction"] = {key: tiers.get("lower_tier_hit")}
        figures["beyond_tiers_fraction"] = {key: tiers.get("beyond_tiers")}
    name = Path(str(path or "trace")).name
    return TraceResult(name=name, path=path, params=params, content_sha256=sha,
                       sizes=[int(gpu)] if gpu is not None else [], figures=figures)


@dataclass
class Results:
    """One run's document: ``run`` (when, how, versions, timings) and its traces.
    ``meta`` holds what a saved baseline adds (number, name, saved, commit, versions)."""

    traces: list[TraceResult] = field(default_factory=list)
    run: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    def to_json(self, *, extras: bool = True) -> dict:
        return {"schema_version": SCHEMA_VERSION, "kind": KIND, **self.meta,
                "run": self.run, "traces": [t.to_json(extras=extras) for t in self.traces]}

    @classmethod
    def from_json(cls, doc: object, *, path: str | os.PathLike[str] | None = None) -> Results:
        """A document of this version, or any results file pytest-kvreuse 0.1 wrote (a
        saved baseline, ``--kvreuse-json`` output, ``kvreuse analyze --json`` output)."""
        where = {"path": path} if path is not None else {}
        if isinstance(doc, Mapping) and isinstance(doc.get("traces"), list):
            version = doc.get("schema_version")
            if version is not None and version != SCHEMA_VERSION:
                raise ResultsError(f"results schema version {version!r} is not "
                                   f"{SCHEMA_VERSION} (written by another pytest-kvreuse)",
                                   **where)
            traces = []
            for i, t in enumerate(doc["traces"]):
                try:
                    traces.append(TraceResult.from_json(t, where=f"trace result #{i + 1}"))
                except ResultsError as exc:
                    raise ResultsError(exc.message, **where) from None
            meta = {k: v for k, v in doc.items()
                    if k not in ("schema_version", "kind", "run", "traces")}
            run = doc.get("run") if isinstance(doc.get("run"), Mapping) else {}
            return cls(traces=traces, run=dict(run), meta=meta)
        if isinstance(doc, Mapping) and "num_requests" in doc:
            return cls(traces=[_from_v0_analysis(doc)])
        if isinstance(doc, list):
            return cls.from_json({"traces": doc}, path=path)
        raise ResultsError("not a kvreuse results file: expected a saved run, --kvreuse-json "
                           "output or kvreuse analyze --json output", **where)

    def by_name(self) -> dict[str, TraceResult]:
        return {t.name: t for t in self.traces}


TraceLike = TraceResult | Mapping


def as_result(trace: TraceLike, what: str = "a trace result") -> TraceResult:
    """A TraceResult, from itself or its JSON (this version's or 0.1's)."""
    return trace if isinstance(trace, TraceResult) else TraceResult.from_json(trace,
                                                                              where=what)


def trace_timings(analysis: object) -> dict:
    """Seconds each step took. Volatile, so never part of a trace's result: they go to the
    run block (``run["timings"][name]``), keeping per-trace results byte-identical."""
    timings = getattr(analysis, "timings", {}) or {}
    return {k: round(float(v), 4) for k, v in sorted(timings.items())}


def item_outcomes(result: TraceResult) -> dict[str, bool]:
    """``{nodeid: passed}``: every pytest item that checked the trace. An item fails when
    any of its records (bounds, drift, the test body) failed."""
    items: dict[str, bool] = {}
    for c in result.checks:
        if c.get("kind") == "drift":
            continue  # shown beside the bounds; the drifted items' own records count it
        items[c["nodeid"]] = items.get(c["nodeid"], True) and c.get("passed") is True
    return items


def checked_items(results: Sequence[TraceResult]) -> tuple[int, int]:
    """``(checks, failed)``, a check being one pytest item that checked a trace: what
    pytest counts too, so the summary, the report and pytest agree."""
    items: dict[str, bool] = {}
    for r in results:
        for nodeid, ok in item_outcomes(r).items():
            items[nodeid] = items.get(nodeid, True) and ok
    return len(items), sum(not ok for ok in items.values())
