"""Same inputs, same bytes: the per-trace JSON results do not depend on the run (serial or
``-n 2``, cache cold, warm or off). What is compared: the ``traces`` block of
``--kvreuse-json`` as written (everything but ``run``, which holds the date, durations,
per-trace timings and the git commit), and the whole of ``kvreuse analyze --json``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pytest_kvreuse.cli import main
from pytest_kvreuse.loaders.stream import load_block_stream
from pytest_kvreuse.synthetic import Workload, generate, write_mooncake

CHAT = "".join(json.dumps({"session_id": f"s{i % 3}", "messages": [
    {"role": "system", "content": "You are a helpful assistant. " * 4},
    {"role": "user", "content": f"question {i // 3}: " + "tell me more about caches. " * (
        1 + i // 3)}]}) + "\n" for i in range(9))
TOKENS = "".join(json.dumps({"token_ids": list(range(i % 4, 40 + 8 * i))}) + "\n"
                 for i in range(6))
MANIFEST = """\
[defaults]
block_size = 16
gpu_cache_tokens = [64, 256]

[[trace]]
path = "mc.jsonl"
block_size = 64
[[trace.check]]
metric = "reused_fraction"
min = 0.0

[[trace]]
path = "chat.jsonl"
[[trace.check]]
metric = "lru_hit_fraction"
at = 64
max = 1.0

[[trace]]
path = "tok.jsonl"
[[trace.check]]
metric = "offloadable_fraction"
at = 256
min = 0.0
"""
TESTS = """
import pytest

@pytest.mark.kvreuse("chat.jsonl", block_size=16, gpu_cache_tokens=128, min_offloadable=0.0)
def test_chat(kvreuse):
    assert kvreuse.num_requests == 9

@pytest.mark.kvreuse("mc.jsonl", block_size=64, gpu_cache_tokens=4096, min_lru_hit=0.0)
def test_mc(kvreuse):
    assert kvreuse.num_blocks > 0
"""


def traces_block(raw: bytes) -> bytes:
    """The bytes of the ``traces`` block as written (keys are sorted: ``run`` comes first)."""
    head, sep, tail = raw.partition(b'\n  "traces": ')
    assert sep and b'"run"' in head and b'"traces"' not in head
    return tail


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch, tmp_path_factory):
    write_mooncake(generate(Workload(sessions=6, seed=3)), pytester.path / "mc.jsonl")
    pytester.makefile(".jsonl", chat=CHAT, tok=TOKENS)
    pytester.makefile(".toml", kvreuse=MANIFEST)
    pytester.makepyfile(test_marked=TESTS)
    monkeypatch.setenv("KVREUSE_CACHE_DIR", str(tmp_path_factory.mktemp("det-cache")))
    return pytester


def run_json(project: pytest.Pytester, name: str, *args: str) -> bytes:
    result = project.runpytest("-p", "no:cacheprovider", f"--kvreuse-json={name}",
                               f"--kvreuse-report={name}.html", *args)
    result.assert_outcomes(passed=5)
    raw = (project.path / name).read_bytes()
    doc = json.loads(raw)
    assert set(doc["run"]["timings"]) == {t["name"] for t in doc["traces"]}
    assert all("timings" not in t for t in doc["traces"])
    assert "reuse intervals " in (project.path / f"{name}.html").read_text()  # timings shown
    return raw


def test_json_results_identical_across_runs(project):
    cold = run_json(project, "cold.json")  # fills the cache
    warm = run_json(project, "warm.json")
    off = run_json(project, "off.json", "--kvreuse-no-cache")
    xdist = run_json(project, "xdist.json", "-n", "2")
    block = traces_block(cold)
    assert traces_block(warm) == block
    assert traces_block(off) == block
    assert traces_block(xdist) == block
    doc = json.loads(cold)
    # Declaration order: the manifest's.
    assert [t["name"] for t in doc["traces"]] == ["mc.jsonl", "chat.jsonl", "tok.jsonl"]


@pytest.mark.parametrize("name, content, extra", [
    ("chat.jsonl", CHAT, ["--block-size", "16", "--prompt", "per-message"]),
    ("tok.jsonl", TOKENS, ["--block-size", "8"]),
    ("mc.jsonl", None, []),
])
def test_cli_json_identical_with_and_without_cache(tmp_path, name, content, extra):
    trace = tmp_path / name
    if content is None:
        write_mooncake(generate(Workload(sessions=5, seed=1)), trace)
    else:
        trace.write_text(content)
    cache = tmp_path / "cache"
    outs = []
    for i, flags in enumerate([[], [], ["--no-cache"]]):  # cold, warm, off
        out = tmp_path / f"o{i}.json"
        assert main(["analyze", str(trace), "-q", "--json", str(out), "--cache-dir",
                     str(cache), "--gpu-kv-cache-size", "128", "--lower-tier-size", "64",
                     *extra, *flags]) == 0
        # Byte-identical but for the run block (dates, timings, arguments), as the plugin's.
        outs.append(traces_block(out.read_bytes()))
    assert outs[0] == outs[1] == outs[2]
    if content is not None:
        assert len(list(cache.glob("*.npz"))) == 1


@pytest.mark.parametrize("fmt, content, block", [
    ("chat", CHAT, 16), ("token-ids", TOKENS, 8)])
def test_cached_stream_equals_cold_load(tmp_path, fmt, content, block):
    trace = tmp_path / "t.jsonl"
    trace.write_text(content)
    cache = tmp_path / "cache"
    fresh = load_block_stream(trace, block_size=block, use_cache=False, progress=False)
    written = load_block_stream(trace, block_size=block, cache_dir=cache, progress=False)
    read = load_block_stream(trace, block_size=block, cache_dir=cache, progress=False)
    assert len(list(cache.glob("*.npz"))) == 1
    for s in (written, read):
        for name in ("keys", "request", "prompt_tokens", "timestamps", "sessions"):
            a, b = getattr(fresh, name), getattr(s, name)
            assert a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True), name
        assert s.block_size == fresh.block_size and s.meta == fresh.meta
