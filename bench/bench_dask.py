"""The text trace of bench_text.py tokenized in partitions: ``--jobs 2`` and a two-worker
Dask LocalCluster against the serial cold run, in one run.

    python bench/bench_dask.py                # the ~60M-token multi-turn trace (long)
    python bench/bench_dask.py --scale 0.05   # ~3M tokens

Each side runs in a fresh process with an empty cache (cold: everything is tokenized),
and must give the serial figures exactly (checked here). The cluster's start-up is timed
apart from its analysis. Needs the extra ``[dask]`` for the cluster side.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_text import build_traces, cpu_s, peak_rss_mb  # noqa: E402


def run_side(side: str, trace: str, cache_dir: str) -> dict:
    from pytest_kvreuse import analyze

    extra: dict = {}
    started = 0.0
    lc = None
    if side == "jobs2":
        extra = {"jobs": 2}
    elif side == "dask2":
        from distributed import Client, LocalCluster

        start = time.perf_counter()
        lc = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                          dashboard_address=None)
        extra = {"dask": Client(lc)}
        started = time.perf_counter() - start
    start, cpu = time.perf_counter(), cpu_s()
    a = analyze(trace, cache_dir=cache_dir, progress=False, **extra)
    seconds = time.perf_counter() - start
    figures = a.to_dict()
    if lc is not None:
        extra["dask"].close()
        lc.close()
    return {"seconds": seconds, "cpu_s": cpu_s() - cpu, "startup_s": started,
            "tokens": int(a.stream.prompt_tokens.sum()), "blocks": a.num_blocks,
            "figures": json.dumps(figures, sort_keys=True, default=str),
            "lru_at_1m": a.lru_hit_fraction(1_000_000), "peak_rss_mb": peak_rss_mb()}


def side(name: str, trace: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="kvreuse-cache-") as cache:
        args = [sys.executable, __file__, "--side", name, "--trace", trace, "--cache-dir",
                cache]
        out = subprocess.run(args, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", type=float, default=1.0, help="1.0: ~60M tokens")
    p.add_argument("--out", type=Path, default=None,
                   help="directory for the generated traces (kept, reused when present)")
    p.add_argument("--side", choices=("serial", "jobs2", "dask2"), help=argparse.SUPPRESS)
    p.add_argument("--trace", help=argparse.SUPPRESS)
    p.add_argument("--cache-dir", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.side:
        print(json.dumps(run_side(args.side, args.trace, args.cache_dir)))
        return
    out = args.out or Path(tempfile.gettempdir()) / "kvreuse-bench-text"
    out.mkdir(parents=True, exist_ok=True)
    trace = build_traces(out, args.scale)["multi-turn"]
    print(f"{trace.name}: {trace.stat().st_size / 1e6:,.0f} MB (cores: {os.cpu_count()}, "
          f"load average: {os.getloadavg()[0]:.2f})")
    serial = side("serial", str(trace))
    print(f"  {serial['tokens']:,} tokens, {serial['blocks']:,} blocks")
    print(f"  serial cold:            {serial['seconds']:8.2f} s  (CPU {serial['cpu_s']:.1f} s), "
          f"peak {serial['peak_rss_mb']:,.0f} MB")
    for name, label in (("jobs2", "--jobs 2 cold:"), ("dask2", "LocalCluster, 2 workers:")):
        try:
            r = side(name, str(trace))
        except subprocess.CalledProcessError as exc:
            print(f"  {label:23} failed: {exc.stderr.strip().splitlines()[-1]}")
            continue
        same = r["figures"] == serial["figures"] and r["lru_at_1m"] == serial["lru_at_1m"]
        startup = f", cluster start-up {r['startup_s']:.1f} s apart" if r["startup_s"] else ""
        print(f"  {label:23} {r['seconds']:8.2f} s  = {r['seconds'] / serial['seconds']:.2f}x "
              f"serial (client CPU {r['cpu_s']:.1f} s{startup}), client peak "
              f"{r['peak_rss_mb']:,.0f} MB; figures "
              f"{'identical' if same else 'DIFFER'}")


if __name__ == "__main__":
    main()
