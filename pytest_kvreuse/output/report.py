"""The self-contained HTML report and the JSON results file.

``results`` is a list of :class:`~pytest_kvreuse.result.TraceResult` (or their JSON):
figures by metric name, as the metric registry names and formats them; figures read at a
size are keyed by the size in tokens; ``checks`` one record per condition checked
(``{"nodeid", "kind", "metric", "at", "args", "min", "max", "value", "passed",
"message"}``); ``error`` the one-line error of a trace that could not be read.
``curves["ccdf"]`` and ``curves["lru"]`` (``{"x": [...], "y": [...]}``, y the share of
tokens reused more than x tokens apart / not held by an LRU cache of x tokens) are drawn
on one plot, and so is any other curve, labelled by its key. ``extras["baseline"]`` and
``extras["trend"]`` (added by the baselines) get a section of their own.

``run`` describes the run: ``{"started", "duration_s", "args", "git_commit",
"plugin_version", "python", "timings"}`` (``timings``: per trace name, the seconds each step
took; kept out of the per-trace results so those are byte-identical run to run);
``started`` is an ISO 8601 string or a Unix time, ``args`` a list of strings; any other key
is shown as is. :func:`run_info` builds one.

Templates are ``templates/report.html.j2`` and its partials (shipped in the wheel as the
package ``pytest_kvreuse.templates``); ``template_dir`` overrides any of them by name and
falls back to the built-in ones for the rest. Besides the prepared view (``page``,
``traces``, ``checks``) a template receives the results as JSON (``results``) and ``run``,
and the filters ``pct`` (a fraction as a percentage), ``count`` (thousands separators) and
``json_value``.
"""

from __future__ import annotations

import importlib.resources
import math
import numbers
import os
import platform
import shlex
import subprocess
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import jinja2
import numpy as np
import orjson

from .. import __version__
from ..atomic import atomic_write_bytes, atomic_write_text
from ..errors import KvReuseError
from ..formatting import (
    COUNT,
    FRACTION,
    TOKENS,
    UNDEFINED,
    byte_size,
    count,
    digits_apart,
    estimate_text,
    percent,
    seconds,
    value_text,
)
from ..metrics import METRICS, SIZE_FIGURES, Metric, figure_title, parse_arg_key
from ..result import (
    Results,
    TraceLike,
    TraceResult,
    as_result,
    checked_items,
    item_outcomes,
)
from .baseline_view import baseline_view
from .causes import causes_view
from .plot import GpuLine, ReplicaLine, Series, ccdf_figure, replicas_figure, svg_data_uri

__all__ = ["UNDEFINED", "render_report", "results_json", "run_info", "write_json", "write_report"]

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable


TEMPLATE = "report.html.j2"
TEMPLATE_PACKAGE = "pytest_kvreuse.templates"

_PARAM_LABELS = {
    "format": "format",
    "tokenizer": "tokenizer",
    "prompt_mode": "prompt mode",
    "block_size": "block size, tokens",
    "hash_block_size": "native hash block, tokens",
    "model": "model",
    "kv_dtype": "KV dtype",
    "tp": "tensor parallel",
    "kv_bytes_per_token": "KV bytes per token",
    "kv_bytes_per_request": "KV bytes per request (sliding-window, linear layers)",
    "path": "path",
}
_TIMING_LABELS = {"load_s": "load", "intervals_s": "reuse intervals"}
_EXTRA_GPU_COLORS = ("darkorange", "saddlebrown", "darkmagenta", "teal")
# Where the reuse-time axis starts: stamps are read to the millisecond at best, and a
# reuse within the same stamp (0 s) must still show on a log axis.
_MIN_SECONDS = 1e-3
# Curves this module draws itself; any other key is another run's curve.
_OWN_CURVES = ("ccdf", "lru", "opt", "reuse_time")


# --------------------------------------------------------------------------- writing

def write_report(path: str | os.PathLike[str], results: Sequence[TraceLike], run: dict, *,
                 template_dir: str | os.PathLike[str] | None = None) -> None:
    """Render the report and write it atomically (a good report is never half-replaced)."""
    atomic_write_text(path, render_report(results, run, template_dir=template_dir))


