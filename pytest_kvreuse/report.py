"""The self-contained HTML report and the JSON results file (interface; see issue 7).

``results`` is a list of dicts, one per analysed trace, each ``results.trace_result(...)``
plus ``"checks"`` (list of ``{"nodeid", "metric", "at", "min", "max", "value", "passed",
"message"}``) and ``"error"`` (the loader's one-line error, or None). ``run`` describes the
run: ``{"started", "duration_s", "args", "git_commit", "plugin_version", "python"}``.
"""

from __future__ import annotations

import os


def write_report(path: str | os.PathLike[str], results: list[dict], run: dict, *,
                 template_dir: str | os.PathLike[str] | None = None) -> None:
    raise NotImplementedError("HTML report: issue 7")


def write_json(path: str | os.PathLike[str], results: list[dict], run: dict) -> None:
    raise NotImplementedError("JSON results: issue 7")
