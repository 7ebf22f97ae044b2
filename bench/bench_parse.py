"""Reading a big Mooncake trace: the compiled scanner (the ``[fast]`` extra) against the
per-line reader and the orjson floor, then the whole B = 512 analysis with each reader.

    python bench/bench_parse.py                  # the 1 GB trace of bench_big_inputs.py
    python bench/bench_parse.py --mb 141         # a smaller one
    python bench/bench_parse.py --whole-per-line 0   # skip the slow whole analysis

Every figure comes from a fresh child process (bench_big_inputs.py's way), so the
scanner's times include importing numba and loading its compiled code. Rows:

- ``orjson floor``: ``orjson.loads`` on every line and nothing else: the least any reader
  that makes Python objects per record can take (issue 16's baseline).
- ``per-line reader``: ``read_hash_id_trace`` without the scanner (``KVREUSE_SCAN=0``).
- ``scanner``: ``read_hash_id_trace`` with it (``KVREUSE_SCAN=1``); the same arrays (the
  bench checks a digest of them).
- ``analysis, ...``: ``analyze(trace, block_size=512)`` cold (empty stream cache), with the
  phases it reports.
- with ``--peer-python PY`` (a bench-only virtualenv holding pyarrow and polars, never a
  dependency): ``pyarrow.json.read_json`` and ``polars.read_ndjson`` with the schema given,
  down to the int64 array of the ids: the compiled JSON readers a user would reach for.

Goal (issue 16): the whole B = 512 analysis of the 1 GB trace under a third of 16.9 s.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_big_inputs import write_big_mooncake  # noqa: E402 - a sibling script
from bench_text import peak_rss_mb  # noqa: E402

GOAL_S = 16.9 / 3


def child(kind: str, trace: str, cache_dir: str) -> dict:
    start = time.perf_counter()
    out: dict = {}
    if kind == "pyarrow":
        import pyarrow as pa
        import pyarrow.json as pj

        schema = pa.schema([("timestamp", pa.int64()), ("input_length", pa.int64()),
                            ("output_length", pa.int64()), ("hash_ids", pa.list_(pa.int64()))])
        table = pj.read_json(trace, parse_options=pj.ParseOptions(explicit_schema=schema))
        table.column("hash_ids").combine_chunks().values.to_numpy()
    elif kind == "polars":
        import polars as pl

        frame = pl.read_ndjson(trace, schema={
            "timestamp": pl.Int64, "input_length": pl.Int64, "output_length": pl.Int64,
            "hash_ids": pl.List(pl.Int64)})
        frame["hash_ids"].explode().to_numpy()
    elif kind == "orjson":
        import orjson

        loads = orjson.loads
        with open(trace, "rb") as fh:
            for line in fh:
                loads(line)
    elif kind == "analysis":
        from pytest_kvreuse import analyze

        a = analyze(trace, block_size=512, cache_dir=cache_dir, progress=False)
        out = {"timings": a.timings, "offloadable": a.offloadable_fraction(345_792)}
    else:
        from pytest_kvreuse.loaders.hashids import read_hash_id_trace

        t = read_hash_id_trace(trace, flavour="mooncake")
        seconds = time.perf_counter() - start
        digest = hashlib.sha256()
        for values in (t.hash_ids, t.offsets, t.input_lengths, t.timestamps, t.lines):
            digest.update(values.tobytes())
        out = {"digest": digest.hexdigest()[:16], "seconds": seconds}
    out.setdefault("seconds", time.perf_counter() - start)
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def run_child(kind: str, trace: Path, scan: bool, python: str = sys.executable) -> dict:
    env = dict(os.environ, KVREUSE_SCAN="1" if scan else "0")
    with tempfile.TemporaryDirectory(prefix="kvreuse-cache-") as cache:
        args = [python, __file__, "--child", kind, "--trace", str(trace),
                "--cache-dir", cache]
        out = subprocess.run(args, check=True, capture_output=True, text=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mb", type=float, default=1000, help="trace size in MB (default 1000)")
    p.add_argument("--whole-per-line", type=int, default=1,
                   help="also time the whole analysis with the per-line reader (1, default)")
    p.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "kvreuse-big",
                   help="directory for the generated trace (kept, reused when present)")
    p.add_argument("--peer-python", help="an interpreter with pyarrow and polars: time them")
    p.add_argument("--child", choices=("orjson", "reader", "analysis", "pyarrow", "polars"),
                   help=argparse.SUPPRESS)
    p.add_argument("--trace", help=argparse.SUPPRESS)
    p.add_argument("--cache-dir", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.trace, args.cache_dir)))
        return

    args.out.mkdir(parents=True, exist_ok=True)
    trace = args.out / f"mooncake_{args.mb:g}MB.jsonl"
    if not trace.exists():
        start = time.perf_counter()
        info = write_big_mooncake(trace, int(args.mb * 1e6))
        print(f"generated {trace} ({info['requests']:,} requests) in "
              f"{time.perf_counter() - start:.0f} s")
    print(f"cores: {os.cpu_count()}, load average: {os.getloadavg()[0]:.2f}; "
          f"{trace.stat().st_size / 1e6:,.0f} MB")
    # The scanner once before the timed runs, on a one-line trace: numba compiles it on
    # first use and caches the machine code; every timed child loads it from that cache,
    # as a user's second run does.
    with tempfile.TemporaryDirectory() as tmp:
        tiny = Path(tmp) / "tiny.jsonl"
        tiny.write_bytes(b'{"timestamp": 0, "input_length": 512, "hash_ids": [0]}\n')
        run_child("reader", tiny, True)

    rows = [("orjson floor", run_child("orjson", trace, False)),
            ("per-line reader", run_child("reader", trace, False)),
            ("scanner", run_child("reader", trace, True))]
    if args.peer_python:
        rows += [(f"{peer} (schema given)", run_child(peer, trace, False, args.peer_python))
                 for peer in ("pyarrow", "polars")]
    floor = rows[0][1]["seconds"]
    for name, r in rows:
        extra = f", digest {r['digest']}" if "digest" in r else ""
        print(f"{name:<34} {r['seconds']:6.2f} s  ({r['seconds'] / floor:4.2f}x the floor)"
              f"  peak {r['peak_rss_mb']:,.0f} MB{extra}")
    if rows[1][1]["digest"] != rows[2][1]["digest"]:
        raise SystemExit("the scanner's arrays differ from the per-line reader's")

    whole = [("analysis B=512, scanner", run_child("analysis", trace, True))]
    if args.whole_per_line:
        whole.append(("analysis B=512, per-line reader", run_child("analysis", trace, False)))
    for name, r in whole:
        phases = ", ".join(f"{k} {v:.1f} s" for k, v in r["timings"].items())
        print(f"{name:<34} {r['seconds']:6.2f} s  ({phases}); peak "
              f"{r['peak_rss_mb']:,.0f} MB; offloadable at 345,792: {r['offloadable']:.4f}")
    met = whole[0][1]["seconds"] < GOAL_S
    print(f"goal: whole analysis under {GOAL_S:.2f} s (a third of 16.9 s): "
          f"{'met' if met else 'missed'} ({whole[0][1]['seconds'] / GOAL_S:.2f}x the goal)")


if __name__ == "__main__":
    main()
