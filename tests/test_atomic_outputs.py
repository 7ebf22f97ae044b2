"""Every output is written atomically: a failure mid-write leaves the previous file intact
and no temporary file behind. A damaged cache entry is detected and rebuilt, never trusted."""

from __future__ import annotations

import errno
import io
import json
import sys
import zipfile

import numpy as np
import pytest

import pytest_kvreuse.atomic as atomic
from pytest_kvreuse import KvReuseError, analyze
from pytest_kvreuse.baselines.storage import BaselineStorage
from pytest_kvreuse.cli import main
from pytest_kvreuse.loaders.stream import load_block_stream
from pytest_kvreuse.output import report
from pytest_kvreuse.text.cache import read_cached

TRACE = (b'{"input_length": 1024, "hash_ids": [1, 2]}\n'
         b'{"input_length": 1536, "hash_ids": [1, 2, 3]}\n')
CHAT = "".join(json.dumps({"session_id": i % 2, "messages": [
    {"role": "user", "content": "a shared system prompt for every turn. " * 3 + str(i)}]})
    + "\n" for i in range(6))
PREVIOUS = b"previous content\n"


def fail_replace(src, dst):
    raise OSError(errno.EIO, "Input/output error")


def fail_fsync(fd):
    raise OSError(errno.ENOSPC, "No space left on device")


def interrupt_replace(src, dst):
    raise KeyboardInterrupt


def leftovers(directory):
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


@pytest.fixture(params=["replace", "fsync"])
def broken_write(request, monkeypatch):
    """The rename fails, or the write itself (the data never reaches the disk)."""
    if request.param == "replace":
        monkeypatch.setattr(atomic.os, "replace", fail_replace)
    else:
        monkeypatch.setattr(atomic.os, "fsync", fail_fsync)
    return request.param


def result_for(tmp_path):
    from pytest_kvreuse.result import TraceResult

    trace = tmp_path / "t.jsonl"
    trace.write_bytes(TRACE)
    return TraceResult.from_analysis(analyze(trace), name="t", sizes=[512])


@pytest.mark.parametrize("writer", ["json", "report"])
def test_report_and_json_keep_the_previous_file(tmp_path, broken_write, writer):
    results = [result_for(tmp_path)]
    out = tmp_path / "out" / f"r.{'json' if writer == 'json' else 'html'}"
    out.parent.mkdir()
    out.write_bytes(PREVIOUS)
    write = report.write_json if writer == "json" else report.write_report
    with pytest.raises(KvReuseError) as info:
        write(out, results, report.run_info([]))
    assert str(out) in info.value.one_line() and "cannot write" in info.value.one_line()
    assert out.read_bytes() == PREVIOUS and leftovers(out.parent) == []


@pytest.mark.parametrize("flag, name", [("--json", "o.json"), ("--html", "o.html"),
                                        ("--output", "o.png"), ("--output", "o.svg")])
def test_cli_outputs_keep_the_previous_file(tmp_path, capsys, broken_write, flag, name):
    trace = tmp_path / "t.jsonl"
    trace.write_bytes(TRACE)
    out = tmp_path / "out" / name
    out.parent.mkdir()
    out.write_bytes(PREVIOUS)
    assert main(["analyze", str(trace), "-q", flag, str(out)]) == 2
    err = capsys.readouterr().err
    assert "cannot write" in err and str(out) in err and len(err.strip().splitlines()) == 1
    assert out.read_bytes() == PREVIOUS and leftovers(out.parent) == []


@pytest.mark.parametrize("how", ["replace", "fsync"])
def test_saved_run_is_all_or_nothing(tmp_path, monkeypatch, how):
    storage = BaselineStorage(tmp_path / ".kvreuse")
    first = storage.save({"traces": [], "run": {}}, "main")
    before = first.path.read_bytes()
    if how == "replace":
        # A save's last step links its temporary file to the numbered name (os.link, or
        # os.replace where there are no hard links): failing it must leave nothing.
        monkeypatch.setattr(atomic.os, "replace", fail_replace)
        monkeypatch.setattr(atomic.os, "link", fail_replace)
    else:
        monkeypatch.setattr(atomic.os, "fsync", fail_fsync)
    with pytest.raises(KvReuseError):
        storage.save({"traces": [], "run": {}}, "main")
    assert sorted(p.name for p in storage.directory.iterdir()) == [first.path.name]
    assert first.path.read_bytes() == before


