from __future__ import annotations

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "traces"


@pytest.fixture(scope="session")
def shared_traces() -> Path:
    if not SHARED.is_dir():
        pytest.skip("../shared/traces not present")
    return SHARED


@pytest.fixture(scope="session")
def deepseek():
    """The built-in DeepSeek-V3 tokenizer, loaded once per session (it takes a second)."""
    from pytest_kvreuse.tokenizer import load_tokenizer

    return load_tokenizer("deepseek-v3")
