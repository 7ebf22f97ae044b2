"""Where reuse comes from and where it breaks, as the CLI prints it and the report shows it:
both read a result's ``causes`` (:func:`pytest_kvreuse.result.causes_document`), so the
terminal, the JSON and the HTML say the same (docs/causes.md)."""

from __future__ import annotations

from ..formatting import UNDEFINED_TEXT, count, percent, seconds


def _pct(x: object) -> str:
    return percent(x, 2, UNDEFINED_TEXT)


def _quoted(text: object, width: int = 60) -> str:
    if text is None:
        return ""
    text = str(text).replace("\n", "\\n")
    return repr(text if len(text) <= width else text[:width - 1] + "…")


def _when(request: int, time: object) -> str:
    return f"#{count(request)}" + ("" if time is None else f" ({seconds(time)})")


def prefix_rows(causes: dict) -> list[dict]:
    """One row per shared prefix, its cells as text."""
    rows = []
    for i, p in enumerate(causes.get("top_prefixes") or [], 1):
        rows.append({
            "rank": str(i), "requests": count(p["requests"]),
            "length": f"{count(p['blocks'])} blocks ({count(p['tokens'])} tokens)",
            "starts": f"block {count(p['depth_blocks'])}",
            "reused": count(p["reused_tokens"]), "share": _pct(p["share"]),
            "first": _when(p["first_request"], p.get("first_time")),
            "last": _when(p["last_request"], p.get("last_time")),
            "text": p.get("text"), "share_value": p["share"]})
    return rows


def category_tables(causes: dict) -> list[dict]:
    """One table per category (``type``, ``model``, ``session``, ...): what it groups by,
    the sizes of its offloadable columns, one row per category value."""
    tables = []
    for cats in causes.get("categories") or []:
        sizes = list((cats["rows"][0]["offloadable_fraction"] if cats["rows"] else {}).keys())
        rows = [{"label": r["label"], "requests": count(r["requests"]),
                 "tokens": count(r["tokens"]), "reused": _pct(r["reused_fraction"]),
                 "offloadable": [_pct(r["offloadable_fraction"].get(s)) for s in sizes]}
                for r in cats["rows"]]
        tables.append({"by": cats["by"], "sizes": [count(int(s)) for s in sizes],
                       "rows": rows})
    return tables


def breaks_summary(causes: dict) -> str | None:
    """One sentence: how many turns broke and what they lost; None when not asked."""
    b = causes.get("breaks")
    if b is None:
        return None
    if "turns" not in b:
        return f"undefined: {b.get('reason')}"
    text = (f"{count(b['broken_turns'])} of {count(b['turns'])} session turns do not re-send "
            f"the previous turn's prompt: {count(b['lost_tokens'])} tokens of full blocks "
            f"lost ({_pct(b['fraction'])} of tokens, broken_reuse_fraction)")
    if b.get("reason"):
        text += f"; no causes: {b['reason']}"
    elif b.get("explained_turns", 0) < b["broken_turns"]:
        text += f"; causes from the {count(b['explained_turns'])} turns losing most"
    return text


def break_rows(causes: dict) -> list[dict]:
    rows = []
    for i, c in enumerate((causes.get("breaks") or {}).get("causes") or [], 1):
        ex = c["example"]
        rows.append({
            "rank": str(i), "cause": c["cause"], "turns": count(c["turns"]),
            "sessions": count(c["sessions"]), "lost": count(c["lost_tokens"]),
            "share": _pct(c["share"]), "fraction": _pct(c.get("fraction")),
            "before": ex["before"], "was": ex["was"], "now": ex["now"],
            "where": (f"request #{count(ex['turn'])} against #{count(ex['previous'])}, "
                      f"token {count(ex['token'])}"),
            "share_value": c["share"]})
    return rows


def causes_text(causes: dict) -> str:
    """The CLI's sections: top shared prefixes, reuse per category, where reuse breaks."""
    lines: list[str] = []
    prefixes = prefix_rows(causes)
    if "top_prefixes" in causes:
        lines.append("top shared prefixes (by reused tokens):")
        if not prefixes:
            lines.append("  none: no block is reused")
        for r in prefixes:
            lines.append(f"  {r['rank']:>2}. {r['reused']} reused tokens ({r['share']} of "
                         f"reuse): {r['length']} from {r['starts']}, {r['requests']} "
                         f"requests, first {r['first']}, last {r['last']}")
            if r["text"] is not None:
                lines.append(f"      {_quoted(r['text'], 80)}")
    for table in category_tables(causes):
        head = "".join(f", offloadable at {s}" for s in table["sizes"])
        lines.append(f"reuse by {table['by']} (reused{head}):")
        for r in table["rows"]:
            off = "".join(f", {o}" for o in r["offloadable"])
            lines.append(f"  {r['label']}: {r['requests']} requests, {r['tokens']} tokens, "
                         f"{r['reused']}{off}")
    summary = breaks_summary(causes)
    if summary is not None:
        lines.append(f"where reuse breaks: {summary}")
        for r in break_rows(causes):
            lines.append(f"  {r['rank']:>2}. {r['cause']}: {r['turns']} turns of "
                         f"{r['sessions']} sessions, {r['lost']} tokens lost "
                         f"({r['fraction']} of tokens, {r['share']} of the lost)")
            lines.append(f"      before {_quoted(r['before'])}, was {_quoted(r['was'])}, "
                         f"now {_quoted(r['now'])} ({r['where']})")
    return "\n".join(lines)


def causes_view(causes: dict) -> dict | None:
    """The report's sections (a table and a bar chart each); None when nothing was asked."""
    if not causes:
        return None
    from .plot import bar_figure, svg_data_uri

    prefixes = prefix_rows(causes)
    breaks = break_rows(causes)
    view = {"asked_prefixes": "top_prefixes" in causes, "prefixes": prefixes,
            "prefix_plot": None, "categories": category_tables(causes),
            "breaks_summary": breaks_summary(causes), "breaks": breaks,
            "break_plot": None}
    if prefixes:
        view["prefix_plot"] = svg_data_uri(bar_figure(
            [f"#{r['rank']}: {r['length']} × {r['requests']} req" for r in prefixes],
            [r["share_value"] for r in prefixes], x_label="% of all reused tokens"))
    if breaks:
        view["break_plot"] = svg_data_uri(bar_figure(
            [_quoted(r["cause"], 40) for r in breaks], [r["share_value"] for r in breaks],
            x_label="% of the tokens broken turns lost", color="C3"))
    return view
