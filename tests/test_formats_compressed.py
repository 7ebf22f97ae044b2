"""Compressed, piped and sharded traces: detected from content, analysed as the plain file
is, and keyed by the content hash of the decompressed bytes."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import json
import lzma
import os
import subprocess
import sys
from pathlib import Path

import pytest
from figures import figures
from fuzzing import result_or_one_line_error
from hypothesis import given
from hypothesis import strategies as st

from pytest_kvreuse import KvReuseError, analyze
from pytest_kvreuse.errors import TraceFormatError, TraceReadError
from pytest_kvreuse.loaders.fingerprint import content_sha256
from pytest_kvreuse.loaders.registry import detect_format

EXAMPLES = Path(__file__).resolve().parents[1] / "example_traces"
MOONCAKE = EXAMPLES / "chat_sessions.mooncake.jsonl"


def _zstd(data: bytes) -> bytes:
    zstandard = pytest.importorskip("zstandard")
    return zstandard.ZstdCompressor().compress(data)


CODECS = {
    "gz": lambda b: gzip.compress(b, mtime=0),
    "xz": lzma.compress,
    "bz2": bz2.compress,
    "zst": _zstd,
}


@pytest.fixture(scope="module")
def plain() -> bytes:
    return MOONCAKE.read_bytes()


@pytest.mark.parametrize("codec", sorted(CODECS))
def test_compressed_file_equals_the_plain_one(tmp_path, plain, codec):
    path = tmp_path / f"trace.jsonl.{codec}"
    path.write_bytes(CODECS[codec](plain))
    assert detect_format(path) == "mooncake"
    assert content_sha256(path) == hashlib.sha256(plain).hexdigest()
    assert figures(analyze(path)) == figures(analyze(MOONCAKE))


def test_detection_reads_content_not_the_name(tmp_path, plain):
    path = tmp_path / "trace.jsonl"  # gzip bytes under a plain name
    path.write_bytes(gzip.compress(plain))
    assert analyze(path).num_requests == analyze(MOONCAKE).num_requests
    named = tmp_path / "plain.jsonl.gz"  # plain bytes under a .gz name
    named.write_bytes(plain)
    assert analyze(named).num_requests == analyze(MOONCAKE).num_requests


def test_text_trace_compressed_shares_the_stream_cache(tmp_path):
    text = EXAMPLES / "chat_sessions.aiperf.json"
    packed = tmp_path / "inputs.json.gz"
    packed.write_bytes(gzip.compress(text.read_bytes()))
    cache = tmp_path / "cache"
    a = analyze(text, cache_dir=cache)
    entries = set(cache.rglob("*"))
    b = analyze(packed, cache_dir=cache)
    assert set(cache.rglob("*")) == entries  # the same key: read from the cache
    assert figures(a) == figures(b)


def _run_cli(args, **kw):
    return subprocess.run([sys.executable, "-m", "pytest_kvreuse.cli", *args],
                          capture_output=True, env={**os.environ, "PYTHONPATH": str(
                              Path(__file__).resolve().parents[1])}, **kw)


def _cli_json(tmp_path, trace: str, stdin: bytes | None = None) -> dict:
    out = tmp_path / f"out-{len(list(tmp_path.iterdir()))}.json"
    proc = _run_cli(["analyze", trace, "--json", str(out)], input=stdin)
    assert proc.returncode == 0, proc.stderr.decode()
    doc = json.loads(out.read_text())["traces"][0]
    return doc


def test_cli_gz_and_stdin_equal_the_plain_analysis(tmp_path, plain):
    packed = tmp_path / "trace.jsonl.gz"
    packed.write_bytes(gzip.compress(plain))
    base = _cli_json(tmp_path, str(MOONCAKE))
    gz = _cli_json(tmp_path, str(packed))
    piped = _cli_json(tmp_path, "-", stdin=plain)
    piped_gz = _cli_json(tmp_path, "-", stdin=packed.read_bytes())
    sha = hashlib.sha256(plain).hexdigest()
    for doc in (base, gz, piped, piped_gz):
        assert doc["content_sha256"] == sha
        assert doc["figures"] == base["figures"]


def test_stdin_through_the_api(monkeypatch, plain, tmp_path):
    spool = tmp_path / "in"
    spool.write_bytes(gzip.compress(plain))
    with open(spool, "rb") as fh:
        monkeypatch.setattr(sys, "stdin", fh)
        a = analyze("-")
    assert a.content_sha256 == hashlib.sha256(plain).hexdigest()
    assert a.params["path"] == "-"


@pytest.mark.parametrize("codec", ["gz", "xz", "bz2", "zst"])
def test_cut_off_file_is_one_line_naming_it(tmp_path, plain, codec):
    data = CODECS[codec](plain)
    path = tmp_path / f"cut.{codec}"
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(KvReuseError) as exc:
        analyze(path)
    text = exc.value.one_line()
    assert str(path) in text and "\n" not in text


def test_zstd_without_the_extra_names_it(tmp_path, monkeypatch, plain):
    path = tmp_path / "t.jsonl.zst"
    path.write_bytes(b"\x28\xb5\x2f\xfd" + b"\x00" * 16)
    monkeypatch.setitem(sys.modules, "zstandard", None)
    with pytest.raises(TraceReadError) as exc:
        analyze(path)
    assert "pytest-kvreuse[zstd]" in str(exc.value) and str(path) in str(exc.value)


def _shards(tmp_path, plain, parts=3, name="part-{:02d}.jsonl"):
    lines = plain.splitlines(keepends=True)
    out = tmp_path / "shards"
    out.mkdir()
    step = -(-len(lines) // parts)
    for k in range(parts):
        chunk = b"".join(lines[k * step:(k + 1) * step])
        target = out / name.format(k)
        if k == 1:  # mixed containers in one export
            target = target.with_name(target.name + ".gz")
            chunk = gzip.compress(chunk)
        target.write_bytes(chunk)
    return out


def test_directory_and_glob_are_one_trace(tmp_path, plain):
    out = _shards(tmp_path, plain)
    base = analyze(MOONCAKE)
    sha = hashlib.sha256(plain).hexdigest()
    for path in (out, str(out / "part-*")):
        assert content_sha256(path) == sha
        a = analyze(path)
        assert figures(a) == figures(base)


def test_shards_read_in_name_order(tmp_path, plain):
    out = _shards(tmp_path, plain)
    first = sorted(out.iterdir())[0]
    first.rename(out / "z-last.jsonl")  # now read last: another trace
    assert content_sha256(out) != hashlib.sha256(plain).hexdigest()


def test_shard_hash_separates_files(tmp_path):
    # Shards "a" + "b\n" are two records; the file "ab\n" is one: different hashes.
    d = tmp_path / "d"
    d.mkdir()
    (d / "1").write_bytes(b'{"hash_ids": [1], "input_length": 512}')
    (d / "2").write_bytes(b'{"hash_ids": [2], "input_length": 512}\n')
    joined = tmp_path / "one.jsonl"
    joined.write_bytes((d / "1").read_bytes() + b"\n" + (d / "2").read_bytes())
    assert content_sha256(d) == content_sha256(joined)
    assert analyze(d).num_requests == analyze(joined).num_requests == 2


def test_bad_line_names_its_shard(tmp_path, plain):
    out = _shards(tmp_path, plain)
    last = sorted(out.iterdir())[-1]
    last.write_bytes(last.read_bytes() + b'{"hash_ids": "x"}\n')
    n = len(last.read_bytes().splitlines())
    with pytest.raises(TraceFormatError) as exc:
        analyze(out)
    assert exc.value.path == str(last) and exc.value.line == n


def test_empty_directory_and_unmatched_glob(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(TraceReadError, match="holding no trace files"):
        analyze(tmp_path / "empty")
    with pytest.raises(TraceReadError, match="no file matches"):
        analyze(str(tmp_path / "nothing-*.jsonl"))


def test_manifest_glob_path(pytester, plain):
    export = pytester.path / "exports"
    export.mkdir()
    lines = plain.splitlines(keepends=True)
    (export / "2026-06-01.jsonl.gz").write_bytes(gzip.compress(b"".join(lines[:900])))
    (export / "2026-06-02.jsonl.gz").write_bytes(gzip.compress(b"".join(lines[900:])))
    reused = analyze(MOONCAKE).reused_fraction
    pytester.makefile(".toml", kvreuse=f"""
[[trace]]
name = "june"
path = "exports/2026-06-*.jsonl.gz"

[[trace.check]]
metric = "reused_fraction"
min = {reused - 1e-9}
max = {reused + 1e-9}
""")
    result = pytester.runpytest("-p", "no:cacheprovider", "kvreuse.toml")
    result.assert_outcomes(passed=1)


@given(cut=st.integers(0, 400), codec=st.sampled_from(["gz", "xz", "bz2"]),
       flip=st.integers(0, 400))
def test_fuzz_damaged_compressed_input(tmp_path_factory, cut, codec, flip):
    body = b"".join(MOONCAKE.read_bytes().splitlines(keepends=True)[:20])
    data = bytearray(CODECS[codec](body))
    if flip < len(data):
        data[flip] ^= 0x55
    path = tmp_path_factory.mktemp("fuzz") / "t.jsonl.x"
    path.write_bytes(bytes(data[:max(len(data) - cut, 1)]))
    result_or_one_line_error(path)
