"""The report's baseline section: figures baseline vs current, both CCDFs on one plot, and
the trend chart over the saved runs."""

from __future__ import annotations

import copy
import xml.etree.ElementTree as ET

from report_html import decode_image, parse

from pytest_kvreuse.baselines.drift import parse_tolerances
from pytest_kvreuse.baselines.guard import BaselineGuard
from pytest_kvreuse.baselines.storage import BaselineStorage, baseline_document
from pytest_kvreuse.output.baseline_view import baseline_view
from pytest_kvreuse.output.report import render_report

RUN = {"started": "2026-11-30T07:00:00+00:00", "git_commit": "c" * 40, "args": [],
       "plugin_version": "0.1.0", "python": "3.11.7", "duration_s": 1.0}


def trace(name="chat", reused=0.5, offload=0.4, unique=1000, sha="a" * 64) -> dict:
    return {"name": name, "params": {"path": f"{name}.jsonl", "block_size": 64,
                                     "content_sha256": sha},
            "figures": {"num_requests": 10, "total_tokens": 64000, "reused_fraction": reused,
                        "unique_blocks": unique},
            "offloadable_fraction": {"16384": offload},
            "curves": {"ccdf": {"x": [1, 100, 10000, 100000],
                                "y": [reused, offload * 1.1, offload, 0.0]}},
            "timings": {}, "checks": [], "error": None}


def report_inputs(tmp_path, current):
    storage = BaselineStorage(tmp_path)
    storage.save(baseline_document([trace(reused=0.48)], RUN), "main")
    storage.save(baseline_document([trace()], RUN), "main")
    guard = BaselineGuard(storage, parse_tolerances(["offloadable_fraction:0.02",
                                                     "unique_blocks:5%"]), compare=True)
    return guard.report_data(current, RUN)


def test_baseline_view_formats_each_figure(tmp_path):
    results, _ = report_inputs(tmp_path, [trace(offload=0.45, unique=1020, sha="b" * 64)])
    view = baseline_view(results[0])
    assert view["run"] == "0002_main" and view["drifted"]
    assert view["status"] == "drifted beyond tolerance"
    assert view["changed"] == "trace changed (content sha256 aaaaaaaaaaaa → bbbbbbbbbbbb)"
    rows = {r["key"]: r for r in view["rows"]}
    off = rows["offloadable_fraction@16384"]
    assert off["figure"] == "offloadable fraction at 16,384 tokens"
    assert (off["baseline"], off["current"]) == ("40.00 %", "45.00 %")
    assert off["delta"] == "+5.00 pp (+12.5 %)" and off["tolerance"] == "± 2.00 pp"
    assert off["drifted"] and off["checked"]
    uniq = rows["unique_blocks"]
    assert (uniq["baseline"], uniq["current"], uniq["delta"]) == ("1,000", "1,020",
                                                                 "+20 (+2.0 %)")
    assert uniq["tolerance"] == "5% (± 50)" and not uniq["drifted"]
    assert not rows["reused_fraction"]["checked"] and rows["reused_fraction"]["tolerance"] == ""
    assert view["trend_plot"].startswith("data:image/svg+xml;base64,")
    assert "over 3 runs (0001_main to this run)" in view["trend_alt"]


def test_no_baseline_data_no_view():
    assert baseline_view(trace()) is None


def test_report_renders_baseline_table_both_ccdfs_and_trend(tmp_path):
    current = [trace(offload=0.45, sha="b" * 64), trace("fresh")]
    results, run = report_inputs(tmp_path, copy.deepcopy(current))
    html = render_report(results, run)
    page = parse(html)
    assert all(v.startswith(("data:", "#")) for _, _, v in page.urls)
    text = " ".join(page.text)
    assert "Against baseline 0002_main: drifted beyond tolerance" in text
    assert "trace changed (content sha256 aaaaaaaaaaaa → bbbbbbbbbbbb)" in text
    assert "+5.00 pp (+12.5 %)" in text
    assert "0002_main.json" in text  # the header names the saved run compared with
    chat = [src for section, src in page.images if section == "trace-1"]
    assert len(chat) == 2  # the CCDF plot and the trend chart
    ccdf_svg, trend_svg = (decode_image(src).decode() for src in chat)
    ET.fromstring(ccdf_svg)
    ET.fromstring(trend_svg)
    fresh = [src for section, src in page.images if section == "trace-2"]
    assert len(fresh) == 1  # a new trace: its own plot, no baseline section
    # Without baseline data the page is what it was.
    plain = render_report(copy.deepcopy(current), RUN)
    assert "Against baseline" not in plain
    # Both CCDFs on one plot: the baseline's curve (and its legend entry) is drawn too.
    [plain_ccdf] = [decode_image(src).decode() for section, src in parse(plain).images
                    if section == "trace-1"]
    assert ccdf_svg.count('id="line2d_') > plain_ccdf.count('id="line2d_')
