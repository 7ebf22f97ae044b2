"""The CCDF plot as a reader sees it: nothing drawn over the data, the curve starting where
the trace's reuse starts, literal titles, stable SVG bytes, no global matplotlib state."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.text import Text

from pytest_kvreuse.cli import main
from pytest_kvreuse.output import plot, report
from pytest_kvreuse.output.plot import GpuLine, Series, ccdf_figure
from pytest_kvreuse.result import as_result

REPO = Path(__file__).resolve().parents[1]
GPU = 345792
STATS = {"total tokens": "1,614,784", "blocks": "25,231 (23,940 unique)", "reuses": "1,291",
         "min / median / max": "17,280 / 96,960 / 1,246,464"}


def _curves(reused: float = 0.0512):
    x = np.array([17280, 96960, 180000, 240000, 400000, 1_200_000, 1_246_464], dtype=float)
    y = np.array([0.042, 0.024, 0.0225, 0.021, 0.0195, 0.0195, 0.0]) * reused / 0.0512
    return [Series("reuse interval > x (proxy)", x, y, start=reused),
            Series("LRU: evicted from an x-token cache (exact)", x * 1.02, y * 0.99,
                   style={"color": "darkorange"}, start=reused)]


def _drawn(fig):
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    renderer = canvas.get_renderer()
    fig.draw(renderer)
    return renderer


def _legends(fig):
    ax = fig.axes[0]
    return [lg for lg in [*fig.legends, ax.get_legend()] if lg is not None]


def _data_lines(ax):
    """Curves and vertical lines: every Line2D with a label that is not a marker."""
    return [ln for ln in ax.get_lines() if ln.get_linestyle() not in ("None", "none", "")]


def _vertical_xs(ax):
    xs = []
    for ln in ax.get_lines():
        x = np.asarray(ln.get_xdata(), dtype=float)
        if x.size == 2 and x[0] == x[1] and ln.get_linestyle() not in ("None", ""):
            xs.append(ax.transData.transform((x[0], 1.0))[0])
    return xs


def _overlap(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def _stats_boxes(fig, renderer):
    texts = [t for t in fig.findobj(Text) if "total tokens" in t.get_text()]
    boxes = []
    for t in texts:
        patch = t.get_bbox_patch()
        boxes.append(patch.get_window_extent(renderer) if patch else
                     t.get_window_extent(renderer))
    for lg in _legends(fig):
        if any("total tokens" in t.get_text() for t in lg.get_texts()):
            boxes.append(lg.get_window_extent(renderer))
    return boxes


CASES = {
    "cli": dict(gpu_cache_tokens=GPU, offloadable=0.021, lru_offloadable=0.021, stats=STATS),
    "tier": dict(gpu_cache_tokens=GPU, offloadable=0.021, lru_offloadable=0.0205, stats=STATS,
                 tier_bounds=[("GPU + lower tier: 445,792 tokens", 445792)]),
    "report": dict(gpu_cache_tokens=GPU, offloadable=0.021, gpu_label="GPU KV cache: 345,792",
                   more_gpu_lines=[GpuLine(262144, "GPU KV cache: 262,144 tokens", 0.0212,
                                           "darkorange"),
                                   GpuLine(16384, "GPU KV cache: 16,384 tokens", 0.05,
                                           "teal")]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_legend_covers_no_curve_stats_box_or_gpu_line(case):
    fig = ccdf_figure(_curves(), title="trace.jsonl (block size 64)", **CASES[case])
    renderer = _drawn(fig)
    ax = fig.axes[0]
    stats = _stats_boxes(fig, renderer)
    assert bool(stats) == ("stats" in CASES[case])
    curve_legends = [lg for lg in _legends(fig)
                     if not any("total tokens" in t.get_text() for t in lg.get_texts())]
    assert len(curve_legends) == 1
    box = curve_legends[0].get_window_extent(renderer)
    for ln in _data_lines(ax):
        assert not _overlap(box, ln.get_window_extent(renderer)), ln.get_label()
    for s in stats:
        assert not _overlap(box, s)
        # The stats box covers no curve either.
        for ln in _data_lines(ax):
            assert not _overlap(s, ln.get_window_extent(renderer)), ln.get_label()
    # Everything stays on the canvas.
    canvas_box = fig.bbox
    for b in [box, *stats]:
        assert b.x0 >= canvas_box.x0 - 1 and b.x1 <= canvas_box.x1 + 1
        assert b.y0 >= canvas_box.y0 - 1 and b.y1 <= canvas_box.y1 + 1


@pytest.mark.parametrize("case", list(CASES))
def test_marker_labels_sit_beside_the_vertical_lines(case):
    fig = ccdf_figure(_curves(), **CASES[case])
    renderer = _drawn(fig)
    ax = fig.axes[0]
    labels = [t for t in ax.texts if t.get_text().startswith(("LRU:", "offloadable:"))]
    assert labels
    xs = _vertical_xs(ax)
    assert xs
    axes_box = ax.get_window_extent(renderer)
    placed = []
    for t in labels:
        b = t.get_window_extent(renderer)
        for x in xs:
            assert not (b.x0 - 1 <= x <= b.x1 + 1), (t.get_text(), x, b)
        assert axes_box.x0 <= b.x0 and b.x1 <= axes_box.x1, t.get_text()
        assert axes_box.y0 <= b.y0 and b.y1 <= axes_box.y1, t.get_text()
        assert not any(_overlap(b, p) for p in placed), t.get_text()
        placed.append(b)


def test_curve_starts_at_the_reused_fraction_at_the_left_edge():
    reused = 0.0512
    fig = ccdf_figure(_curves(reused), gpu_cache_tokens=GPU, offloadable=0.021)
    ax = fig.axes[0]
    [line] = [ln for ln in ax.get_lines() if ln.get_label() == "reuse interval > x (proxy)"]
    assert line.get_xdata()[0] == pytest.approx(ax.get_xlim()[0])
    assert line.get_ydata()[0] == pytest.approx(reused * 100)
    # ... and drops to F(x[0]) only at the shortest interval.
    assert line.get_drawstyle() == "steps-post"
    assert line.get_xdata()[1] == 17280
    assert ax.get_ylim()[1] > reused * 100


def test_cli_plot_starts_at_the_reused_fraction(head120, tmp_path, monkeypatch):
    from pytest_kvreuse.cli import plot_analysis

    a = head120
    figures = []
    monkeypatch.setattr(plot, "save_figure", lambda fig, path: figures.append(fig))
    plot_analysis(a, GPU, str(tmp_path / "p.png"))
    ax = figures[0].axes[0]
    lines = [ln for ln in ax.get_lines() if ln.get_label().startswith(("reuse", "LRU"))]
    assert len(lines) == 2
    for line in lines:
        assert line.get_xdata()[0] == pytest.approx(ax.get_xlim()[0])
        assert line.get_ydata()[0] == pytest.approx(a.reused_fraction * 100)
    assert a.reused_fraction == pytest.approx(0.0512, abs=5e-4)


def test_report_plot_starts_at_the_reused_fraction(monkeypatch):
    x = [17280, 96960, 1246464]
    result = {"name": "t",
              "figures": {"reused_fraction": 0.0512, "compulsory_fraction": 1 - 0.0512},
              "offloadable_fraction": {str(GPU): 0.021},
              "curves": {"ccdf": {"x": x, "y": [0.042, 0.024, 0.0]},
                         "lru": {"x": x, "y": [0.041, 0.023, 0.0]}}}
    figures = []
    monkeypatch.setattr(report, "svg_data_uri", lambda fig: figures.append(fig) or "data:")
    report._plot(as_result(result), "t")
    ax = figures[0].axes[0]
    lines = [ln for ln in _data_lines(ax) if len(ln.get_xdata()) > 2]
    assert len(lines) == 2
    for line in lines:
        assert line.get_xdata()[0] == pytest.approx(ax.get_xlim()[0])
        assert line.get_ydata()[0] == pytest.approx(5.12)


def test_dollar_in_a_file_name_is_not_mathtext():
    import matplotlib

    title = "a$b$c.jsonl (block size 64)"
    fig = ccdf_figure(_curves(), title=title, gpu_cache_tokens=GPU, offloadable=0.02)
    _drawn(fig)
    # Text kept as text in the SVG: mathtext would split it into "a", "b" and "c.jsonl".
    import io

    buf = io.BytesIO()
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        fig.savefig(buf, format="svg")
    assert title.replace("$", "$") in buf.getvalue().decode()


def test_cli_and_report_share_one_axis_label(monkeypatch, head120, tmp_path):
    from pytest_kvreuse.cli import plot_analysis

    figures = []
    monkeypatch.setattr(plot, "save_figure", lambda fig, path: figures.append(fig))
    a = head120
    plot_analysis(a, GPU, str(tmp_path / "p.png"))
    monkeypatch.setattr(report, "svg_data_uri", lambda fig: figures.append(fig) or "data:")
    report._plot(as_result({"name": "t", "figures": {"reused_fraction": 0.05},
                            "curves": {"ccdf": {"x": [10, 20], "y": [0.04, 0.0]}}}), "t")
    assert [f.axes[0].get_ylabel() for f in figures] == [plot.Y_LABEL] * 2
    assert [f.axes[0].get_xlabel() for f in figures] == [plot.X_LABEL] * 2


def test_svg_from_the_cli_is_byte_identical_run_to_run(shared_traces, tmp_path):
    trace = shared_traces / "synthetic_head120.aiperf.json"
    outs = []
    for i in range(2):
        out = tmp_path / f"p{i}.svg"
        assert main(["analyze", str(trace), "--gpu-kv-cache-size", str(GPU), "--quiet",
                     "--output", str(out)]) == 0
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]
    assert b"<dc:date>" not in outs[0]


def test_report_svg_is_byte_identical():
    def render() -> bytes:
        fig = ccdf_figure(_curves(), gpu_cache_tokens=GPU, offloadable=0.021)
        uri = report.svg_data_uri(fig)
        return base64.b64decode(uri.split(",", 1)[1])

    assert render() == render()


def test_importing_and_plotting_leaves_matplotlib_global_state_alone(tmp_path):
    script = f"""