def write_json(path: str | os.PathLike[str], results: Sequence[TraceLike], run: dict) -> None:
    """Write the results document with sorted keys, atomically."""
    atomic_write_bytes(path, results_json(results, run))


def results_json(results: Sequence[TraceLike], run: dict, *, meta: dict | None = None) -> bytes:
    """The results document as deterministic JSON: same results, same bytes (NaN becomes
    null)."""
    doc = Results([as_result(r) for r in results], run=run, meta=meta or {}).to_json()
    return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2
                        | orjson.OPT_SERIALIZE_NUMPY) + b"\n"


def run_info(args: Sequence[str], *, started: datetime | None = None,
             duration_s: float | None = None,
             cwd: str | os.PathLike[str] | None = None) -> dict:
    """The ``run`` dict: when, how, from which commit, with which versions."""
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

def render_report(results: Sequence[TraceLike], run: dict, *,
                  template_dir: str | os.PathLike[str] | None = None) -> str:
    """The report as one HTML string: CSS inline, every plot a ``data:`` URI."""
    env = _environment(template_dir)
    results = [as_result(r) for r in results]
    run_timings = run.get("timings") if isinstance(run.get("timings"), dict) else {}
    traces = [_trace_view(i, r, run_timings) for i, r in enumerate(results)]
    checks = sorted((c for t in traces for c in t["checks"]), key=lambda c: c["passed"])
    try:
        template = env.get_template(TEMPLATE)
        return template.render(page=_page_view(results, traces, run), traces=traces,
                               checks=checks, results=[r.to_json() for r in results],
                               run=run)
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

def _json_value(x: object) -> str:
    """The value as the JSON file holds it, for a ``data-value`` attribute."""
    return orjson.dumps(x, option=orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY).decode()


def _unit(metric: str) -> str:
    m = METRICS.get(metric)
    return m.unit if m is not None else (FRACTION if metric.endswith("fraction") else COUNT)


# --------------------------------------------------------------------------- views

def _page_view(results: list[TraceResult], traces: list[dict], run: dict) -> dict:
    # Checks as pytest counts them: one per item that checked a trace.
    total, failed = checked_items(results)
    errors = sum(t["error"] is not None for t in traces)
    if failed or errors:
        status, word = "failed", "FAILED"
    elif total:
        status, word = "passed", "PASSED"
    else:
        status, word = "info", "NO CHECKS"
    parts = [f"{len(traces)} trace{'s' * (len(traces) != 1)}"]
    if total:
        parts.append(f"{total} check{'s' * (total != 1)}: {total - failed} passed, "
                     f"{failed} failed")
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


def _trace_view(index: int, result: TraceResult, run_timings: dict | None = None) -> dict:
    name = result.name or result.path or f"trace {index + 1}"
    anchor = f"trace-{index + 1}"
    checks = [_check_view(c, name, anchor) for c in result.checks]
    failed = sum(not ok for ok in item_outcomes(result).values())
    if result.error is not None:
        status = "error"
    elif failed:
        status = "failed"
    else:
        status = "passed" if checks else "info"
    view = {
        "name": name, "anchor": anchor, "status": status, "error": result.error,
        "path": result.path, "checks": checks, "failed": failed,
        "params": _param_rows(result.params), "figures": [], "sizes": [],
        "size_columns": [], "plot": None, "plot_alt": "", "time_plot": None,
        "time_plot_alt": "", "replica_plot": None, "replica_plot_alt": "",
        "timings": "", "headline": None,
        "baseline": baseline_view(result), "engine_notes": [],
        "sample": sample_note(result), "causes": None,
    }
    if result.error is not None:
        return view
    view["figures"] = _figure_rows(result)
    view["size_columns"], view["sizes"] = _size_table(result)
    view["plot"], view["plot_alt"] = _plot(result, name)
    view["time_plot"], view["time_plot_alt"] = _time_plot(result, name)
    view["replica_plot"], view["replica_plot_alt"] = _replica_plot(result, name)
    # Timings live in the run block, by trace name.
    timings = (run_timings or {}).get(name) or {}
    view["timings"] = _timings_text(timings if isinstance(timings, dict) else {})
    view["headline"] = _headline(result)
    view["engine_notes"] = _engine_notes(result)
    view["causes"] = causes_view(result.causes)
    return view


