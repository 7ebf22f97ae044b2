"""The CCDF plot, drawn as the original tool did but readable: lines, not 3,500 px of dots.

Drawn on a bare :class:`~matplotlib.figure.Figure` with its own canvas, never through
``pyplot``: a plugin must not pick the host's backend or leave figures and settings behind
(a test session may draw plots of its own).
"""

from __future__ import annotations

import base64
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.backends.backend_svg import FigureCanvasSVG
from matplotlib.cbook import pts_to_poststep
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.path import Path
from matplotlib.ticker import FuncFormatter, NullFormatter

from ..atomic import atomic_write_bytes
from ..core.curves import downsample
from ..errors import KvReuseError

# One wording for the CLI plot and the report: both draw the interval CCDF and its LRU twin.
X_LABEL = "x: reuse interval / cache size, tokens"
Y_LABEL = "% of tokens reusable but not within x"

_WIDTH = 8.0  # inches
_PLOT_HEIGHT = 5.0  # inches, without the legend area below
_DPI = 110
_PAD = 0.08  # inches around and between the legend and the statistics box
_FONT = 8
# Room for the tick labels and axis labels around the axes, in inches.
_MARGIN_LEFT, _MARGIN_RIGHT, _MARGIN_TOP, _MARGIN_BOTTOM = 0.62, 0.12, 0.4, 0.55


def _short_number(x: float, _pos: object = None) -> str:
    """``16k``, ``1.5M``: a log axis tick in the units users read."""
    for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= scale:
            return f"{x / scale:g}{suffix}"
    return f"{x:g}"
# Where a marker label may go, in points below (-) or above (+) its marker, on the label's own
# side of the line first, then the other; a place crossing a line or a label is passed over.
_LABEL_DY = (-18, 8, -34, 24, -50)
_LABEL_DX = 9


@dataclass
class Series:
    """One curve: ``y`` (a share in [0, 1]) is drawn as a step function of ``x`` (tokens).

    ``start``: the share before ``x[0]`` (for a CCDF, F(0-), the share of tokens reused at
    all), drawn from the left edge of the plot; without it the curve starts at ``x[0]``."""

    label: str
    x: np.ndarray
    y: np.ndarray
    style: dict = field(default_factory=dict)
    start: float | None = None


@dataclass(frozen=True)
class GpuLine:
    """A vertical cache-size line, with a dot where the offloadable share is."""

    tokens: float
    label: str
    offloadable: float | None = None
    color: str = "red"


def _finite(x: float | None) -> bool:
    return x is not None and bool(np.isfinite(x))


