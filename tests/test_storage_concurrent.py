"""Saves started at once into one storage: every one lands in its own numbered file."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from pytest_kvreuse.baselines.storage import BaselineStorage, baseline_document, load_results
from pytest_kvreuse.errors import KvReuseError
from pytest_kvreuse.synthetic import Workload, generate, write_mooncake

WORKERS = 4
ROUNDS = 3
RUN = {"started": "2026-11-30T06:00:00+00:00", "duration_s": 1.0, "args": [],
       "git_commit": "4433d89a1c2b3d4e5f60718293a4b5c6d7e8f901"}


def _doc(tag: str) -> dict:
    # The worker's tag as the trace's path: each file must hold its own save's content.
    result = {"name": "chat", "params": {"path": f"{tag}.jsonl", "content_sha256": "a" * 64},
              "figures": {"reused_fraction": 0.5}, "checks": [], "error": None}
    return baseline_document([result], RUN)


def _save(directory: str, barrier, tag: str, queue) -> None:
    storage = BaselineStorage(directory)
    document = _doc(tag)
    barrier.wait()
    run = storage.save(document, "main")
    queue.put((tag, str(run.path), run.number))


def _save_race(directory: Path) -> list[tuple[str, str, int]]:
    # fork (where available) keeps each round quick; the race is the same under spawn.
    ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods()
                                      else "spawn")
    barrier = ctx.Barrier(WORKERS)
    queue = ctx.Queue()
    procs = [ctx.Process(target=_save, args=(str(directory), barrier, f"w{i}", queue))
             for i in range(WORKERS)]
    for p in procs:
        p.start()
    said = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    return said


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_concurrent_saves_keep_every_run(tmp_path, round_):
    directory = tmp_path / ".kvreuse"
    # Some rounds start on an existing storage, so numbering does not start at 1.
    for _ in range(round_ % 3):
        BaselineStorage(directory).save(_doc("before"), "main")
    before = len(BaselineStorage(directory).runs())

    said = _save_race(directory)

    runs = BaselineStorage(directory).runs()
    assert len(runs) == before + WORKERS
    paths = {p for _, p, _ in said}
    assert len(paths) == WORKERS  # no two saves claimed the same file
    assert {str(r.path) for r in runs} >= paths
    for tag, path, number in said:
        traces, doc = load_results(path)
        assert traces[0].path == f"{tag}.jsonl"  # its own content, not another's
        assert doc["number"] == number
    # No temporary file of a save is left behind.
    assert sorted(p.name for p in directory.iterdir()) == sorted(r.path.name for r in runs)


def test_save_never_replaces_an_existing_run(tmp_path, monkeypatch):
    """A run that appears after the number was chosen (another process) is kept."""
    storage = BaselineStorage(tmp_path)
    first = storage.save(_doc("first"), "main")
    monkeypatch.setattr(BaselineStorage, "next_number", lambda self: first.number)
    second = storage.save(_doc("second"), "main")
    assert second.number == first.number + 1
    assert load_results(first.path)[0][0].path == "first.jsonl"
    assert load_results(second.path)[0][0].path == "second.jsonl"


def test_failed_save_leaves_storage_as_it_was(tmp_path, monkeypatch):
    storage = BaselineStorage(tmp_path)
    storage.save(_doc("first"), "main")
    before = sorted(p.name for p in tmp_path.iterdir())

    def broken_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(KvReuseError, match="No space left on device"):
        storage.save(_doc("second"), "main")
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_unserialisable_document_leaves_storage_as_it_was(tmp_path):
    storage = BaselineStorage(tmp_path)
    with pytest.raises(TypeError):
        storage.save({"traces": [], "bad": object()}, "main")
    assert list(tmp_path.iterdir()) == []


MANIFEST = """
[[trace]]
name = "chat"
path = "chat.jsonl"
gpu_cache_tokens = [16384]

[[trace.check]]
metric = "reused_fraction"
min = 0.0
"""


def test_four_pytest_saves_at_once(tmp_path):
    """Four ``pytest --kvreuse-save=main`` runs started together: four saved runs."""
    (tmp_path / "kvreuse.toml").write_text(MANIFEST)
    write_mooncake(generate(Workload(sessions=8, seed=2)), tmp_path / "chat.jsonl")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")])}
    env.pop("PYTEST_ADDOPTS", None)
    env.pop("PYTEST_XDIST_WORKER", None)
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
           "--kvreuse-save=main"]
    procs = [subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT) for _ in range(WORKERS)]
    outputs = [p.communicate(timeout=120)[0].decode() for p in procs]
    for p, out in zip(procs, outputs, strict=True):
        assert p.returncode == 0, out
        assert "kvreuse: run saved as baseline" in out, out
    runs = BaselineStorage(tmp_path / ".kvreuse").runs()
    assert [r.number for r in runs] == [1, 2, 3, 4]
    for r in runs:
        assert orjson.loads(r.path.read_bytes())["traces"][0]["name"] == "chat"
    claimed = sorted(line.split("(")[-1].rstrip(")")
                     for out in outputs for line in out.splitlines()
                     if "run saved as baseline" in line)
    assert len(set(claimed)) == WORKERS
