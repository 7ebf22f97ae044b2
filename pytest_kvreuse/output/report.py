"""The self-contained HTML report and the JSON results file.

``results`` is a list of dicts, one per analysed trace: ``results.trace_result(...)``
(``name``, ``params``, ``figures``, ``offloadable_fraction`` keyed by GPU cache size in
tokens as a string, ``curves`` down-sampled to a few hundred points) plus

- ``"checks"``: list of ``{"nodeid", "metric", "at", "min", "max", "value", "passed",
  "message"}`` (``at``, ``min``, ``max``, ``value``, ``message`` may be None);
- ``"error"``: the loader's one-line error, or None. A trace that failed to load may hold
  nothing but ``name``, ``error``, ``checks`` (and ``params`` when known).

Optional blocks, rendered when present and ignored when absent:

- ``"lru"``: LRU figures. A value that is a dict keyed by cache size in tokens (as a
  string), e.g. ``{"hit_fraction": {"345792": 0.063}, "offloadable_fraction": {...}}``,
  becomes a column of the per-size table; a scalar, e.g. ``"compulsory_fraction": 0.35``,
  a figure row. Keys ending in ``fraction`` are shown as percentages.
- ``curves["lru"]`` (or ``lru["curve"]``): ``{"x": [...], "y": [...]}`` where ``y`` is the
  share of tokens *not* held by an LRU cache of ``x`` tokens, drawn on the CCDF's axes.
  Any other ``curves[key]`` with ``x``/``y`` is drawn too, labelled by its key.

``run`` describes the run: ``{"started", "duration_s", "args", "git_commit",
"plugin_version", "python", "timings"}`` (``timings``: per trace name, the seconds each step
took; kept out of the per-trace results so those are byte-identical run to run);
``started`` is an ISO 8601 string or a Unix time, ``args`` a list of strings; any other key
is shown as is. :func:`run_info` builds one.

Templates are ``templates/report.html.j2`` and its partials (shipped in the wheel as the
package ``pytest_kvreuse.templates``); ``template_dir`` overrides any of them by name and
falls back to the built-in ones for the rest. Besides the prepared view (``page``,
``traces``, ``checks``) a template receives the raw ``results`` and ``run``, and the filters
``pct`` (a fraction as a percentage), ``count`` (thousands separators) and ``json_value``.
"""

from __future__ import annotations

import base64
import math
import numbers
import os
import platform
import shlex
import subprocess
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import jinja2
import orjson

from ..atomic import atomic_write_bytes, atomic_write_text
from ..errors import KvReuseError

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

    from matplotlib.figure import Figure

TEMPLATE = "report.html.j2"
TEMPLATE_PACKAGE = "pytest_kvreuse.templates"
UNDEFINED = "—"

_FIGURE_LABELS = {
    "num_requests": "requests",
    "num_blocks": "blocks",
    "unique_blocks": "unique blocks",
    "total_tokens": "total tokens",
    "reuse_count": "reuses (cross-request)",
    "reused_fraction": "reused tokens",
    "interval_min": "interval min, tokens",
    "interval_median": "interval median, tokens",
    "interval_max": "interval max, tokens",
    "compulsory_fraction": "compulsory (first touch)",
    "lru_hit_fraction": "LRU hit",
    "lru_offloadable_fraction": "LRU offloadable",
    "offloadable_fraction": "offloadable",
}
# Shown in the parameters table, not again among the figures.
_HIDDEN_FIGURES = {"block_size"}
_PARAM_LABELS = {
    "format": "format",
    "tokenizer": "tokenizer",
    "prompt_mode": "prompt mode",
    "block_size": "block size, tokens",
    "hash_block_size": "native hash block, tokens",
    "path": "path",
}
_TIMING_LABELS = {"load_s": "load", "intervals_s": "reuse intervals"}
_LRU_LABELS = {
    "hit_fraction": "LRU hit",
    "offloadable_fraction": "LRU offloadable",
    "compulsory_fraction": "compulsory (first touch)",
}
_EXTRA_GPU_COLORS = ("darkorange", "saddlebrown", "darkmagenta", "teal")


# --------------------------------------------------------------------------- writing

def write_report(path: str | os.PathLike[str], results: list[dict], run: dict, *,
                 template_dir: str | os.PathLike[str] | None = None) -> None:
    """Render the report and write it atomically (a good report is never half-replaced)."""
    atomic_write_text(path, render_report(results, run, template_dir=template_dir))


def write_json(path: str | os.PathLike[str], results: list[dict], run: dict) -> None:
    """Write ``{"run": run, "traces": results}`` with sorted keys, atomically."""
    atomic_write_bytes(path, results_json(results, run))


