"""The HTML report and JSON results: self-contained, escaped, and saying what the JSON says."""

from __future__ import annotations

import copy
import json
import math
import re
from pathlib import Path

import pytest
from report_html import decode_image, json_value, lookup, parse

from pytest_kvreuse import analyze
from pytest_kvreuse.cli import main
from pytest_kvreuse.errors import KvReuseError
from pytest_kvreuse.output import report
from pytest_kvreuse.result import TraceResult

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "example_traces" / "chat_sessions.mooncake.jsonl"
SIZES = [16_384, 345_792]
HOSTILE = "<script>alert(1)</script>"
RUN = {"started": "2026-11-30T06:00:00+00:00", "duration_s": 1.25,
       "args": ["example_traces", "--kvreuse-report", "--kvreuse-json=r.json"],
       "git_commit": "0123456789abcdef0123456789abcdef01234567", "plugin_version": "0.1.0",
       "python": "3.11.7"}


@pytest.fixture(scope="module")
def example_result() -> dict:
    return TraceResult.from_analysis(analyze(EXAMPLE), name="chat", sizes=SIZES).to_json()


def _check(result: dict, metric: str, at: int | None, lo: float | None, hi: float | None,
           nodeid: str) -> dict:
    value = result["figures"][metric][str(at)] if at else result["figures"][metric]
    passed = (lo is None or value >= lo) and (hi is None or value <= hi)
    return {"nodeid": nodeid, "metric": metric, "at": at, "min": lo, "max": hi,
            "value": value, "passed": passed,
            "message": None if passed else f"{metric} is {value}, outside [{lo}, {hi}]"}


def _run_results(example_result: dict, *, failing: bool) -> list[dict]:
    chat = copy.deepcopy(example_result)
    chat["error"] = None
    chat["checks"] = [
        _check(chat, "reused_fraction", None, 0.5, None, "kvreuse.toml::chat::reused_fraction"),
        _check(chat, "offloadable_fraction", 345_792, 0.2, 0.3,
               "kvreuse.toml::chat::offloadable_fraction@345792"),
        # Failing run: a bound the trace misses, placed last so "failing first" is tested.
        _check(chat, "offloadable_fraction", 16_384, 0.9 if failing else 0.1, None,
               "kvreuse.toml::chat::offloadable_fraction@16384"),
    ]
    second = copy.deepcopy(example_result)
    second.update(name=HOSTILE, error=None, checks=[])
    results = [chat, second]
    if failing:
        results.append({"name": "broken", "path": "traces/broken.jsonl", "params": {},
                        "sizes": [], "figures": {},
                        "error": "traces/broken.jsonl:3: not valid JSON", "checks": [
                            {"nodeid": "kvreuse.toml::broken::reused_fraction",
                             "metric": "reused_fraction", "at": None, "min": 0.1, "max": None,
                             "value": None, "passed": False,
                             "message": "traces/broken.jsonl:3: not valid JSON"}]})
    return results


def _write(tmp_path: Path, results: list[dict]) -> tuple[str, dict]:
    report.write_report(tmp_path / "report.html", results, RUN)
    report.write_json(tmp_path / "results.json", results, RUN)
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    return html, json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))


def _assert_self_contained(html: str) -> None:
    page = parse(html)
    fetching = {t for t, _ in page.tags} & {"script", "link", "iframe", "object", "embed",
                                            "base", "audio", "video", "source", "frame"}
    assert not fetching, fetching
    for tag, attr, value in page.urls:
        if attr == "href":
            assert value.startswith("#"), (tag, value)
            assert value[1:] in page.ids, f"dangling in-page anchor {value}"
        else:
            assert value.startswith("data:"), (tag, attr, value[:60])
    for tag, attrs in page.tags:
        assert "style" not in attrs or "url(" not in attrs["style"], (tag, attrs)
        assert not any(k.startswith("on") for k in attrs), (tag, attrs)
    css = "".join(page.styles)
    assert css.strip(), "the stylesheet is inline"
    assert "url(" not in css and "@import" not in css


