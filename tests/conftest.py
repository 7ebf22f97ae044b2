from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "traces"

# The hash-id scanner (loaders/scan_kernel.py) runs without bounds checks: under test it is
# compiled with them, so a write past its outputs fails a test instead of corrupting the
# heap. Its own cache directory keeps that build out of the one users load.
os.environ.setdefault("NUMBA_BOUNDSCHECK", "1")
os.environ.setdefault("NUMBA_CACHE_DIR", os.path.join(
    os.environ.get("TMPDIR", "/tmp"), f"kvreuse-test-numba-{os.getuid()}"))


@pytest.fixture(scope="session")
def shared_traces() -> Path:
    if not SHARED.is_dir():
        pytest.skip("../shared/traces not present")
    return SHARED


@pytest.fixture(scope="session")
def head120(shared_traces: Path, tmp_path_factory: pytest.TempPathFactory):
    """The shared text trace's analysis at B = 64, tokenized once per test process (the
    cache directory is the one the reference-figure tests fill)."""
    from pytest_kvreuse import analyze

    return analyze(shared_traces / "synthetic_head120.aiperf.json", block_size=64,
                   cache_dir=tmp_path_factory.getbasetemp() / "head120-cache")


@pytest.fixture(scope="session")
def deepseek():
    """The built-in DeepSeek-V3 tokenizer, loaded once per session (it takes a second)."""
    from pytest_kvreuse.text.tokenizer import load_tokenizer

    return load_tokenizer("deepseek-v3")


@pytest.fixture(autouse=True, scope="session")
def _private_kvreuse_cache(tmp_path_factory):
    """Tests never read or fill the user's cache of tokenized traces."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KVREUSE_CACHE_DIR", str(tmp_path_factory.mktemp("kvreuse-cache")))
        # A cluster named for the user's own runs (docs/dask.md) is not the tests' to use.
        mp.delenv("KVREUSE_DASK", raising=False)
        yield


# Fuzz tests stay quick in CI; `HYPOTHESIS_PROFILE=long` (or `--hypothesis-profile=long`)
# runs them at length locally.
from hypothesis import HealthCheck, settings  # noqa: E402

_FUZZ = dict(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                   HealthCheck.too_slow])
settings.register_profile("default", max_examples=60, **_FUZZ)
settings.register_profile("long", max_examples=3000, **_FUZZ)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture
def without_libcachesim(monkeypatch: pytest.MonkeyPatch) -> None:
    """libcachesim (the [policies] extra) fails to import, whether installed or not."""
    import builtins

    real = builtins.__import__

    def refuse(name: str, *args: object, **kwargs: object) -> object:
        if name == "libcachesim":
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", refuse)