def results_json(results: list[dict], run: dict) -> bytes:
    """Deterministic JSON: same results, same bytes (NaN becomes null)."""
    return orjson.dumps({"run": run, "traces": results},
                        option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2
                        | orjson.OPT_SERIALIZE_NUMPY) + b"\n"


def run_info(args: Sequence[str], *, started: datetime | None = None,
             duration_s: float | None = None,
             cwd: str | os.PathLike[str] | None = None) -> dict:
    """The ``run`` dict: when, how, from which commit, with which versions."""
    from .. import __version__

    started = started or datetime.now(timezone.utc)
    return {
        "started": started.astimezone(timezone.utc).isoformat(timespec="seconds"),
        "duration_s": None if duration_s is None else round(float(duration_s), 3),
        "args": [str(a) for a in args],
        "git_commit": git_commit(cwd),
        "plugin_version": __version__,
        "python": platform.python_version(),
    }


def git_commit(cwd: str | os.PathLike[str] | None = None) -> str | None:
    """HEAD's commit of the repository holding ``cwd``; None outside git or without git."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True,
                             text=True, timeout=5, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    return commit or None


# --------------------------------------------------------------------------- rendering

def render_report(results: list[dict], run: dict, *,
                  template_dir: str | os.PathLike[str] | None = None) -> str:
    """The report as one HTML string: CSS inline, every plot a ``data:`` URI."""
    env = _environment(template_dir)
    run_timings = run.get("timings") if isinstance(run.get("timings"), dict) else {}
    traces = [_trace_view(i, r, run_timings) for i, r in enumerate(results)]
    checks = sorted((c for t in traces for c in t["checks"]), key=lambda c: c["passed"])
    try:
        template = env.get_template(TEMPLATE)
        return template.render(page=_page_view(traces, checks, run), traces=traces,
                               checks=checks, results=results, run=run)
    except jinja2.TemplateSyntaxError as exc:
        raise KvReuseError(f"template error: {exc.message}", path=exc.filename or exc.name,
                           line=exc.lineno) from None
    except jinja2.TemplateNotFound as exc:
        raise KvReuseError(f"template not found: {exc.name}",
                           path=template_dir or TEMPLATE_PACKAGE) from None
    except jinja2.TemplateError as exc:
        raise KvReuseError(f"template error: {exc}", path=template_dir or TEMPLATE_PACKAGE
                           ) from None


def builtin_templates() -> Traversable:
    """The built-in templates: the installed package data, or the source tree's ``templates/``."""
    import importlib.resources

    try:
        return importlib.resources.files(TEMPLATE_PACKAGE)
    except ModuleNotFoundError:
        # A source checkout put on sys.path without installing: no package mapping exists.
        return Path(__file__).resolve().parent.parent / "templates"


def _environment(template_dir: str | os.PathLike[str] | None) -> jinja2.Environment:
    root = builtin_templates()

    def load_builtin(name: str) -> str | None:
        if "/" in name or "\\" in name or name.startswith("."):
            return None
        f = root.joinpath(name)
        return f.read_text(encoding="utf-8") if f.is_file() else None

    loader: jinja2.BaseLoader = jinja2.FunctionLoader(load_builtin)
    if template_dir is not None:
        if not Path(template_dir).is_dir():
            raise KvReuseError("template directory not found", path=template_dir)
        loader = jinja2.ChoiceLoader([jinja2.FileSystemLoader(os.fspath(template_dir)),
                                      loader])
    # StrictUndefined: a restyled template with a typo fails loudly instead of rendering blank.
    env = jinja2.Environment(loader=loader, autoescape=True, trim_blocks=True,
                             lstrip_blocks=True, undefined=jinja2.StrictUndefined)
    env.filters["pct"] = percent
    env.filters["count"] = count
    env.filters["json_value"] = _json_value
    return env


# --------------------------------------------------------------------------- formatting

def percent(x: float | None, digits: int = 2) -> str:
    if not isinstance(x, numbers.Real) or isinstance(x, bool) or math.isnan(x):
        return UNDEFINED if x is None or isinstance(x, numbers.Real) else str(x)
    return f"{float(x) * 100:.{digits}f} %"


def count(x: object) -> str:
    # numbers.*, not int/float: numpy scalars in hand-made results read the same.
    if x is None:
        return UNDEFINED
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, numbers.Integral):
        return f"{int(x):,}"
    if isinstance(x, numbers.Real):
        x = float(x)
        if math.isnan(x):
            return UNDEFINED
        return f"{x:,.0f}" if x.is_integer() else f"{x:,.4g}"
    return str(x)


