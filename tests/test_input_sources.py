"""Traces that are not plain files: a directory, a read failing after the open (EIO), a
FIFO, /dev/stdin and process substitution. Never a hang, never a traceback, and never
the sha256 of empty input reported for a stream that had bytes."""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from pytest_kvreuse import KvReuseError, analyze
from pytest_kvreuse.cli import main
from pytest_kvreuse.errors import TraceReadError
from pytest_kvreuse.loaders.fingerprint import content_sha256

MOONCAKE = (b'{"input_length": 1024, "hash_ids": [1, 2]}\n'
            b'{"input_length": 1536, "hash_ids": [1, 2, 3]}\n')
CHAT = (b'{"messages": [{"role": "user", "content": "hello there, how are you"}]}\n' * 3)
AIPERF = b'{"data": [{"payloads": [{"prompt": "hello there, how are you"}]}]}'
EMPTY_SHA = hashlib.sha256(b"").hexdigest()
ROOT = Path(__file__).resolve().parents[1]
needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")


# -- a read failing after the open -------------------------------------------------------

class _FailingRaw(io.RawIOBase):
    """A file that gives its first ``good`` bytes, then fails as a dying disk does."""

    def __init__(self, data: bytes, good: int) -> None:
        self.data, self.good, self.pos = data, good, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        if self.pos >= self.good:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        n = min(len(buf), self.good - self.pos)
        buf[:n] = self.data[self.pos:self.pos + n]
        self.pos += n
        return n