def ccdf_figure(series: list[Series], *, gpu_cache_tokens: float | None = None,
                offloadable: float | None = None, stats: dict | None = None,
                title: str | None = None, tier_bounds: list[tuple[str, float]] | None = None,
                lru_offloadable: float | None = None, x_label: str = X_LABEL,
                y_label: str = Y_LABEL, gpu_label: str | None = None,
                more_gpu_lines: Sequence[GpuLine] = (), min_x: float = 1.0) -> Figure:
    """The CCDF on a log10 x axis with the GPU cache line and the offloadable share marked.

    ``lru_offloadable``: the exact LRU share at the GPU size, marked beside the interval
    one when the LRU curve is drawn as a second series. ``more_gpu_lines``: further cache
    sizes (the report marks every size of interest). ``min_x``: where the log axis starts
    at the earliest; smaller x (0 has no place on it) are drawn there: 1 token, or a
    millisecond for times. The legend and the statistics go below the axes, so that
    neither ever hides a curve or a line.
    """
    fig = Figure(figsize=(_WIDTH, _PLOT_HEIGHT), dpi=_DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    gpu_lines = list(more_gpu_lines)
    if gpu_cache_tokens is not None:
        gpu_lines.append(GpuLine(gpu_cache_tokens,
                                 gpu_label or f"GPU KV cache: {gpu_cache_tokens:,.0f} tokens",
                                 offloadable))
    drawn = [s for s in series if s.x.size]
    xmin = min((max(float(s.x[0]), min_x) for s in drawn), default=np.inf)
    xmax = max([10.0, *(float(s.x[-1]) for s in drawn), *(g.tokens * 2 for g in gpu_lines)])
    left = min_x if not np.isfinite(xmin) else max(min_x,
                                                   10 ** np.floor(np.log10(xmin) - 0.5))

    handles = []
    for i, s in enumerate(series):
        if s.x.size == 0:
            continue
        x = np.maximum(np.asarray(s.x, dtype=np.float64), min_x)
        y = np.asarray(s.y, dtype=np.float64) * 100.0
        if _finite(s.start) and x[0] > left:
            # Below the shortest interval every reused token is still "not within x".
            x, y = np.concatenate([[left], x]), np.concatenate([[s.start * 100.0], y])
        style = {"color": f"C{i}", "lw": 1.6, **s.style}
        (line,) = ax.step(x, y, where="post", label=s.label, **style)
        handles.append(line)
        xd, yd = downsample(x, y, 40)
        ax.plot(xd, yd, "o", ms=3, alpha=0.35, color=style["color"])
    gpu_handles = []
    for g in sorted(gpu_lines, key=lambda g: g.tokens):
        gpu_handles.append(ax.axvline(g.tokens, color=g.color, ls="--", lw=1.4 if g.color ==
                                      "red" else 1.2, label=g.label))
        if _finite(g.offloadable):
            ax.plot([g.tokens], [g.offloadable * 100.0], "o", color=g.color,
                    ms=7 if g.color == "red" else 6, zorder=5)
    handles += gpu_handles
    for label, bound in tier_bounds or []:
        handles.append(ax.axvline(bound, color="purple", ls="-.", lw=1.0, label=label))
    marks = []
    if gpu_cache_tokens is not None and _finite(offloadable):
        pct = offloadable * 100.0
        ax.axhline(pct, color="red", ls=":", lw=1.0)
        marks.append((f"offloadable: {pct:.2f} %", gpu_cache_tokens, pct, "red", -1))
    if gpu_cache_tokens is not None and _finite(lru_offloadable):
        pct = lru_offloadable * 100.0
        ax.plot([gpu_cache_tokens], [pct], "s", color="darkorange", ms=6, zorder=5)
        marks.append((f"LRU: {pct:.2f} %", gpu_cache_tokens, pct, "darkorange", 1))

    ax.set_xscale("log")
    # Plain labels (16k, 1M): no mathtext to lay out, and the units users read.
    ax.xaxis.set_major_formatter(FuncFormatter(_short_number))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlim(left, xmax * 1.5)
    ax.set_ylim(bottom=0)
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    ax.grid(True, which="both", alpha=0.25)
    if title:
        # A file name is not mathtext: "a$b$c.jsonl" must read as written.
        ax.set_title(title, fontsize=11, parse_math=False)

    legends = []
    if handles:
        legends.append(fig.legend(handles, [h.get_label() for h in handles], fontsize=_FONT,
                                  loc="upper left"))
    if stats:
        blank = [Line2D([], [], linestyle="none") for _ in stats]
        legends.append(fig.legend(blank, [f"{k}: {v}" for k, v in stats.items()],
                                  loc="upper right", handlelength=0, handletextpad=0,
                                  prop={"family": "monospace", "size": _FONT}))
    for lg in legends:
        for t in lg.get_texts():
            t.set_parse_math(False)
    _layout(fig, ax, legends)
    _place_marks(fig, ax, marks)
    return fig


def _layout(fig: Figure, ax, legends: list) -> None:
    """The axes on top, the legend (left) and the statistics (right) in a band below it:
    side by side when they fit the width, else one above the other."""
    renderer = fig.canvas.get_renderer()
    sizes = [(lg.get_window_extent(renderer).width / _DPI,
              lg.get_window_extent(renderer).height / _DPI) for lg in legends]
    side = sum(w for w, _ in sizes) + _PAD * (len(sizes) + 1) <= _WIDTH
    if not sizes:
        band = 0.0
    elif side:
        band = max(h for _, h in sizes) + _PAD
    else:
        band = sum(h for _, h in sizes) + _PAD * len(sizes)
    height = _PLOT_HEIGHT + band
    fig.set_size_inches(_WIDTH, height)
    top = band
    for i, lg in enumerate(legends):
        w, h = sizes[i]
        if side and i == len(legends) - 1 and i > 0:
            x, y = _WIDTH - _PAD - w, band
        else:
            x, y = _PAD, top
            top -= h + _PAD
        lg.set_loc("upper left")
        lg.set_bbox_to_anchor((x / _WIDTH, y / height), transform=fig.transFigure)
        lg.set_in_layout(False)
    # Fixed margins, not tight_layout: the figure's width and fonts are fixed, so these fit
    # every plot, and laying out the text of each (the slowest part of a report) is spared.
    fig.subplots_adjust(left=_MARGIN_LEFT / _WIDTH, right=1 - _MARGIN_RIGHT / _WIDTH,
                        top=1 - _MARGIN_TOP / height,
                        bottom=(band + _PAD + _MARGIN_BOTTOM) / height)


def _place_marks(fig: Figure, ax, marks: list[tuple[str, float, float, str, int]]) -> None:
    """Label each marker where the text crosses no vertical line, no other label and stays
    inside the axes, off the curves where there is such a place; with no place at all the
    figure goes into the legend instead."""

    renderer = fig.canvas.get_renderer()
    box = ax.get_window_extent(renderer)
    xs, curves = [], []
    for ln in ax.get_lines():
        x = np.asarray(ln.get_xdata(), dtype=np.float64)
        if x.size == 2 and x[0] == x[1]:
            xs.append(ax.transData.transform((x[0], 1.0))[0])
        elif ln.get_drawstyle() == "steps-post" and x.size:
            steps = np.column_stack(pts_to_poststep(x, np.asarray(ln.get_ydata(), float)))
            curves.append(Path(ax.transData.transform(steps)))
    placed = []
    for text, x, y, color, side in marks:
        places = [(d * side * _LABEL_DX, dy) for dy in _LABEL_DY for d in (1, -1)]
        for avoid_curves in (True, False):
            ann = _first_fit(ax, renderer, box, xs, curves if avoid_curves else [], placed,
                             text, x, y, color, places)
            if ann is not None:
                break
        if ann is None:
            _into_legend(fig, text)


def _first_fit(ax, renderer, box, xs, curves, placed, text, x, y, color, places):
    for dx, dy in places:
        ann = ax.annotate(text, (x, y), textcoords="offset points", xytext=(dx, dy),
                          ha="left" if dx > 0 else "right", va="center", color=color,
                          fontweight="bold", parse_math=False)
        b = ann.get_window_extent(renderer)
        if (box.x0 + 2 <= b.x0 and b.x1 <= box.x1 - 2 and box.y0 + 2 <= b.y0
                and b.y1 <= box.y1 - 2
                and not any(b.x0 - 2 <= lx <= b.x1 + 2 for lx in xs)
                and not any(b.overlaps(p) for p in placed)
                and not any(c.intersects_bbox(b, filled=False) for c in curves)):
            placed.append(b)
            return ann
        ann.remove()
    return None


def _into_legend(fig: Figure, text: str) -> None:
    # No room beside the line: the share is still shown, next to the GPU line's entry.
    for lg in fig.legends:
        texts = [t for t in lg.get_texts() if t.get_text().startswith("GPU KV cache")]
        if texts:
            texts[-1].set_text(f"{texts[-1].get_text()}; {text}")
            return


@dataclass(frozen=True)
class ReplicaLine:
    """Hit fraction (a share in [0, 1], None where undefined) against the number of
    replicas: one routing policy at one GPU size, or the pooled cache of ``N * C``."""

    label: str
    replicas: Sequence[int]
    hit: Sequence[float | None]
    color: str
    dashed: bool = False


def replicas_figure(lines: Sequence[ReplicaLine], *, title: str | None = None) -> Figure:
    """Hit fraction against the number of replicas (log2 x axis, one tick per count
    drawn), a solid line per routing policy and GPU size, a dashed one for the pooled
    cache of the same total size; the legend below the axes, as in :func:`ccdf_figure`."""
    fig = Figure(figsize=(_WIDTH, _PLOT_HEIGHT), dpi=_DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    handles = []
    counts: set[int] = set()
    for line in lines:
        pts = [(n, h * 100.0) for n, h in zip(line.replicas, line.hit, strict=True)
               if _finite(h)]
        if not pts:
            continue
        counts.update(n for n, _ in pts)
        x, y = zip(*pts, strict=True)
        (h,) = ax.plot(x, y, ls="--" if line.dashed else "-", marker="o", ms=4,
                       lw=1.2 if line.dashed else 1.6, color=line.color, label=line.label)
        handles.append(h)
    ax.set_xscale("log", base=2)
    ticks = sorted(counts) or [1]
    ax.set_xticks(ticks)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos=None: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlim(ticks[0] / 1.3, ticks[-1] * 1.3)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("replicas behind the router")
    ax.set_ylabel("% of tokens hit in the GPU caches")
    ax.grid(True, which="both", alpha=0.25)
    if title:
        ax.set_title(title, fontsize=11, parse_math=False)
    legends = []
    if handles:
        legend = fig.legend(handles, [h.get_label() for h in handles], fontsize=_FONT,
                            loc="upper left")
        for t in legend.get_texts():
            t.set_parse_math(False)
        legends.append(legend)
    _layout(fig, ax, legends)
    return fig


def figure_bytes(fig: Figure, fmt: str = "png") -> bytes:
    """PNG or SVG bytes; the SVG carries no date and fixed ids: the same plot, the same
    bytes (reports and saved plots diff cleanly)."""
    buf = io.BytesIO()
    if fmt == "svg":
        FigureCanvasSVG(fig)
        # rc_context puts every setting back when the block ends.
        with matplotlib.rc_context({"svg.hashsalt": "pytest-kvreuse", "svg.fonttype": "path"}):
            fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    else:
        FigureCanvasAgg(fig)
        fig.savefig(buf, format=fmt, metadata={"Software": None})
    return buf.getvalue()


def save_figure(fig: Figure, path: str | os.PathLike[str]) -> None:
    """Write PNG or SVG, chosen by the file's extension, atomically."""
    ext = os.fspath(path).rsplit(".", 1)[-1].lower()
    if ext not in ("png", "svg"):
        raise KvReuseError(f"plot must end in .png or .svg, got {os.fspath(path)!r}")
    atomic_write_bytes(path, figure_bytes(fig, ext))


def svg_data_uri(fig: Figure) -> str:
    """The figure as an SVG ``data:`` URI (the report inlines every plot); the same
    results give byte-identical plots (see :func:`figure_bytes`)."""
    return "data:image/svg+xml;base64," + base64.b64encode(figure_bytes(fig, "svg")).decode(
        "ascii")


def bar_figure(labels: Sequence[str], shares: Sequence[float], *, x_label: str,
               color: str = "C0") -> Figure:
    """Horizontal bars, the first on top: ``shares`` (in [0, 1]) drawn as percents, each
    bar labelled with its percent. For the report's top shared prefixes and break causes."""
    height = 0.9 + 0.32 * max(len(labels), 1)
    fig = Figure(figsize=(_WIDTH, height), dpi=_DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    y = np.arange(len(labels))[::-1]
    values = np.asarray(shares, dtype=np.float64) * 100.0
    ax.barh(y, values, color=color, height=0.7)
    ax.set_yticks(y, [str(t) for t in labels], fontsize=_FONT)
    for t in ax.get_yticklabels():
        t.set_parse_math(False)
    top = float(values.max()) if values.size else 1.0
    for yi, v in zip(y, values, strict=True):
        ax.text(v + top * 0.01, yi, f"{v:.1f} %", va="center", fontsize=_FONT)
    ax.set_xlim(0, top * 1.15 or 1.0)
    ax.set_xlabel(x_label, fontsize=_FONT)
    ax.tick_params(axis="x", labelsize=_FONT)
    ax.grid(True, axis="x", alpha=0.25)
    fig.subplots_adjust(left=0.3, right=1 - _MARGIN_RIGHT / _WIDTH,
                        top=1 - 0.15 / height, bottom=0.55 / height)
    return fig