def _is_fraction(key: str) -> bool:
    return key.endswith("fraction")


def _value_text(key: str, x: object, digits: int = 2) -> str:
    if _is_fraction(key) and (x is None or isinstance(x, numbers.Real)):
        return percent(x, digits)
    return count(x)


def _json_value(x: object) -> str:
    """The value as the JSON file holds it, for a ``data-value`` attribute."""
    return orjson.dumps(x, option=orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY).decode()


def _label(key: str) -> str:
    return _FIGURE_LABELS.get(key, key.replace("_", " "))


def _lru_label(key: str) -> str:
    if key in _LRU_LABELS:
        return _LRU_LABELS[key]
    words = key.removesuffix("_fraction").replace("_", " ")
    return words if words.lower().startswith("lru") else f"LRU {words}"


def _tokens(at: object) -> str:
    try:
        return f"{int(at):,} tokens"
    except (TypeError, ValueError):
        return str(at)


def _digits_apart(value: float | None, bounds: Iterable[float | None]) -> int:
    """Fewest decimals (2 to 6) at which a percentage reads differently from its bounds."""
    others = [b for b in bounds if b is not None and value is not None and b != value]
    for digits in range(2, 7):
        if all(percent(value, digits) != percent(b, digits) for b in others):
            return digits
    return 6


# --------------------------------------------------------------------------- views

def _page_view(traces: list[dict], checks: list[dict], run: dict) -> dict:
    failed = sum(not c["passed"] for c in checks)
    errors = sum(t["error"] is not None for t in traces)
    if failed or errors:
        status, word = "failed", "FAILED"
    elif checks:
        status, word = "passed", "PASSED"
    else:
        status, word = "info", "NO CHECKS"
    parts = [f"{len(traces)} trace{'s' * (len(traces) != 1)}"]
    if checks:
        parts.append(f"{len(checks)} check{'s' * (len(checks) != 1)}: "
                     f"{len(checks) - failed} passed, {failed} failed")
    else:
        parts.append("no checks")
    if errors:
        parts.append(f"{errors} trace{'s' * (errors != 1)} could not be analysed")
    return {"status": status, "word": word, "summary": " · ".join(parts),
            "run": _run_rows(run), "version": run.get("plugin_version")}


def _run_rows(run: dict) -> list[dict]:
    rows = []
    started = run.get("started")
    if isinstance(started, (int, float)) and not isinstance(started, bool):
        started = datetime.fromtimestamp(started, timezone.utc)
    elif isinstance(started, str):
        try:
            started = datetime.fromisoformat(started)
        except ValueError:
            pass  # shown as given
    if isinstance(started, datetime):
        if started.tzinfo is not None:
            started = started.astimezone(timezone.utc)
        started = started.strftime("%Y-%m-%d %H:%M:%S") + (" UTC" if started.tzinfo else "")
    if started:
        rows.append({"label": "date", "text": str(started), "code": False})
    if run.get("duration_s") is not None:
        seconds = float(run["duration_s"])
        rows.append({"label": "duration", "text": f"{seconds:.{1 if seconds >= 10 else 2}f} s",
                     "code": False})
    if run.get("plugin_version"):
        rows.append({"label": "pytest-kvreuse", "text": str(run["plugin_version"]),
                     "code": False})
    if run.get("python"):
        rows.append({"label": "python", "text": str(run["python"]), "code": False})
    rows.append({"label": "git commit", "text": str(run.get("git_commit") or "not available"),
                 "code": bool(run.get("git_commit"))})
    args = run.get("args")
    if args is not None:
        text = args if isinstance(args, str) else shlex.join(str(a) for a in args)
        rows.append({"label": "arguments", "text": text or "(none)", "code": True})
    known = {"started", "duration_s", "plugin_version", "python", "git_commit", "args",
             "timings"}
    for key in sorted(set(run) - known):
        if run[key] is not None:
            rows.append({"label": key.replace("_", " "), "text": str(run[key]), "code": False})
    return rows