@pytest.fixture
def eio(monkeypatch):
    """Make reads of the files named in the returned set fail with EIO after 10 bytes."""
    failing: set[str] = set()
    real_open = io.open

    def fake_open(file, mode="r", *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and os.fspath(file) in failing \
                and "r" in mode:
            with real_open(file, "rb") as fh:
                data = fh.read()
            return io.BufferedReader(_FailingRaw(data, 10), buffer_size=4)
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(io, "open", fake_open)
    monkeypatch.setattr("builtins.open", fake_open)
    return failing


@pytest.mark.parametrize("content, name, fmt", [
    (MOONCAKE, "t.jsonl", "auto"), (MOONCAKE, "t.jsonl", "mooncake"),
    (CHAT, "t.jsonl", "chat"), (CHAT, "t.jsonl", "auto"), (AIPERF, "inputs.json", "aiperf"),
    (b'{"token_ids": [1, 2, 3, 4]}\n' * 3, "t.jsonl", "token-ids"),
])
@pytest.mark.parametrize("use_cache", [False, True])
def test_read_error_after_open_is_one_line(tmp_path, eio, deepseek, content, name, fmt,
                                           use_cache):
    path = tmp_path / name
    path.write_bytes(content)
    eio.add(str(path))
    with pytest.raises(TraceReadError) as info:
        analyze(path, format=fmt, use_cache=use_cache, cache_dir=tmp_path / "c",
                progress=False, block_size=4)
    text = info.value.one_line()
    assert "\n" not in text and text.startswith(f"{path}: "), text
    assert os.strerror(errno.EIO) in text, text


def test_content_sha256_read_error_is_one_line(tmp_path, eio):
    path = tmp_path / "t.jsonl"
    path.write_bytes(MOONCAKE)
    eio.add(str(path))
    with pytest.raises(TraceReadError, match=os.strerror(errno.EIO)):
        content_sha256(path)


# -- a directory: one sharded trace (tests/test_formats_compressed.py); empty, one line ------

EMPTY_DIR = ("is a directory holding no trace files (a directory is read as one trace, its "
             "files in name order)")


@pytest.mark.parametrize("fmt", ["auto", "mooncake", "chat", "aiperf", "token-ids"])
def test_empty_directory_is_one_line(tmp_path, fmt):
    with pytest.raises(TraceReadError) as info:
        analyze(tmp_path, format=fmt, use_cache=False)
    assert info.value.one_line() == f"{tmp_path}: {EMPTY_DIR}"


def test_content_sha256_of_an_empty_directory_is_one_line(tmp_path):
    with pytest.raises(TraceReadError, match="is a directory holding no trace files"):
        content_sha256(tmp_path)


def test_cli_empty_directory_exit_2(tmp_path, capsys):
    assert main(["analyze", str(tmp_path), "-q", "--no-cache"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"kvreuse: error: {tmp_path}: {EMPTY_DIR}"


# -- a FIFO --------------------------------------------------------------------------------

def _writer(path: Path, data: bytes) -> threading.Thread:
    def write() -> None:
        with open(path, "wb") as fh:
            fh.write(data)
    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return thread


def _in_thread(fn, timeout: float = 60):
    """Run ``fn`` in a daemon thread: a hang fails the test instead of the whole run."""
    out: dict = {}

    def run() -> None:
        try:
            out["value"] = fn()
        except BaseException as exc:  # handed to the test
            out["error"] = exc
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), "hangs"
    if "error" in out:
        raise out["error"]
    return out["value"]


@needs_fifo
@pytest.mark.parametrize("content, fmt", [
    (MOONCAKE, "auto"), (MOONCAKE, "mooncake"), (CHAT, "auto"), (AIPERF, "auto")])
@pytest.mark.parametrize("use_cache", [False, True])
def test_fifo_is_read_once_never_hangs(tmp_path, deepseek, content, fmt, use_cache):
    regular = tmp_path / "regular.jsonl"
    regular.write_bytes(content)
    expected = analyze(regular, format=fmt, use_cache=False, block_size=4)
    fifo = tmp_path / "trace.fifo"
    os.mkfifo(fifo)
    _writer(fifo, content)
    a = _in_thread(lambda: analyze(fifo, format=fmt, use_cache=use_cache,
                                   cache_dir=tmp_path / "c", block_size=4))
    assert a.to_dict()["num_blocks"] == expected.to_dict()["num_blocks"]
    assert a.reused_fraction == expected.reused_fraction
    assert a.params["path"] == str(fifo)  # the user's name, not a temporary file's
    assert a.content_sha256 == hashlib.sha256(content).hexdigest()


@needs_fifo
def test_fifo_errors_name_the_fifo_and_line(tmp_path):
    fifo = tmp_path / "trace.fifo"
    os.mkfifo(fifo)
    _writer(fifo, MOONCAKE + b'{"hash_ids": [1, "x"]}\n')
    with pytest.raises(KvReuseError) as info:
        _in_thread(lambda: analyze(fifo, use_cache=False))
    assert info.value.one_line().startswith(f"{fifo}:3: "), info.value.one_line()
    assert info.value.path == str(fifo)


@needs_fifo
def test_empty_fifo_is_an_empty_trace(tmp_path):
    fifo = tmp_path / "trace.fifo"
    os.mkfifo(fifo)
    _writer(fifo, b"")
    with pytest.raises(KvReuseError, match="trace is empty") as info:
        _in_thread(lambda: analyze(fifo, use_cache=False))
    assert str(fifo) in info.value.one_line()


@needs_fifo
def test_content_sha256_refuses_a_fifo_without_hanging(tmp_path):
    fifo = tmp_path / "trace.fifo"
    os.mkfifo(fifo)  # no writer: an open() would block forever
    with pytest.raises(TraceReadError) as info:
        _in_thread(lambda: content_sha256(fifo), timeout=10)
    assert "\n" not in info.value.one_line() and str(fifo) in info.value.one_line()


def test_spool_files_are_removed(tmp_path, monkeypatch):
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs here")
    spool = tmp_path / "tmp"
    spool.mkdir()
    monkeypatch.setenv("TMPDIR", str(spool))
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", None)
    fifo = tmp_path / "trace.fifo"
    os.mkfifo(fifo)
    _writer(fifo, MOONCAKE + b"{oops\n")
    with pytest.raises(KvReuseError):
        _in_thread(lambda: analyze(fifo, use_cache=False))
    _writer(fifo, MOONCAKE)
    _in_thread(lambda: analyze(fifo, use_cache=False))
    assert list(spool.iterdir()) == []


# -- /dev/stdin and process substitution, through the command ----------------------------

def _cli(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(args, env=env, capture_output=True, timeout=120, **kwargs)


KVREUSE = [sys.executable, "-c", "import sys; from pytest_kvreuse.cli import main; "
           "sys.exit(main())"]


@pytest.mark.skipif(not Path("/dev/stdin").exists(), reason="no /dev/stdin")
@pytest.mark.parametrize("content", [MOONCAKE, CHAT])
def test_dev_stdin_pipe(tmp_path, content):
    out = tmp_path / "o.json"
    proc = _cli([*KVREUSE, "analyze", "/dev/stdin", "-q", "--no-cache", "--block-size", "4",
                 "--json", str(out)], input=content)
    assert proc.returncode == 0, proc.stderr.decode()
    [doc] = json.loads(out.read_bytes())["traces"]
    assert doc["content_sha256"] == hashlib.sha256(content).hexdigest() != EMPTY_SHA
    assert doc["path"] == "/dev/stdin"
    regular = tmp_path / "t.jsonl"
    regular.write_bytes(content)
    assert doc["figures"]["num_blocks"] == analyze(regular, use_cache=False,
                                                   block_size=4).num_blocks


@pytest.mark.skipif(shutil.which("bash") is None or not Path("/dev/fd").exists(),
                    reason="no bash process substitution")
@pytest.mark.parametrize("content", [MOONCAKE, AIPERF])
def test_process_substitution(tmp_path, content):
    import gzip
    gz = tmp_path / "t.jsonl.gz"
    gz.write_bytes(gzip.compress(content))
    out = tmp_path / "o.json"
    cmd = " ".join(f"'{a}'" for a in KVREUSE)
    script = (f'{cmd} analyze <(python3 -c "import gzip,sys; sys.stdout.buffer.write('
              f"gzip.open('{gz}').read())\") -q --no-cache --json '{out}'")
    proc = _cli(["bash", "-c", script])
    assert proc.returncode == 0, proc.stderr.decode()
    [doc] = json.loads(out.read_bytes())["traces"]
    assert doc["content_sha256"] == hashlib.sha256(content).hexdigest()
    assert doc["path"].startswith("/dev/fd/")


@pytest.mark.skipif(not Path("/dev/stdin").exists(), reason="no /dev/stdin")
def test_dev_stdin_bad_record_is_one_line(tmp_path):
    proc = _cli([*KVREUSE, "analyze", "/dev/stdin", "-q", "--no-cache"],
                input=MOONCAKE + b'{"hash_ids": [1, 2.5]}\n')
    assert proc.returncode == 2
    err = proc.stderr.decode().strip()
    assert err.startswith("kvreuse: error: /dev/stdin:3: ") and len(err.splitlines()) == 1, err


@pytest.mark.skipif(not Path("/dev/stdin").exists(), reason="no /dev/stdin")
def test_dev_stdin_from_a_regular_file(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_bytes(MOONCAKE)
    out = tmp_path / "o.json"
    with open(path, "rb") as fh:
        proc = _cli([*KVREUSE, "analyze", "/dev/stdin", "-q", "--json", str(out)], stdin=fh)
    assert proc.returncode == 0, proc.stderr.decode()
    assert json.loads(out.read_bytes())["traces"][0]["content_sha256"] == \
        hashlib.sha256(MOONCAKE).hexdigest()
