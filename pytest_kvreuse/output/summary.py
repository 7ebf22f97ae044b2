"""The end-of-run table of analysed traces (plain text from the result dicts; no pytest)."""

from __future__ import annotations


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:.2f}"


def _count(x: int | None) -> str:
    return "-" if x is None else f"{x:,}"


def trace_status(result: dict) -> str:
    if result.get("error"):
        return "ERROR"
    checks = result.get("checks", [])
    if not checks:
        return "no checks"
    failed = sum(1 for c in checks if not c["passed"])
    if failed:
        return f"FAILED {failed}/{len(checks)}"
    return f"passed {len(checks)}/{len(checks)}"


def summary_table(results: list[dict]) -> list[str]:
    """One row per trace and block size: requests, tokens, reused %, offloadable % at each
    size, result."""
    sizes = sorted({int(c) for r in results for c in r.get("offloadable_fraction", {})})
    header = ["trace", "block", "requests", "tokens", "reused %",
              *(f"offload % @{c:,}" for c in sizes), "result"]
    rows = [header]
    for r in results:
        fig = r.get("figures") or {}
        off = r.get("offloadable_fraction", {})
        rows.append([
            r["name"], _count((r.get("params") or {}).get("block_size")),
            _count(fig.get("num_requests")), _count(fig.get("total_tokens")),
            _pct(fig.get("reused_fraction")),
            *(_pct(off.get(str(c))) if str(c) in off else "" for c in sizes),
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


def summary_footer(results: list[dict]) -> str:
    checks = [c for r in results for c in r.get("checks", [])]
    failed = sum(1 for c in checks if not c["passed"])
    errors = sum(1 for r in results if r.get("error"))
    parts = [f"{len(results)} trace{'s' * (len(results) != 1)}",
             f"{len(checks)} check{'s' * (len(checks) != 1)}: {len(checks) - failed} passed, "
             f"{failed} failed"]
    if errors:
        parts.append(f"{errors} unreadable")
    return "kvreuse: " + ", ".join(parts)