def test_cache_write_failure_is_a_warning(tmp_path, broken_write):
    trace = tmp_path / "t.jsonl"
    trace.write_text(CHAT)
    cache = tmp_path / "cache"
    with pytest.warns(UserWarning, match="cache not written"):
        a = analyze(trace, block_size=16, cache_dir=cache, progress=False)
    assert a.num_requests == 6
    assert list(cache.iterdir()) == []


def test_interrupt_leaves_nothing_behind(tmp_path, monkeypatch):
    out = tmp_path / "r.json"
    out.write_bytes(PREVIOUS)
    monkeypatch.setattr(atomic.os, "replace", interrupt_replace)
    with pytest.raises(KeyboardInterrupt):
        atomic.atomic_write_bytes(out, b"new")
    assert out.read_bytes() == PREVIOUS and leftovers(tmp_path) == []


def test_error_inside_atomic_open_keeps_the_previous_file(tmp_path):
    out = tmp_path / "big.json"
    out.write_bytes(PREVIOUS)
    with pytest.raises(RuntimeError), atomic.atomic_open(out) as fh:
        fh.write(b"half of it")
        raise RuntimeError("generator failed")
    assert out.read_bytes() == PREVIOUS and leftovers(tmp_path) == []


# -- damaged cache entries ----------------------------------------------------------------

def _rewrite_npz(path, change):
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    change(arrays)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    path.write_bytes(buf.getvalue())


def _swap_keys(arrays):
    arrays["keys"] = arrays["keys"][::-1].copy()


def _drop_sessions(arrays):
    del arrays["sessions"]


def _float_keys(arrays):
    arrays["keys"] = arrays["keys"].astype(np.float64)


def _flip_byte(path):
    # A flipped byte inside the stored (uncompressed) keys: the zip CRC or the digest sees it.
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("keys.npy")
    raw[info.header_offset + 30 + len(info.filename) + info.extra.__len__() + 200] ^= 0xFF
    path.write_bytes(bytes(raw))


DAMAGE = {
    "truncated": lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
    "garbage": lambda p: p.write_bytes(b"\x00garbage" * 100),
    "empty": lambda p: p.write_bytes(b""),
    "keys reversed": lambda p: _rewrite_npz(p, _swap_keys),
    "array missing": lambda p: _rewrite_npz(p, _drop_sessions),
    "keys as floats": lambda p: _rewrite_npz(p, _float_keys),
    "flipped byte": _flip_byte,
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_cache_entry_is_rebuilt(tmp_path, damage):
    trace = tmp_path / "t.jsonl"
    trace.write_text(CHAT)
    cache = tmp_path / "cache"
    cold = load_block_stream(trace, block_size=4, use_cache=False, progress=False)
    load_block_stream(trace, block_size=4, cache_dir=cache, progress=False)
    (entry,) = cache.glob("*.npz")
    assert read_cached(entry) is not None
    DAMAGE[damage](entry)
    assert read_cached(entry) is None  # detected, not trusted
    again = load_block_stream(trace, block_size=4, cache_dir=cache, progress=False)
    assert np.array_equal(again.keys, cold.keys) and np.array_equal(again.request, cold.request)
    fixed = read_cached(entry)  # rewritten whole
    assert fixed is not None and np.array_equal(fixed.keys, cold.keys)
    assert leftovers(cache) == []


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_kill_mid_write_keeps_the_previous_file(tmp_path):
    import signal
    import subprocess

    out = tmp_path / "r.json"
    out.write_bytes(PREVIOUS)
    code = ("import sys, time\n"
            "from pytest_kvreuse.atomic import atomic_open\n"
            "with atomic_open(sys.argv[1]) as fh:\n"
            "    fh.write(b'half of the new file')\n"
            "    fh.flush()\n"
            "    print('writing', flush=True)\n"
            "    time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(out)], stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline().strip() == b"writing"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    # No cleanup is possible after SIGKILL: the temporary file stays, the target is intact.
    assert out.read_bytes() == PREVIOUS
    assert all(p.name.startswith(".r.json.") for p in tmp_path.iterdir() if p != out)
