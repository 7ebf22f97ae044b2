"""The end-of-run table of declared traces (plain text from the results; no pytest)."""

from __future__ import annotations

from ..formatting import byte_size, count, percent
from ..metrics import METRICS, arg_key
from ..result import TraceResult, checked_items, item_outcomes

UNDEFINED = "-"


def trace_status(result: TraceResult) -> str:
    items = item_outcomes(result)
    if result.error:
        return "ERROR"
    if not items:
        return "no checks"
    failed = sum(not ok for ok in items.values())
    if failed:
        return f"FAILED {failed}/{len(items)}"
    return f"passed {len(items)}/{len(items)}"


def _columns(results: list[TraceResult]) -> list[tuple[str, str, dict]]:
    """``(header, metric, args)``: the offloadable fraction at every size of interest,
    then every other checked figure, in registry order (a failed check's value shows)."""
    wanted: dict[tuple[str, str | None], dict] = {}
    for r in results:
        for s in r.sizes:
            wanted.setdefault(("offloadable_fraction", str(s)), {"at": s})
        for c in r.checks:
            m = METRICS.get(c.get("metric") or "")
            if m is None or c["metric"] in ("num_requests", "total_tokens",
                                            "reused_fraction"):
                continue
            args = {**({"at": c["at"]} if c.get("at") is not None else {}),
                    **(c.get("args") or {})}
            wanted.setdefault((m.name, arg_key(m, args)), args)
    order = list(METRICS)
    keys = sorted(wanted, key=lambda k: (order.index(k[0]), wanted[k].get("at") or 0, k[1]
                                         or ""))
    cols = []
    for name, key in keys:
        m = METRICS[name]
        head = m.short or m.name
        if key is not None:
            args = wanted[(name, key)]
            if "at" not in args:
                pass  # its arguments follow, by name (hit=0.3)
            elif m.at_tokens:
                head += f" @{int(args['at']):,}{_in_bytes(results, int(args['at']))}"
            else:
                head += f" @{args['at']}s"  # a TTL, in seconds
            extra = {k: v for k, v in args.items() if k != "at"}
            head += "".join(f" {k}={_arg(v)}" for k, v in extra.items())
        cols.append((head, name, wanted[(name, key)]))
    return cols


def _in_bytes(results: list[TraceResult], tokens: int) -> str:
    """`` (64 GiB)`` when every trace has one model's bytes per token (a column holds one
    size in tokens; in bytes only if all its rows agree)."""
    per_token = {r.bytes_per_token for r in results}
    if len(per_token) != 1 or None in per_token:
        return ""
    return f" ({byte_size(tokens * per_token.pop())})"


def _arg(v: object) -> str:
    # Sizes with separators; a name (an eviction policy) as written.
    return f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else str(v)


def _cell(r: TraceResult, metric: str, args: dict) -> str:
    try:
        v = r.value(metric, **args)
    except KeyError:
        return ""
    m = METRICS[metric]
    # A sampled figure (docs/sampling.md) reads "~": an estimate (its error: the report).
    mark = "~" if r.sample and metric in (r.sample.get("errors") or {}) else ""
    if m.is_fraction:
        return mark + percent(v, 2, UNDEFINED).removesuffix(" %")
    return mark + count(v, UNDEFINED)


def summary_table(results: list[TraceResult]) -> list[str]:
    """One row per declared trace: block size, requests, tokens, reused %, the offloadable
    share at every size of interest and every checked figure, result."""
    cols = _columns(results)
    header = ["trace", "block", "requests", "tokens", "reused %", *(c[0] for c in cols),
              "result"]
    rows = [header]
    for r in results:
        rows.append([
            r.name, count(r.params.get("block_size"), UNDEFINED),
            _cell(r, "num_requests", {}), _cell(r, "total_tokens", {}),
            _cell(r, "reused_fraction", {}),
            *(_cell(r, metric, args) for _, metric, args in cols),
            trace_status(r),
        ])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = []
    for row in rows:
        cells = [row[0].ljust(widths[0])]
        cells += [cell.rjust(w) for cell, w in zip(row[1:-1], widths[1:-1], strict=True)]
        cells.append(row[-1])
        lines.append("  ".join(cells).rstrip())
    return lines


def summary_footer(results: list[TraceResult]) -> str:
    checks, failed = checked_items(results)
    errors = sum(1 for r in results if r.error)
    parts = [f"{len(results)} trace{'s' * (len(results) != 1)}",
             f"{checks} check{'s' * (checks != 1)}: {checks - failed} passed, "
             f"{failed} failed"]
    if errors:
        parts.append(f"{errors} unreadable")
    if any(r.sample for r in results):
        parts.append("~ marks a sampled estimate (its error: JSON, report)")
    return "kvreuse: " + ", ".join(parts)