def _assert_figures_match(html: str, data: dict) -> None:
    page = parse(html)
    sections = {f"trace-{i + 1}": t for i, t in enumerate(data["traces"])}
    seen: dict[str, set[str]] = {s: set() for s in sections}
    for section, key, value, text in page.figures:
        trace = sections[section]
        expected = lookup(trace, key)
        assert json_value(value) == expected, (section, key)
        # What a reader sees is that same value, formatted.
        if key.endswith("fraction") or "fraction." in key:
            assert text == f"{expected * 100:.2f} %", (key, text)
        elif key.startswith("figures.reuse_time_"):
            assert text == f"{expected:,.3f}".rstrip("0").rstrip(".") + " s", (key, text)
        else:
            assert text == f"{expected:,}", (key, text)
        seen[section].add(key)
    for section, trace in sections.items():
        if trace.get("error"):
            assert not seen[section]
            continue
        wanted = {f"figures.{k}" if not isinstance(v, dict) else f"figures.{k}.{c}"
                  for k, v in trace["figures"].items() for c in (v if isinstance(v, dict)
                                                                 else [None])}
        assert wanted <= seen[section], wanted - seen[section]


def _assert_plots(html: str, data: dict) -> None:
    page = parse(html)
    analysed = {f"trace-{i + 1}" for i, t in enumerate(data["traces"]) if not t.get("error")}
    assert {s for s, _ in page.images} == analysed
    # Per trace: the CCDF plot, and the reuse-time plot when the trace has timestamps.
    timed = {f"trace-{i + 1}" for i, t in enumerate(data["traces"])
             if (t.get("curves") or {}).get("reuse_time")}
    assert len(page.images) == len(analysed) + len(timed)
    for _, src in page.images:
        assert len(decode_image(src)) > 1000


@pytest.mark.parametrize("failing", [False, True], ids=["passing", "failing"])
def test_report_is_self_contained_and_matches_json(tmp_path: Path, example_result: dict,
                                                   failing: bool) -> None:
    results = _run_results(example_result, failing=failing)
    html, data = _write(tmp_path, results)
    assert data["run"] == RUN and data["schema_version"] == 1
    assert data["traces"] == [TraceResult.from_json(r).to_json() for r in results]
    _assert_self_contained(html)
    _assert_plots(html, data)
    _assert_figures_match(html, data)

    page = parse(html)
    text = " ".join(" ".join(page.text).split())
    assert ("FAILED" if failing else "PASSED") in text
    rows = page.check_rows
    assert len(rows) == sum(len(t["checks"]) for t in results)
    classes = [c for c, _ in rows]
    n_failed = sum(not c["passed"] for t in results for c in t["checks"])
    assert classes == ["fail"] * n_failed + ["pass"] * (len(rows) - n_failed)
    assert all("FAIL" in row for c, row in rows if c == "fail")
    if failing:
        assert "traces/broken.jsonl:3: not valid JSON" in text
        assert "could not be analysed" in text
    # The check values in the summary are the JSON's.
    shown = [json_value(a["data-check-value"]) for t, a in page.tags if "data-check-value" in a]
    assert sorted(map(str, shown)) == sorted(
        str(c["value"]) for t in results for c in t["checks"])
    # The header.
    assert "2026-11-30 06:00:00 UTC" in text
    assert "example_traces --kvreuse-report --kvreuse-json=r.json" in text
    assert RUN["git_commit"] in text and "0.1.0" in text


def test_hostile_trace_name_is_escaped(tmp_path: Path, example_result: dict) -> None:
    results = _run_results(example_result, failing=True)
    results[2]["error"] = "<img src=x onerror=alert(2)>"
    results[0]["checks"][0]["message"] = "</td><script>alert(3)</script>"
    html, _ = _write(tmp_path, results)
    assert HOSTILE not in html
    assert "<img src=x" not in html and "<script>alert(3)" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    page = parse(html)
    assert not [t for t, _ in page.tags if t == "script"]
    assert HOSTILE in " ".join(page.text)
    _assert_self_contained(html)


