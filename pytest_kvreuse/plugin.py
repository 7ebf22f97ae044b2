"""pytest plugin entry point (registered under ``pytest11`` as ``kvreuse``)."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "kvreuse(path, **params): analyse a trace for the `kvreuse` fixture")
