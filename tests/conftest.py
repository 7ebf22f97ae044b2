from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "traces"


@pytest.fixture
def shared_traces() -> Path:
    if not SHARED.is_dir():
        pytest.skip("../shared/traces not present")
    return SHARED