def _trace_view(index: int, result: dict, run_timings: dict | None = None) -> dict:
    params = result.get("params") or {}
    name = str(result.get("name") or params.get("path") or f"trace {index + 1}")
    anchor = f"trace-{index + 1}"
    checks = [_check_view(c, name, anchor) for c in result.get("checks") or []]
    error = result.get("error")
    failed = sum(not c["passed"] for c in checks)
    if error is not None:
        status = "error"
    elif failed:
        status = "failed"
    else:
        status = "passed" if checks else "info"
    view = {
        "name": name, "anchor": anchor, "status": status, "error": error,
        "path": params.get("path"), "checks": checks, "failed": failed,
        "params": _param_rows(params), "figures": [], "sizes": [], "size_columns": [],
        "plot": None, "plot_alt": "", "timings": "", "headline": None,
        "baseline": _baseline_view(result),
    }
    if error is not None:
        return view
    figures = result.get("figures") or {}
    lru = result.get("lru") if isinstance(result.get("lru"), dict) else {}
    view["figures"] = _figure_rows(figures, lru)
    view["size_columns"], view["sizes"] = _size_table(result, lru)
    view["plot"], view["plot_alt"] = _plot(result, name, lru)
    # Timings live in the run block, by trace name (older result files: in the trace).
    timings = (run_timings or {}).get(name) or result.get("timings") or {}
    view["timings"] = _timings_text(timings if isinstance(timings, dict) else {})
    view["headline"] = _headline(figures, result.get("offloadable_fraction") or {})
    return view


def _baseline_view(result: dict) -> dict | None:
    from .baseline_view import baseline_view  # it imports this module's formatters

    return baseline_view(result)


def _param_rows(params: dict) -> list[dict]:
    order = [k for k in _PARAM_LABELS if k in params and k != "path"]
    order += sorted(k for k in params if k not in _PARAM_LABELS)
    return [{"label": _PARAM_LABELS.get(k, k.replace("_", " ")),
             "text": count(params[k]) if isinstance(params[k], numbers.Real)
             else ("none" if params[k] is None else str(params[k]))} for k in order]


def _figure_rows(figures: dict, lru: dict) -> list[dict]:
    order = [k for k in _FIGURE_LABELS if k in figures]
    order += sorted(k for k in figures if k not in _FIGURE_LABELS)
    rows = [{"label": _label(k), "text": _value_text(k, figures[k]), "key": f"figures.{k}",
             "json": _json_value(figures[k])}
            for k in order if k not in _HIDDEN_FIGURES and not isinstance(figures[k], dict)]
    for k in sorted(lru):
        v = lru[k]
        if isinstance(v, numbers.Real) or v is None:
            rows.append({"label": _lru_label(k),
                         "text": _value_text(k, v), "key": f"lru.{k}", "json": _json_value(v)})
    return rows


def _per_size(v: object) -> bool:
    return isinstance(v, dict) and bool(v) and all(str(k).isdigit() for k in v)


def _size_table(result: dict, lru: dict) -> tuple[list[str], list[dict]]:
    """Columns (figure names) and one row per cache size: interval offloadable, then LRU."""
    columns: list[tuple[str, str, dict]] = []
    offl = result.get("offloadable_fraction") or {}
    lru_sized = {k: v for k, v in sorted(lru.items()) if _per_size(v)}
    if offl:
        label = "offloadable (interval)" if lru_sized else "offloadable"
        columns.append((label, "offloadable_fraction", offl))
    for k, v in lru_sized.items():
        columns.append((_lru_label(k), f"lru.{k}", v))
    sizes = sorted({int(s) for _, _, col in columns for s in col})
    rows = []
    for size in sizes:
        cells = []
        for _, key, col in columns:
            v = col.get(str(size))
            cells.append({"text": _value_text("fraction", v) if str(size) in col
                          else "", "key": f"{key}.{size}", "json": _json_value(v),
                          "present": str(size) in col})
        rows.append({"tokens": size, "text": f"{size:,}", "cells": cells})
    return [label for label, _, _ in columns], rows


def _headline(figures: dict, offl: dict) -> dict:
    """The few figures the overview table shows for each trace."""
    return {
        "requests": count(figures.get("num_requests")),
        "tokens": count(figures.get("total_tokens")),
        "reused": percent(figures.get("reused_fraction"), 1),
        "offloadable": [f"{int(k):,}: {percent(v, 1)}"
                        for k, v in sorted(offl.items(), key=lambda kv: int(kv[0]))],
    }


def _timings_text(timings: dict) -> str:
    order = [k for k in _TIMING_LABELS if k in timings]
    order += sorted(k for k in timings if k not in _TIMING_LABELS)
    parts = [f"{_TIMING_LABELS.get(k, k.removesuffix('_s').replace('_', ' '))} "
             f"{float(timings[k]):.3f} s" for k in order
             if isinstance(timings[k], numbers.Real) and not isinstance(timings[k], bool)]
    return ", ".join(parts)