def _engine_notes(result: TraceResult) -> list[str]:
    """With engine vllm: the hit rate vLLM itself would print, at every size."""
    if result.params.get("engine") != "vllm":
        return []
    per = result.figures.get("lru_hit_prompt_fraction") or {}
    metric = METRICS["lru_hit_prompt_fraction"]
    return [f"At {int(k):,} tokens vLLM would report a prefix cache hit rate of "
            f"{metric.text(v)} (its hit tokens over all prompt tokens)."
            for k, v in sorted(per.items(), key=lambda kv: int(kv[0]))
            if str(k).isdigit()]


def _param_rows(params: dict) -> list[dict]:
    order = [k for k in _PARAM_LABELS if k in params and k != "path"]
    order += sorted(k for k in params if k not in _PARAM_LABELS)
    return [{"label": _PARAM_LABELS.get(k, k.replace("_", " ")),
             "text": count(params[k]) if isinstance(params[k], numbers.Real)
             else ("none" if params[k] is None else str(params[k]))} for k in order]


def _figure_rows(result: TraceResult) -> list[dict]:
    """Every figure without arguments, in registry order; then any figure with more
    arguments than a size (a lower tier, ...), one row each."""
    rows = []
    bpt = result.bytes_per_token
    for m in METRICS.values():
        if m.name not in result.figures or m.sized:
            continue
        v = result.figures[m.name]
        if not m.args:
            rows.append({"label": m.label, "text": _text(result, m, None, v),
                         "key": f"figures.{m.name}", "json": _json_value(v)})
            continue
        for key, value in (v.items() if isinstance(v, dict) else ()):
            rows.append({"label": _title(m, key, bpt), "text": _text(result, m, key, value),
                         "key": f"figures.{m.name}.{key}", "json": _json_value(value)})
    return rows


def sample_note(result: TraceResult) -> str | None:
    """How a sampled result says so (docs/sampling.md); None for an exact one."""
    sample = result.sample
    if not sample:
        return None
    not_sampled = ", ".join(sorted(sample.get("not_sampled") or {}))
    return (f"SHARDS at rate {sample.get('rate'):.6g}, {count(sample.get('kept_keys'))} "
            f"keys kept: figures are estimates ± {sample.get('error')}"
            + (f"; not estimated: {not_sampled}" if not_sampled else "") + ".")


def _text(result: TraceResult, m: Metric, key: str | None, value: object) -> str:
    """A figure in its unit: a sampled one with its standard error, a size figure in bytes
    too when the model is known."""
    errors = (result.sample or {}).get("errors") or {}
    if m.name in errors:
        error = errors[m.name] if key is None else (errors[m.name] or {}).get(key)
        text = estimate_text(m.unit, value, error)
    else:
        text = m.text(value)
    bpt = result.bytes_per_token
    if m.name in SIZE_FIGURES and bpt is not None and isinstance(value, numbers.Integral):
        text += f" ({byte_size(int(value) * bpt)})"
    return text


def _size_table(result: TraceResult) -> tuple[list[str], list[dict]]:
    """Columns (every figure read at a size alone) and one row per cache size."""
    columns = [(m.label, m.name, result.figures[m.name]) for m in METRICS.values()
               if m.sized and isinstance(result.figures.get(m.name), dict)
               and result.figures[m.name]]
    sizes = sorted({int(k) for _, _, per in columns for k in per})
    bpt = result.bytes_per_token
    rows = []
    for size in sizes:
        cells = []
        for _, name, per in columns:
            present = str(size) in per
            v = per.get(str(size))
            cells.append({"text": _text(result, METRICS[name], str(size), v) if present
                          else "",
                          "key": f"figures.{name}.{size}", "json": _json_value(v),
                          "present": present})
        text = f"{size:,}" if bpt is None else f"{size:,} ({byte_size(size * bpt)})"
        rows.append({"tokens": size, "text": text, "cells": cells})
    return [label for label, _, _ in columns], rows


