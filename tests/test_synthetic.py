"""The example traces in the repo are exactly what the generator script writes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pytest_kvreuse import analyze
from pytest_kvreuse.synthetic import Workload, generate, prefix_hash_ids

ROOT = Path(__file__).resolve().parents[1]


def test_generator_is_deterministic():
    a = generate(Workload(sessions=30, seed=3))
    b = generate(Workload(sessions=30, seed=3))
    assert a == b
    assert a != generate(Workload(sessions=30, seed=4))


def test_turns_resend_their_history():
    reqs = generate(Workload(sessions=20, seed=5))
    by_session: dict[int, list] = {}
    for r in reqs:
        by_session.setdefault(r.session, []).append(r)
    for turns in by_session.values():
        turns.sort(key=lambda r: r.turn)
        for earlier, later in zip(turns, turns[1:], strict=False):
            assert later.segments[: len(earlier.segments)] == earlier.segments


def test_hash_ids_name_prefixes():
    reqs = generate(Workload(sessions=20, seed=6))
    ids = list(prefix_hash_ids(reqs, 64))
    seen: dict[int, tuple] = {}
    named: dict[tuple, int] = {}
    for r, req_ids in zip(reqs, ids, strict=True):
        assert len(req_ids) == -(-r.input_length // 64)
        tokens = [(seg, i) for seg, n in r.segments for i in range(n)]
        for k, h in enumerate(req_ids[:-1]):
            prefix = tuple(tokens[: (k + 1) * 64])
            assert seen.setdefault(h, prefix) == prefix
            assert named.setdefault(prefix, h) == h


def test_example_traces_are_regenerated_identically(tmp_path):
    subprocess.run([sys.executable, str(ROOT / "scripts" / "make_example_traces.py"),
                    "--out", str(tmp_path)], check=True, capture_output=True)
    made_files = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    assert made_files
    for made in made_files:
        shipped = ROOT / "example_traces" / made.relative_to(tmp_path)
        assert shipped.read_bytes() == made.read_bytes(), made.name
    shipped_weka = sorted(p.name for p in (ROOT / "example_traces" / "agentic.weka").iterdir())
    assert shipped_weka == sorted(p.name for p in (tmp_path / "agentic.weka").iterdir())


def test_example_trace_reuses_its_system_prompts():
    a = analyze(ROOT / "example_traces" / "chat_sessions.mooncake.jsonl")
    assert 1000 < a.num_requests
    assert a.reused_fraction > 0.5
    assert ROOT.joinpath("example_traces", "chat_sessions.mooncake.jsonl").stat().st_size < 2e6
