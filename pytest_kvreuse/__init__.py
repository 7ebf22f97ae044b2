"""pytest-kvreuse: how much of a trace's KV cache is reused, and how far apart.

The public API is imported on first use: pytest loads ``pytest_kvreuse.plugin`` in every
run of everyone who installs the package, and that import must not pull in numpy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# name -> module that defines it
_EXPORTS = {
    "AnalysisParams": "pytest_kvreuse.params",
    "BlockStream": "pytest_kvreuse.core.blocks",
    "KvReuseError": "pytest_kvreuse.errors",
    "METRICS": "pytest_kvreuse.metrics",
    "ReuseAnalysis": "pytest_kvreuse.core.analysis",
    "TraceResult": "pytest_kvreuse.result",
    "analyze": "pytest_kvreuse.api",
    "kv_bytes_per_token": "pytest_kvreuse.models",
    "load_block_stream": "pytest_kvreuse.loaders.stream",
}

__all__ = ["AnalysisParams", "BlockStream", "KvReuseError", "METRICS", "ReuseAnalysis",
           "TraceResult", "__version__", "analyze", "kv_bytes_per_token", "load_block_stream"]

if TYPE_CHECKING:
    from .api import analyze
    from .core.analysis import ReuseAnalysis
    from .core.blocks import BlockStream
    from .errors import KvReuseError
    from .loaders.stream import load_block_stream
    from .metrics import METRICS
    from .models import kv_bytes_per_token
    from .params import AnalysisParams
    from .result import TraceResult


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pytest_kvreuse' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
