"""Numbered saved runs: naming, numbering, selection, atomic saves, input shapes."""

from __future__ import annotations

import hashlib
import os
from datetime import datetime, timezone

import orjson
import pytest

from pytest_kvreuse.api import analyze
from pytest_kvreuse.baselines.drift import content_sha256_of, metric_values
from pytest_kvreuse.baselines.storage import (
    FORMAT,
    BaselineStorage,
    autosave_name,
    baseline_document,
    describe_run,
    load_results,
    sanitize_name,
)
from pytest_kvreuse.cli import trace_result
from pytest_kvreuse.errors import KvReuseError, TraceReadError
from pytest_kvreuse.loaders.fingerprint import content_sha256
from pytest_kvreuse.synthetic import Workload, generate, write_mooncake

RUN = {"started": "2026-11-30T06:00:00+00:00", "duration_s": 1.0, "args": [],
       "git_commit": "4433d89a1c2b3d4e5f60718293a4b5c6d7e8f901", "plugin_version": "0.1.0",
       "python": "3.12.0"}


def trace(name="chat", reused=0.5, sha="a" * 64) -> dict:
    return {"name": name, "params": {"path": f"{name}.jsonl", "content_sha256": sha},
            "figures": {"reused_fraction": reused, "unique_blocks": 10},
            "offloadable_fraction": {"16384": reused / 2}, "checks": [], "error": None}


def doc(*traces: dict) -> dict:
    return baseline_document(list(traces) or [trace()], RUN,
                             saved_at=datetime(2026, 11, 30, 6, 40, tzinfo=timezone.utc))


# -- names --------------------------------------------------------------------------------

@pytest.mark.parametrize("raw, safe", [
    ("main", "main"), ("feature/new tokenizer", "feature_new_tokenizer"),
    ("../../etc/passwd", "etc_passwd"), ("", "run"), ("...", "run"), ("a" * 200, "a" * 80),
    ("v1.2-rc", "v1.2-rc"), ("naïve", "na_ve"),
])
def test_sanitize_name(raw, safe):
    assert sanitize_name(raw) == safe


def test_autosave_name_from_commit_and_time():
    when = datetime(2026, 11, 30, 6, 40, 5, tzinfo=timezone.utc)
    assert autosave_name("4433d89a1c2b3d4e", when) == "4433d89a1c_20261130T064005Z"
    assert autosave_name(None, when) == "nocommit_20261130T064005Z"


# -- the saved document -------------------------------------------------------------------

def test_baseline_document_carries_provenance():
    d = doc()
    assert d["format"] == FORMAT
    assert d["saved"] == "2026-11-30T06:40:00+00:00"
    assert d["commit"] == RUN["git_commit"]
    assert d["python"].count(".") == 2
    assert d["versions"]["pytest-kvreuse"] and d["versions"]["numpy"]
    assert d["run"] == RUN and d["traces"][0]["name"] == "chat"


def test_baseline_document_hashes_traces_the_analysis_did_not(tmp_path):
    f = tmp_path / "t.jsonl"
    f.write_bytes(b"some trace bytes\n")
    t = {"name": "t", "params": {"path": str(f)}, "figures": {}}
    d = baseline_document([t], RUN)
    assert d["traces"][0]["content_sha256"] == hashlib.sha256(
        b"some trace bytes\n").hexdigest()
    assert "content_sha256" not in t["params"]  # the caller's dict is left alone


def test_content_hash_streams_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr("pytest_kvreuse.loaders.fingerprint._CHUNK", 7)
    data = os.urandom(100)
    (tmp_path / "x").write_bytes(data)
    assert content_sha256(tmp_path / "x") == hashlib.sha256(data).hexdigest()
    with pytest.raises(TraceReadError, match="missing: cannot read the trace"):
        content_sha256(tmp_path / "missing")


def test_analyze_json_records_the_content_hash(tmp_path):
    path = tmp_path / "chat.jsonl"
    write_mooncake(generate(Workload(sessions=5, seed=3)), path)
    out = trace_result(analyze(path, block_size=64), str(path), 16384)
    assert out.content_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_plugin_content_hash_key_is_understood(tmp_path):
    t = {"name": "t", "params": {"path": str(tmp_path / "gone.jsonl")}, "content_hash": "f" * 64}
    assert content_sha256_of(t) == "f" * 64
    assert baseline_document([t], RUN)["traces"][0]["content_sha256"] == "f" * 64


