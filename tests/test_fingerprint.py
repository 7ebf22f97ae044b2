"""The content hash that keys caches, memos and baselines."""

from __future__ import annotations

import hashlib

import pytest

from pytest_kvreuse import KvReuseError
from pytest_kvreuse.loaders.fingerprint import content_sha256


def test_hash_of_the_bytes(tmp_path):
    path = tmp_path / "t.jsonl"
    data = b"abc\n" * 3_000_000  # several read chunks
    path.write_bytes(data)
    assert content_sha256(path) == hashlib.sha256(data).hexdigest()


def test_missing_file_is_one_line(tmp_path):
    with pytest.raises(KvReuseError, match="nope.jsonl: cannot read the trace"):
        content_sha256(tmp_path / "nope.jsonl")