def test_json_is_deterministic_and_sorted(tmp_path: Path, example_result: dict) -> None:
    results = _run_results(example_result, failing=True)
    report.write_json(tmp_path / "a.json", results, RUN)
    report.write_json(tmp_path / "b.json", copy.deepcopy(results), dict(RUN))
    a = (tmp_path / "a.json").read_bytes()
    assert a == (tmp_path / "b.json").read_bytes()

    def keys_sorted(node: object) -> bool:
        if isinstance(node, dict):
            return list(node) == sorted(node) and all(map(keys_sorted, node.values()))
        if isinstance(node, list):
            return all(map(keys_sorted, node))
        return True

    assert keys_sorted(json.loads(a))
    # NaN is not JSON: it is written as null.
    nan = copy.deepcopy(results)
    nan[0]["figures"]["reused_fraction"] = math.nan
    assert json.loads(report.results_json(nan, RUN))["traces"][0]["figures"][
        "reused_fraction"] is None


def test_report_is_deterministic(example_result: dict) -> None:
    results = _run_results(example_result, failing=False)
    assert report.render_report(results, RUN) == report.render_report(
        copy.deepcopy(results), dict(RUN))


def test_lru_blocks_render_when_present(tmp_path: Path, example_result: dict) -> None:
    result = copy.deepcopy(example_result)
    result.update(checks=[], error=None)
    ccdf = result["curves"]["ccdf"]
    result["figures"].update(lru_hit_fraction={"16384": 0.01, "345792": 0.0631},
                             lru_offloadable_fraction={"16384": 0.61, "345792": 0.5894},
                             compulsory_fraction=0.3476)
    result["curves"]["lru"] = {"x": ccdf["x"], "y": [y * 0.9 for y in ccdf["y"]]}
    html, data = _write(tmp_path, [result])
    _assert_figures_match(html, data)
    _assert_plots(html, data)
    keys = {k for _, k, _, _ in parse(html).figures}
    assert {"figures.lru_hit_fraction.345792", "figures.lru_offloadable_fraction.16384",
            "figures.compulsory_fraction"} <= keys
    assert "LRU hit" in html and "offloadable (interval)" in html

    plain = copy.deepcopy(example_result)
    plain.update(checks=[], error=None)
    for name in [n for n in plain["figures"] if n.startswith("lru_")] + ["lower_tier_capacity"]:
        plain["figures"].pop(name, None)
    plain["curves"].pop("lru", None)
    html = report.render_report([plain], RUN)
    assert "LRU hit</th>" not in html and not any(
        k.startswith("figures.lru_") for _, k, _, _ in parse(html).figures)


def test_trace_without_blocks_renders_undefined(tmp_path: Path) -> None:
    result = {"name": "tiny", "params": {"block_size": 64, "format": "mooncake"},
              "sizes": [345792],
              "figures": {"num_requests": 2, "num_blocks": 0, "unique_blocks": 0,
                          "total_tokens": 0, "reuse_count": 0,
                          "reused_fraction": None, "interval_min": None,
                          "interval_median": None, "interval_max": None,
                          "offloadable_fraction": {"345792": None}},
              "curves": {"ccdf": {"x": [], "y": []}}, "checks": [], "error": None}
    html = report.render_report([result], {})
    _assert_self_contained(html)
    cells = {k: t for _, k, _, t in parse(html).figures}
    assert cells["figures.reused_fraction"] == report.UNDEFINED
    assert cells["figures.offloadable_fraction.345792"] == report.UNDEFINED
    assert "NO CHECKS" in html


def test_template_dir_overrides_by_name(tmp_path: Path, example_result: dict) -> None:
    custom = tmp_path / "templates"
    custom.mkdir()
    (custom / "report.css").write_text("body { background: #fafafa; } /* team style */")
    (custom / "_run.html.j2").write_text(
        "<h1>Team {{ run.git_commit[:7] }}</h1><p>{{ results[0].figures.total_tokens | count }}"
        " tokens, {{ results[0].figures.reused_fraction | pct(1) }} reused</p>")
    result = dict(example_result, checks=[], error=None)
    html = report.render_report([result], RUN, template_dir=custom)
    assert "/* team style */" in html
    assert "<h1>Team 0123456</h1><p>10,001,984 tokens, 81.6 % reused</p>" in html
    assert 'data-figure="figures.num_requests"' in html  # partials fall back to built-ins