# -- numbering and selection --------------------------------------------------------------

def test_numbering_starts_at_one_and_continues_across_instances(tmp_path):
    s = BaselineStorage(tmp_path / ".kvreuse")
    assert s.runs() == [] and s.next_number() == 1
    first = s.save(doc(), "main")
    assert first.path.name == "0001_main.json" and first.number == 1
    # A new storage object on the same directory: what the next CI run sees.
    second = BaselineStorage(tmp_path / ".kvreuse").save(doc(), "feature/x")
    assert second.path.name == "0002_feature_x.json"
    saved = orjson.loads(second.path.read_bytes())
    assert saved["number"] == 2 and saved["name"] == "feature_x"
    assert [r.number for r in s.runs()] == [1, 2]


def test_numbering_continues_after_gaps_and_ignores_other_files(tmp_path):
    s = BaselineStorage(tmp_path)
    s.save(doc(), "a")
    os.rename(tmp_path / "0001_a.json", tmp_path / "0007_a.json")
    (tmp_path / "README.txt").write_text("not a run")
    (tmp_path / ".0009_a.json.abc.tmp").write_text("{half")  # an interrupted save
    (tmp_path / "0042_dir.json").mkdir()
    assert [r.number for r in s.runs()] == [7]
    assert s.save(doc(), "b").path.name == "0008_b.json"


def test_numbers_above_9999_still_sort(tmp_path):
    s = BaselineStorage(tmp_path)
    (tmp_path / "9999_a.json").write_bytes(orjson.dumps(doc()))
    assert s.save(doc(), "b").path.name == "10000_b.json"
    assert s.find().number == 10000


def test_find_latest_number_and_name(tmp_path):
    s = BaselineStorage(tmp_path)
    for name in ("main", "feature", "main", "maintenance"):
        s.save(doc(), name)
    assert s.find().label == "0004_maintenance"
    assert s.find(2).label == "0002_feature"
    assert s.find("0002").label == "0002_feature"
    assert s.find("main").label == "0003_main"            # exact name: its latest run
    assert s.find("0001_main").label == "0001_main"       # a file stem
    assert s.find("feat").label == "0002_feature"         # an unambiguous prefix
    run, loaded = s.load("feature")
    assert loaded.meta["name"] == "feature" and loaded.traces[0].name == "chat"


def test_find_errors_are_clear(tmp_path):
    s = BaselineStorage(tmp_path / "empty")
    with pytest.raises(KvReuseError, match="no saved run to compare with.*--kvreuse-save"):
        s.find()
    s = BaselineStorage(tmp_path)
    s.save(doc(), "main")
    s.save(doc(), "maintenance")
    with pytest.raises(KvReuseError, match="'mai' is ambiguous: it starts main, maintenance"):
        s.find("mai")
    with pytest.raises(KvReuseError, match=r"no saved run named 'dev' \(have: main, "):
        s.find("dev")
    with pytest.raises(KvReuseError, match=r"no saved run number 9 \(have 1..2\)"):
        s.find(9)


# -- atomic saves -------------------------------------------------------------------------

def snapshot(directory):
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def test_failed_write_leaves_storage_untouched(tmp_path, monkeypatch):
    s = BaselineStorage(tmp_path)
    s.save(doc(), "main")
    before = snapshot(tmp_path)

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(KvReuseError, match="cannot write: No space left on device"):
        s.save(doc(trace(reused=0.9)), "next")
    assert snapshot(tmp_path) == before  # no half-written run, no temporary file
    monkeypatch.undo()
    assert s.save(doc(), "next").path.name == "0002_next.json"


