"""pytest-kvreuse: how much of a trace's KV cache is reused, and how far apart."""

from __future__ import annotations

from .analysis import ReuseAnalysis, analyze
from .blocks import BlockStream
from .errors import KvReuseError
from .trace import load_block_stream

__version__ = "0.1.0"

__all__ = [
    "BlockStream",
    "KvReuseError",
    "ReuseAnalysis",
    "__version__",
    "analyze",
    "load_block_stream",
]
