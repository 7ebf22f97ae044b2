"""The on-disk cache of tokenized streams: hits, invalidation, damage, and the reference
figures of the shared aiperf trace."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import pytest_kvreuse.text.blocks as textblocks
from pytest_kvreuse import analyze, load_block_stream
from pytest_kvreuse.cli import main
from pytest_kvreuse.text.cache import default_cache_dir

DOC = {"data": [{"session_id": "a", "payloads": [
    {"messages": [{"role": "user", "content": "the quick brown fox jumps over the lazy dog"}]},
    {"messages": [{"role": "user", "content": "the quick brown fox jumps over the lazy cat"}]},
]}]}


@pytest.fixture
def trace(tmp_path):
    p = tmp_path / "inputs.json"
    p.write_text(json.dumps(DOC))
    return p


@pytest.fixture
def count_builds(monkeypatch):
    calls = []
    real = textblocks.text_block_stream

    def counting(*args, **kw):
        calls.append(kw.get("prompt"))
        return real(*args, **kw)

    monkeypatch.setattr(textblocks, "text_block_stream", counting)
    return calls


def same(a, b) -> bool:
    return (np.array_equal(a.keys, b.keys) and np.array_equal(a.request, b.request)
            and np.array_equal(a.prompt_tokens, b.prompt_tokens)
            and np.array_equal(a.sessions, b.sessions)
            and np.array_equal(a.timestamps, b.timestamps, equal_nan=True)
            and a.meta == b.meta and a.block_size == b.block_size)


def test_hit(trace, tmp_path, count_builds):
    cold = load_block_stream(trace, block_size=4, cache_dir=tmp_path / "c")
    warm = load_block_stream(trace, block_size=4, cache_dir=tmp_path / "c")
    assert count_builds == ["raw"]
    assert same(cold, warm)
    assert len(list((tmp_path / "c").glob("*.npz"))) == 1


def test_known_hash_spares_a_second_read(trace, tmp_path, count_builds, monkeypatch):
    import pytest_kvreuse.loaders.fingerprint as fingerprint

    digest = fingerprint.content_sha256(trace)
    first = analyze(trace, block_size=2, cache_dir=tmp_path / "c")

    def no_read(path):
        raise AssertionError("hashed the file again")

    monkeypatch.setattr(fingerprint, "content_sha256", no_read)
    again = analyze(trace, block_size=2, cache_dir=tmp_path / "c", known_sha256=digest)
    assert len(count_builds) == 1  # served from the cache under the caller's hash
    assert again.to_dict() == first.to_dict()


def test_key_covers_prompt_mode_block_size_and_content(trace, tmp_path, count_builds):
    c = tmp_path / "c"
    load_block_stream(trace, block_size=4, cache_dir=c)
    load_block_stream(trace, block_size=4, cache_dir=c, prompt="per-message")
    load_block_stream(trace, block_size=8, cache_dir=c)
    assert len(count_builds) == 3
    doc = json.loads(trace.read_text())
    doc["data"][0]["payloads"][1]["messages"][0]["content"] += " again"
    stat = trace.stat()
    trace.write_text(json.dumps(doc))
    os.utime(trace, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same mtime: content decides
    changed = load_block_stream(trace, block_size=4, cache_dir=c)
    assert len(count_builds) == 4
    assert changed.prompt_tokens[1] > changed.prompt_tokens[0]


def test_no_cache_neither_reads_nor_writes(trace, tmp_path, count_builds):
    c = tmp_path / "c"
    load_block_stream(trace, block_size=4, cache_dir=c, use_cache=False)
    load_block_stream(trace, block_size=4, cache_dir=c, use_cache=False)
    assert len(count_builds) == 2 and not c.exists()


@pytest.mark.parametrize("damage", [b"", b"not a zip file", None])
def test_damaged_entry_is_rebuilt(trace, tmp_path, count_builds, damage):
    c = tmp_path / "c"
    cold = load_block_stream(trace, block_size=4, cache_dir=c)
    (entry,) = c.glob("*.npz")
    if damage is None:  # a valid archive whose arrays disagree
        with np.load(entry) as z:
            arrays = dict(z)
        arrays["keys"] = arrays["keys"][:-1]
        np.savez(entry, **arrays)
    else:
        entry.write_bytes(damage)
    rebuilt = load_block_stream(trace, block_size=4, cache_dir=c)
    assert len(count_builds) == 2 and same(cold, rebuilt)
    load_block_stream(trace, block_size=4, cache_dir=c)
    assert len(count_builds) == 2  # rewritten


def test_unwritable_cache_only_warns(trace, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.warns(UserWarning, match="cache not written"):
        s = load_block_stream(trace, block_size=4, cache_dir=blocker / "sub")
    assert s.num_requests == 2


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("KVREUSE_CACHE_DIR", str(tmp_path / "k"))
    assert default_cache_dir() == tmp_path / "k"
    monkeypatch.delenv("KVREUSE_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    if os.name == "posix" and not os.uname().sysname == "Darwin":
        assert default_cache_dir() == tmp_path / "x" / "pytest-kvreuse"


def test_cli_flags(trace, tmp_path, capsys, count_builds):
    c = tmp_path / "c"
    args = ["analyze", str(trace), "--block-size", "4", "--cache-dir", str(c), "-q"]
    assert main([*args, "--prompt", "per-message", "--model-name", "deepseek-v3"]) == 0
    assert main([*args, "--prompt", "per-message", "--tokenizer", "deepseek-v3"]) == 0
    assert count_builds == ["per-message"]
    assert main([*args, "--no-cache", "--json", str(tmp_path / "o.json")]) == 0
    assert count_builds == ["per-message", "raw"]
    [out] = json.loads((tmp_path / "o.json").read_text())["traces"]
    assert out["params"]["prompt"] == "raw" and out["params"]["tokenizer"] == "deepseek-v3"


# --- reference figures (analysis.md section 4) ------------------------------------------

@pytest.mark.parametrize("prompt", ["raw", "per-message"])
def test_head120_reference_figures(shared_traces, tmp_path_factory, prompt):
    a = analyze(shared_traces / "synthetic_head120.aiperf.json", block_size=64, prompt=prompt,
                cache_dir=tmp_path_factory.getbasetemp() / "head120-cache")
    assert a.total_tokens == 1_614_784
    assert a.num_blocks == 25_231
    assert a.unique_blocks == 23_940
    assert a.reuse_count == 1_291
    assert (a.interval_min, a.interval_median, a.interval_max) == (17_280, 96_960, 1_246_464)
    assert round(a.offloadable_fraction(16_384) * 100, 4) == 5.1167
    assert round(a.offloadable_fraction(345_792) * 100, 4) == 2.1046
    assert a.params["tokenizer"] == "deepseek-v3" and a.params["prompt"] == prompt
    assert a.stream.sessions.tolist() == list(range(120))


def test_progress_only_when_asked_or_on_a_terminal(trace, tmp_path, capsys, monkeypatch):
    from pytest_kvreuse.text.blocks import progress_enabled

    monkeypatch.delenv("CI", raising=False)
    assert progress_enabled(True) and not progress_enabled(False)
    assert not progress_enabled(None)  # pytest captures stderr: not a terminal
    monkeypatch.setattr("sys.stderr.isatty", lambda: True, raising=False)
    monkeypatch.setenv("CI", "true")
    assert not progress_enabled(None)
    load_block_stream(trace, block_size=4, use_cache=False, progress=False)
    assert capsys.readouterr().err == ""
    load_block_stream(trace, block_size=4, use_cache=False, progress=True)
    assert "tokenizing" in capsys.readouterr().err