def test_bad_template_dir_is_a_clear_error(tmp_path: Path, example_result: dict) -> None:
    out = tmp_path / "report.html"
    result = dict(example_result, checks=[], error=None)
    report.write_report(out, [result], RUN)
    good = out.read_bytes()
    with pytest.raises(KvReuseError, match="template directory not found"):
        report.write_report(out, [result], RUN, template_dir=tmp_path / "missing")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "_trace.html.j2").write_text("line one\n{% if %}\n")
    with pytest.raises(KvReuseError) as info:
        report.write_report(out, [result], RUN, template_dir=broken)
    assert re.search(r"_trace\.html\.j2:2: template error", info.value.one_line())
    typo = tmp_path / "typo"
    typo.mkdir()
    (typo / "_run.html.j2").write_text("{{ page.no_such_field }}")
    with pytest.raises(KvReuseError, match="no_such_field"):
        report.write_report(out, [result], RUN, template_dir=typo)
    # A failed render never touches the report already there.
    assert out.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".report")] == []


def test_report_file_is_readable_by_others(tmp_path: Path, example_result: dict) -> None:
    out = tmp_path / "report.html"
    report.write_report(out, [dict(example_result, checks=[], error=None)], RUN)
    # Like a file open() creates, not mkstemp's private 0600: CI artifacts are shared.
    assert out.stat().st_mode & 0o777 == 0o666 & ~_umask()


def _umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_builtin_templates_are_found() -> None:
    import importlib.metadata
    import importlib.util

    try:
        importlib.metadata.distribution("pytest-kvreuse")
    except importlib.metadata.PackageNotFoundError:
        pass  # a bare source checkout on sys.path: the source-tree fallback serves
    else:  # installed, editable or not: the package mapping serves the templates
        assert importlib.util.find_spec("pytest_kvreuse.templates") is not None
    root = report.builtin_templates()
    for name in ("report.html.j2", "report.css", "_run.html.j2", "_summary.html.j2",
                 "_trace.html.j2"):
        assert root.joinpath(name).is_file(), name


def test_cli_html_shares_the_renderer(tmp_path: Path) -> None:
    out = tmp_path / "out" / "report.html"
    js = tmp_path / "figures.json"
    assert main(["analyze", str(EXAMPLE), "--gpu-kv-cache-size", "345792", "--html", str(out),
                 "--json", str(js), "-q"]) == 0
    html = out.read_text(encoding="utf-8")
    _assert_self_contained(html)
    page = parse(html)
    assert len(page.images) == 2  # the CCDF plot and the reuse-time plot (Mooncake stamps)
    for _, src in page.images:
        decode_image(src)
    figures = json.loads(js.read_text())["traces"][0]["figures"]
    cells = {k: json_value(v) for _, k, v, _ in page.figures}
    for key in ("num_requests", "num_blocks", "unique_blocks", "total_tokens", "reuse_count",
                "reused_fraction", "interval_min", "interval_median", "interval_max"):
        assert cells[f"figures.{key}"] == figures[key], key
    assert cells["figures.offloadable_fraction.345792"] == \
        figures["offloadable_fraction"]["345792"]
    assert "chat_sessions.mooncake.jsonl" in html
    assert "--gpu-kv-cache-size 345792" in " ".join(" ".join(page.text).split())


def test_cli_html_error_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"timestamp": 1, "input_length": 600, "hash_ids": [1, 2]}\nnot json\n')
    assert main(["analyze", str(bad), "--html", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kvreuse: error:") and err.count("\n") == 1
    assert not (tmp_path / "r.html").exists()


def test_report_renders_again_from_the_json(example_result: dict) -> None:
    # xdist's controller has only plain dicts; so does anyone holding just the JSON file.
    results = _run_results(example_result, failing=True)
    data = json.loads(report.results_json(results, RUN))
    assert report.render_report(data["traces"], data["run"]) == report.render_report(
        results, RUN)


def test_numpy_scalars_read_like_plain_numbers(example_result: dict) -> None:
    import numpy as np

    plain = dict(copy.deepcopy(example_result), checks=[], error=None)
    numpyish = copy.deepcopy(plain)
    numpyish["figures"] = {k: (np.int64(v) if isinstance(v, int) else
                               np.float64(v) if isinstance(v, float) else
                               {s: np.int64(x) if isinstance(x, int) else np.float64(x)
                                for s, x in v.items()}
                               if isinstance(v, dict) else v)
                           for k, v in plain["figures"].items()}
    assert report.results_json([numpyish], RUN) == report.results_json([plain], RUN)
    assert report.render_report([numpyish], RUN) == report.render_report([plain], RUN)