def _title(m: Metric, key: str, bytes_per_token: int | None) -> str:
    """A figure's row title, its sizes in bytes too when the model is known."""
    args = parse_arg_key(m, key)
    title = figure_title(m.name, args)
    if bytes_per_token is not None:
        sizes = [f"{args[a.name]:,} tokens = {byte_size(args[a.name] * bytes_per_token)}"
                 for a in m.args if a.unit == TOKENS and isinstance(args.get(a.name), int)]
        if sizes:
            title += f" ({'; '.join(sizes)})"
    return title


def _headline(result: TraceResult) -> dict:
    """The few figures the overview table shows for each trace."""
    offl = result.figures.get("offloadable_fraction") or {}
    return {
        "requests": count(result.figures.get("num_requests")),
        "tokens": count(result.figures.get("total_tokens")),
        "reused": percent(result.figures.get("reused_fraction"), 1),
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
    metric = check.get("metric")
    value, lo, hi = check.get("value"), check.get("min"), check.get("max")
    unit = _unit(metric or "")
    digits = digits_apart(value, [lo, hi]) if unit == FRACTION else 2

    def fmt(x: object) -> str:
        return value_text(unit, x, digits)

    if lo is not None and hi is not None:
        bound = f"{fmt(lo)} – {fmt(hi)}"
    elif lo is not None:
        bound = f"≥ {fmt(lo)}"
    elif hi is not None:
        bound = f"≤ {fmt(hi)}"
    else:
        bound = UNDEFINED
    if metric is None:
        # A test body or an analysis item: no figure, its outcome is the check.
        figure = {"analysis": "trace analysed"}.get(check.get("kind"), "test body")
        value_shown = "passed" if check.get("passed") else "failed"
    else:
        args = {**({"at": check["at"]} if check.get("at") is not None else {}),
                **(check.get("args") or {})}
        figure, value_shown = figure_title(metric, args), fmt(value)
    return {
        "trace": trace, "anchor": anchor, "nodeid": check.get("nodeid") or "",
        "metric": metric or "", "figure": figure, "value_text": value_shown,
        "value_json": _json_value(value), "bound": bound,
        "passed": check.get("passed") is True, "message": check.get("message") or "",
    }


# --------------------------------------------------------------------------- plot

def _curve(c: object) -> tuple[list, list] | None:
    if isinstance(c, dict) and isinstance(c.get("x"), list) and isinstance(c.get("y"), list):
        return c["x"], c["y"]
    return None


def _plot(result: TraceResult, name: str) -> tuple[str | None, str]:
    """The CCDF (and LRU curve) with a GPU cache line per size of interest, as a data URI."""
    def real(x: object) -> bool:
        return isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(x)

    figures = result.figures
    reused = figures.get("reused_fraction")
    reused = reused if real(reused) else None
    compulsory = figures.get("compulsory_fraction")
    # Below the smallest cache the LRU share is everything seen before: 1 - compulsory.
    reusable = 1.0 - compulsory if real(compulsory) else reused
    curves = result.curves
    lru = "lru" in curves
    series = []
    ccdf = _curve(curves.get("ccdf"))
    if ccdf is not None:
        series.append(Series("reuse interval (proxy)" if lru else "reuse interval",
                             np.asarray(ccdf[0], dtype=np.float64),
                             np.asarray(ccdf[1], dtype=np.float64), start=reused))
    lru_curve = _curve(curves.get("lru"))
    if lru_curve is not None:
        series.append(Series("not held by an LRU cache of x tokens",
                             np.asarray(lru_curve[0], dtype=np.float64),
                             np.asarray(lru_curve[1], dtype=np.float64), start=reusable))
    opt_curve = _curve(curves.get("opt"))
    if opt_curve is not None:
        series.append(Series("not held by an OPT (Belady) cache of x tokens",
                             np.asarray(opt_curve[0], dtype=np.float64),
                             np.asarray(opt_curve[1], dtype=np.float64),
                             style={"color": "seagreen"}, start=reusable))
    for key in sorted(k for k in curves if k not in _OWN_CURVES):
        extra = _curve(curves[key])
        if extra is not None:
            # Another run's curve: its reused share is not known here, so it starts at x[0].
            series.append(Series(key.replace("_", " "), np.asarray(extra[0], dtype=np.float64),
                                 np.asarray(extra[1], dtype=np.float64)))
    if not series:
        return None, ""
    offl = result.figures.get("offloadable_fraction") or {}
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
    return svg_data_uri(fig), alt


def _time_plot(result: TraceResult, name: str) -> tuple[str | None, str]:
    """The reuse-time CCDF in seconds (log x), a line at each TTL with its hit share; None
    when the trace has no reuse times."""
    import numpy as np

    from .plot import GpuLine, Series, ccdf_figure

    xy = _curve(result.curves.get("reuse_time"))
    if xy is None or not xy[0]:
        return None, ""
    reused = result.figures.get("reused_fraction")
    start = reused if isinstance(reused, numbers.Real) and math.isfinite(reused) else None
    ttl = result.figures.get("ttl_hit_fraction") or {}
    m = METRICS["ttl_hit_fraction"]
    lines = []
    for color, key in zip(_EXTRA_GPU_COLORS * len(ttl), ttl, strict=False):
        at = float(parse_arg_key(m, key)["at"])
        hit = ttl[key]
        # The curve reads the share reused later than T: reused - TTL hit.
        later = None if hit is None or start is None else max(start - hit, 0.0)
        lines.append(GpuLine(max(at, _MIN_SECONDS), f"TTL {seconds(at)} ({percent(hit, 1)} hit)",
                             later, color))
    fig = ccdf_figure([Series("reuse time > t", np.asarray(xy[0], dtype=np.float64),
                              np.asarray(xy[1], dtype=np.float64), start=start)],
                      x_label="t: reuse time / time-to-live, seconds",
                      y_label="% of tokens reused more than t later",
                      more_gpu_lines=lines, min_x=_MIN_SECONDS)
    alt = (f"CCDF of reuse times of {name}: share of tokens (y, %) reused more than t "
           f"seconds later (log x axis)")
    if lines:
        alt += "; TTL lines at " + ", ".join(g.label for g in lines)
    return svg_data_uri(fig), alt


_ROUTING_COLORS = {"round-robin": "C0", "prefix": "C3", "session": "C2", "random": "C4"}


def _replica_plot(result: TraceResult, name: str) -> tuple[str | None, str]:
    """Hit fraction against the number of replicas, per routing policy and GPU size, with
    the pooled cache of ``N * C`` as the reference; None without routed figures."""
    routed = result.figures.get("routed_hit_fraction") or {}
    pooled = result.figures.get("lru_hit_fraction") or {}
    m = METRICS["routed_hit_fraction"]
    series: dict[tuple[int, str], dict[int, float | None]] = {}
    for key, hit in routed.items():
        args = parse_arg_key(m, key)
        series.setdefault((int(args["at"]), str(args["routing"])), {})[
            int(args["replicas"])] = hit
    if not any(v is not None for s in series.values() for v in s.values()):
        return None, ""
    sizes = sorted({size for size, _ in series})
    lines = []
    for size in sizes:
        # More than one size: the size names its lines (same colours, told apart by label).
        at = f" at {size:,} tokens" if len(sizes) > 1 else ""
        counts: list[int] = []
        for (s, routing), points in sorted(series.items()):
            if s != size:
                continue
            counts = sorted(set(counts) | set(points))
            ns = sorted(points)
            lines.append(ReplicaLine(f"{routing}{at}", ns, [points[n] for n in ns],
                                     _ROUTING_COLORS.get(routing, "C5")))
        lines.append(ReplicaLine(f"one pooled LRU cache of N x {size:,} tokens", counts,
                                 [pooled.get(str(n * size)) for n in counts], "dimgray",
                                 dashed=True))
    title = f"{name}: GPU cache of {', '.join(f'{s:,}' for s in sizes)} tokens per replica"
    fig = replicas_figure(lines, title=title)
    alt = (f"Hit fraction of {name} (y, %) against the number of replicas (x) for "
           + ", ".join(dict.fromkeys(r for _, r in series)) + " routing, and the pooled "
           "cache of the same total size")
    return svg_data_uri(fig), alt


def _gpu_label(size: int, offl: dict) -> str:
    frac = offl.get(str(size))
    tail = "" if frac is None else f" ({percent(frac, 1)} offloadable)"
    return f"GPU KV cache: {size:,} tokens{tail}"