def test_run_killed_mid_save_leaves_storage_untouched(tmp_path, monkeypatch):
    s = BaselineStorage(tmp_path)
    s.save(doc(), "main")
    before = snapshot(tmp_path)
    real_fdopen = os.fdopen

    class Killed(BaseException):
        pass

    class HalfWriter:
        def __init__(self, fh):
            self.fh = fh

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

        def __getattr__(self, name):
            return getattr(self.fh, name)

        def write(self, data):
            self.fh.write(data[: len(data) // 2])
            raise Killed  # e.g. KeyboardInterrupt/SIGTERM half-way through

    monkeypatch.setattr(os, "fdopen", lambda fd, mode: HalfWriter(real_fdopen(fd, mode)))
    with pytest.raises(Killed):
        s.save(doc(), "next")
    assert snapshot(tmp_path) == before
    assert s.find().label == "0001_main"


# -- reading results files ----------------------------------------------------------------

def test_load_results_accepts_saved_runs_json_results_and_analyze_output(tmp_path):
    saved = BaselineStorage(tmp_path).save(doc(trace("a"), trace("b")), "main")
    traces, d = load_results(saved.path)
    assert [t.name for t in traces] == ["a", "b"] and d["commit"] == RUN["git_commit"]

    (tmp_path / "results.json").write_bytes(orjson.dumps({"run": RUN, "traces": [trace()]}))
    assert load_results(tmp_path / "results.json")[0][0].name == "chat"

    analysis = {"params": {"path": "/x/chat.jsonl", "content_sha256": "c" * 64},
                "num_requests": 3, "unique_blocks": 7, "reused_fraction": 0.25,
                "gpu_cache_tokens": 16384, "offloadable_fraction": 0.125}
    (tmp_path / "a.json").write_bytes(orjson.dumps(analysis))
    [t], _ = load_results(tmp_path / "a.json")
    assert t.name == "chat.jsonl"
    assert t.figures["reused_fraction"] == 0.25 and t.figures["num_requests"] == 3
    assert t.figures["offloadable_fraction"] == {"16384": 0.125}
    assert t.content_sha256 == "c" * 64

    # LRU figures at the one GPU size land where trace_result keeps them.
    lru = {**analysis, "lru_hit_fraction": 0.06, "lru_offloadable_fraction": 0.5,
           "compulsory_fraction": 0.3}
    (tmp_path / "l.json").write_bytes(orjson.dumps(lru))
    [t], _ = load_results(tmp_path / "l.json")
    assert (t.figures["lru_hit_fraction"], t.figures["lru_offloadable_fraction"]) == (
        {"16384": 0.06}, {"16384": 0.5})
    assert t.figures["compulsory_fraction"] == 0.3
    assert metric_values(t, "lru_hit_fraction") == {16384: 0.06}


@pytest.mark.parametrize("content, message", [
    (b"{not json", "not valid JSON"),
    (b'{"hello": 1}', "not a kvreuse results file"),
    (b'{"traces": [{"figures": {}}]}', "trace result #1 has no name"),
    (b'"text"', "not a kvreuse results file"),
])
def test_load_results_errors_name_the_file(tmp_path, content, message):
    p = tmp_path / "bad.json"
    p.write_bytes(content)
    with pytest.raises(KvReuseError, match=message) as info:
        load_results(p)
    assert info.value.one_line().startswith(str(p))


def test_load_results_missing_file(tmp_path):
    with pytest.raises(KvReuseError, match="cannot read"):
        load_results(tmp_path / "nope.json")


def test_describe_run():
    assert describe_run({"commit": "4433d89a1c2b3d", "saved": "2026-11-30T06:40:00+00:00"},
                        "x.json") == "x.json (commit 4433d89a1c, saved 2026-11-30T06:40:00+00:00)"
    assert describe_run({}, "x.json") == "x.json"


# -- trend --------------------------------------------------------------------------------

def test_trend_over_all_saved_runs(tmp_path):
    s = BaselineStorage(tmp_path)
    s.save(doc(trace(reused=0.5)), "main")
    s.save(doc(trace(reused=0.6), trace("other", reused=0.1)), "main")
    (tmp_path / "0003_broken.json").write_bytes(b"{")
    s.save(doc(trace(reused=0.7)), "main")
    trend = s.trend()
    assert [t["number"] for t in trend] == [1, 2, 4]
    assert [t["traces"]["chat"]["reused_fraction"] for t in trend] == [0.5, 0.6, 0.7]
    assert trend[1]["traces"]["chat"]["offloadable_fraction@16384"] == 0.3
    assert trend[1]["traces"]["other"]["reused_fraction"] == 0.1
    assert trend[0]["commit"] == RUN["git_commit"] and trend[0]["saved"]