def _check_view(check: dict, trace: str, anchor: str) -> dict:
    metric = str(check.get("metric") or "?")
    value, lo, hi = check.get("value"), check.get("min"), check.get("max")
    fraction = _is_fraction(metric)
    digits = _digits_apart(value, (lo, hi)) if fraction else 2

    def fmt(x: object) -> str:
        return _value_text(metric, x, digits)

    if lo is not None and hi is not None:
        bound = f"{fmt(lo)} – {fmt(hi)}"
    elif lo is not None:
        bound = f"≥ {fmt(lo)}"
    elif hi is not None:
        bound = f"≤ {fmt(hi)}"
    else:
        bound = UNDEFINED
    at = check.get("at")
    return {
        "trace": trace, "anchor": anchor, "nodeid": check.get("nodeid") or "",
        "metric": metric, "figure": _label(metric) + (f" at {_tokens(at)}" if at is not None
                                                      else ""),
        "value_text": fmt(value), "value_json": _json_value(value), "bound": bound,
        "passed": check.get("passed") is True, "message": check.get("message") or "",
    }


# --------------------------------------------------------------------------- plot

def _curve(c: object) -> tuple[list, list] | None:
    if isinstance(c, dict) and isinstance(c.get("x"), list) and isinstance(c.get("y"), list):
        return c["x"], c["y"]
    return None


def _plot(result: dict, name: str, lru: dict) -> tuple[str | None, str]:
    """The CCDF (and LRU curve) with a GPU cache line per size of interest, as a data URI."""
    import numpy as np

    from .plot import GpuLine, Series, ccdf_figure

    def real(x: object) -> bool:
        return isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(x)

    figures = result.get("figures") or {}
    reused = figures.get("reused_fraction")
    reused = reused if real(reused) else None
    compulsory = figures.get("compulsory_fraction")
    # Below the smallest cache the LRU share is everything seen before: 1 - compulsory.
    reusable = 1.0 - compulsory if real(compulsory) else reused
    curves = result.get("curves") or {}
    series = []
    ccdf = _curve(curves.get("ccdf"))
    if ccdf is not None:
        series.append(Series("reuse interval (proxy)" if lru else "reuse interval",
                             np.asarray(ccdf[0], dtype=np.float64),
                             np.asarray(ccdf[1], dtype=np.float64), start=reused))
    lru_curve = _curve(curves.get("lru")) or _curve(lru.get("curve"))
    if lru_curve is not None:
        series.append(Series("not held by an LRU cache of x tokens",
                             np.asarray(lru_curve[0], dtype=np.float64),
                             np.asarray(lru_curve[1], dtype=np.float64), start=reusable))
    for key in sorted(k for k in curves if k not in ("ccdf", "lru")):
        extra = _curve(curves[key])
        if extra is not None:
            # Another run's curve: its reused share is not known here, so it starts at x[0].
            series.append(Series(key.replace("_", " "), np.asarray(extra[0], dtype=np.float64),
                                 np.asarray(extra[1], dtype=np.float64)))
    if not series:
        return None, ""
    offl = result.get("offloadable_fraction") or {}
    sizes = sorted(int(s) for s in offl)
    main = sizes[-1] if sizes else None
    # The largest size gets the red line and the labelled marker (it also sets the x
    # range); every other size of interest its own coloured line.
    more = [GpuLine(size, _gpu_label(size, offl), offl[str(size)], color)
            for color, size in zip(_EXTRA_GPU_COLORS * len(sizes), sizes[:-1], strict=False)]
    fig = ccdf_figure(series, gpu_cache_tokens=main,
                      offloadable=None if main is None else offl[str(main)],
                      gpu_label=None if main is None else _gpu_label(main, offl),
                      more_gpu_lines=more)
    alt = (f"CCDF of reuse intervals of {name}: share of tokens (y, %) reused more than "
           f"x tokens apart (log x axis)")
    if sizes:
        alt += "; GPU cache lines at " + ", ".join(
            f"{s:,} tokens ({percent(offl[str(s)])} offloadable)" for s in sizes)
    return _svg_data_uri(fig), alt


def _gpu_label(size: int, offl: dict) -> str:
    frac = offl.get(str(size))
    tail = "" if frac is None else f" ({percent(frac, 1)} offloadable)"
    return f"GPU KV cache: {size:,} tokens{tail}"


def _svg_data_uri(fig: Figure) -> str:
    from .plot import figure_bytes

    # figure_bytes: fixed ids and no date, so the same results give byte-identical plots.
    return "data:image/svg+xml;base64," + base64.b64encode(figure_bytes(fig, "svg")).decode(
        "ascii")
