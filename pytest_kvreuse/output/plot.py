"""The CCDF plot, drawn as the original tool did but readable: lines, not 3,500 px of dots."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field

import matplotlib

matplotlib.use("Agg")  # headless everywhere: CI, servers, xdist workers

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from ..core.curves import downsample  # noqa: E402
from ..errors import KvReuseError  # noqa: E402

X_LABEL = "interval, tokens from other requests"
Y_LABEL = "% of tokens not reused within the interval"


@dataclass
class Series:
    """One curve: ``y`` (a share in [0, 1]) is drawn as a step function of ``x`` (tokens)."""

    label: str
    x: np.ndarray
    y: np.ndarray
    style: dict = field(default_factory=dict)


def ccdf_figure(series: list[Series], *, gpu_cache_tokens: float | None = None,
                offloadable: float | None = None, stats: dict | None = None,
                title: str | None = None, tier_bounds: list[tuple[str, float]] | None = None,
                lru_offloadable: float | None = None, x_label: str = X_LABEL,
                y_label: str = Y_LABEL) -> Figure:
    """The CCDF on a log10 x axis with the GPU cache line and the offloadable share marked.

    ``lru_offloadable``: the exact LRU share at the GPU size, marked beside the interval
    one when the LRU curve is drawn as a second series.
    """
    fig, ax = plt.subplots(figsize=(8.0, 5.0), dpi=110)
    xmax = 10.0
    xmin = np.inf
    for i, s in enumerate(series):
        if s.x.size == 0:
            continue
        x = np.maximum(np.asarray(s.x, dtype=np.float64), 1.0)
        y = np.asarray(s.y, dtype=np.float64) * 100.0
        style = {"color": f"C{i}", "lw": 1.6, **s.style}
        ax.step(x, y, where="post", label=s.label, **style)
        xd, yd = downsample(x, y, 40)
        ax.plot(xd, yd, "o", ms=3, alpha=0.35, color=style["color"])
        xmax = max(xmax, float(x[-1]))
        xmin = min(xmin, float(x[0]))
    if gpu_cache_tokens is not None:
        ax.axvline(gpu_cache_tokens, color="red", ls="--", lw=1.4,
                   label=f"GPU KV cache: {gpu_cache_tokens:,.0f} tokens")
        xmax = max(xmax, gpu_cache_tokens * 2)
        if offloadable is not None and np.isfinite(offloadable):
            pct = offloadable * 100.0
            ax.axhline(pct, color="red", ls=":", lw=1.0)
            ax.plot([gpu_cache_tokens], [pct], "o", color="red", ms=7, zorder=5)
            ax.annotate(f"offloadable: {pct:.2f} %", (gpu_cache_tokens, pct),
                        textcoords="offset points", xytext=(-10, -18), ha="right",
                        color="red", fontweight="bold")
        if lru_offloadable is not None and np.isfinite(lru_offloadable):
            pct = lru_offloadable * 100.0
            ax.plot([gpu_cache_tokens], [pct], "s", color="darkorange", ms=6, zorder=5)
            ax.annotate(f"LRU: {pct:.2f} %", (gpu_cache_tokens, pct),
                        textcoords="offset points", xytext=(10, -18), ha="left",
                        color="darkorange", fontweight="bold")
    for label, bound in tier_bounds or []:
        ax.axvline(bound, color="purple", ls="-.", lw=1.0, label=label)
    ax.set_xscale("log")
    left = 1.0 if not np.isfinite(xmin) else max(1.0, 10 ** np.floor(np.log10(xmin) - 0.5))
    ax.set_xlim(left, xmax * 1.5)
    ax.set_ylim(bottom=0)
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    ax.grid(True, which="both", alpha=0.25)
    if title:
        ax.set_title(title, fontsize=11)
    if stats:
        text = "\n".join(f"{k}: {v}" for k, v in stats.items())
        ax.text(0.015, 0.03, text, transform=ax.transAxes, fontsize=8, family="monospace",
                va="bottom", bbox={"boxstyle": "round", "fc": "white", "ec": "0.7",
                                   "alpha": 0.9})
    if any(s.x.size for s in series) or gpu_cache_tokens is not None:
        # "best" keeps the legend off the GPU markers, but scans every vertex: too slow
        # past a few ten thousand points.
        points = sum(s.x.size for s in series)
        ax.legend(loc="best" if points <= 20_000 else "upper right", fontsize=8)
    fig.tight_layout()
    return fig


def figure_bytes(fig: Figure, fmt: str = "png") -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt)
    plt.close(fig)
    return buf.getvalue()


def save_figure(fig: Figure, path: str | os.PathLike[str]) -> None:
    """Write PNG or SVG, chosen by the file's extension, atomically."""
    from ..atomic import atomic_write_bytes

    ext = os.fspath(path).rsplit(".", 1)[-1].lower()
    if ext not in ("png", "svg"):
        plt.close(fig)
        raise KvReuseError(f"plot must end in .png or .svg, got {os.fspath(path)!r}")
    atomic_write_bytes(path, figure_bytes(fig, ext))


def svg_data_uri(fig: Figure) -> str:
    """The figure as an SVG ``data:`` URI (the report inlines every plot)."""
    import base64

    buf = io.BytesIO()
    # Fixed salt and no date: the same results give byte-identical plots.
    with matplotlib.rc_context({"svg.hashsalt": "pytest-kvreuse", "svg.fonttype": "path"}):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    plt.close(fig)
    return "data:image/svg+xml;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