import sys, matplotlib
before = matplotlib.rcParams.copy()
backend_before = matplotlib.rcParams._get("backend")
import pytest_kvreuse, pytest_kvreuse.output.plot as plot, pytest_kvreuse.output.report
import pytest_kvreuse.output.baseline_view as bv, pytest_kvreuse.cli
import numpy as np
fig = plot.ccdf_figure([plot.Series("s", np.array([10., 100.]), np.array([0.5, 0.]),
                                    start=0.6)],
                       gpu_cache_tokens=50, offloadable=0.5, stats={{"a": "b"}}, title="t")
plot.save_figure(fig, {str(tmp_path / "x.png")!r})
plot.save_figure(plot.ccdf_figure([]), {str(tmp_path / "x.svg")!r})
pytest_kvreuse.output.report.svg_data_uri(plot.ccdf_figure([]))
bv._trend_plot([{{"run": "a", "figures": {{"x_fraction": 0.1}}}},
                {{"run": "b", "figures": {{"x_fraction": 0.2}}}}], "t")
assert "matplotlib.pyplot" not in sys.modules, "pyplot imported"
assert matplotlib.rcParams._get("backend") == backend_before
after = matplotlib.rcParams.copy()
changed = [k for k in before if before._get(k) != after._get(k)]
assert not changed, changed
print("ok")
"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO),
                                                         os.environ.get("PYTHONPATH", "")])}
    env.pop("MPLBACKEND", None)
    r = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"
    assert (tmp_path / "x.png").stat().st_size > 1000
