"""Big inputs: time and peak memory of analysing a ~1 GB Mooncake JSONL and a ~400 MB aiperf
inputs.json, each in a fresh process.

    python bench/bench_big_inputs.py                         # both, full size (slow)
    python bench/bench_big_inputs.py --mooncake-mb 50 --aiperf-scale 0 --block-size 512 64
    python bench/bench_big_inputs.py --mooncake-mb 0 --aiperf-scale 1

(a) Mooncake: shifted copies of one synthetic trace from :mod:`pytest_kvreuse.synthetic`
(copy ``k`` adds ``k * (max id + 1)`` to every hash id and ``k * span`` to every
timestamp), written line by line: never whole in memory. (b) aiperf: the generator's
multi-turn workload of real text (``write_aiperf``, as ``bench/bench_text.py`` at scale 1,
~393 MB), analysed cold (empty cache).

Each analysis runs in a child started from this small process, never from one that held a
trace; the child reports its own peak RSS (VmHWM). Memory targets: engine issue 600 MB
(set for a 2.2M-block trace), text issue 1.2 GB. Bytes per block are printed so a run at
another size can be compared.

Measured (2 cores, 2026-11-30, `python bench/bench_big_inputs.py --aiperf-scale 0`):
1,001 MB Mooncake file, 5,981,170 requests --
B=512: 60.5M blocks, 16.9 s, peak 1,819 MB (31.5 bytes per block); B=64: 505M blocks,
48.8 s, peak 10,612 MB (22.0 bytes per block). 393 MB inputs.json, cold
(`--mooncake-mb 0 --aiperf-scale 1`): 10.5 s, peak 340 MB.
Again 2026-12-02, with the `[fast]` extra (the scanner of docs/formats.md): B=512 11.2 s,
peak 1,820 MB; B=64 40.8 s, peak 11,413 MB. The same B=512 run with the per-line reader
took 42 to 47 s that day (`bench/bench_parse.py`).
The 600 MB engine target holds up to ~25M blocks at B=64 (it was set for 2.2M blocks).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# The child's own peak (VmHWM): Linux carries a parent's ru_maxrss across fork and exec.
from bench_text import peak_rss_mb  # noqa: E402 - a sibling script (bench/ is on sys.path)

ROOT = Path(__file__).resolve().parents[1]
BASE_SESSIONS = 2000
# bench_text.py's multi-turn workload: 2640 sessions (seed 11) make ~393 MB, ~60M tokens.
AIPERF_SESSIONS_AT_SCALE_1 = 2640


def write_big_mooncake(path: Path, target_bytes: int) -> dict:
    """Shifted copies of a synthetic Mooncake trace until ``target_bytes`` are written."""
    import numpy as np
    import orjson

    from pytest_kvreuse.atomic import atomic_open
    from pytest_kvreuse.synthetic import Workload, generate, prefix_hash_ids

    requests = generate(Workload(sessions=BASE_SESSIONS, seed=5))
    ids = [np.asarray(h, dtype=np.int64) for h in prefix_hash_ids(requests, 512)]
    id_span = int(max(int(a.max()) for a in ids if a.size)) + 1
    time_span = requests[-1].timestamp_ms + 1000
    copies = lines = 0
    written = 0
    with atomic_open(path) as fh:
        while written < target_bytes:
            shift, t0 = copies * id_span, copies * time_span
            chunk = b"".join(
                orjson.dumps({"timestamp": r.timestamp_ms + t0, "input_length": r.input_length,
                              "output_length": r.output_tokens, "hash_ids": h + shift},
                             option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE)
                for r, h in zip(requests, ids, strict=True))
            fh.write(chunk)
            written += len(chunk)
            copies += 1
            lines += len(requests)
    return {"copies": copies, "requests": lines}


def child(kind: str, trace: str, block_size: int, cache_dir: str) -> dict:
    from pytest_kvreuse import analyze

    start = time.perf_counter()
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    a = analyze(trace, block_size=block_size, cache_dir=cache_dir, progress=False)
    offloadable = a.offloadable_fraction(345_792)
    seconds = time.perf_counter() - start
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    return {"seconds": seconds,
            "cpu_s": cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime,
            "requests": a.num_requests, "blocks": a.num_blocks,
            "unique_blocks": a.unique_blocks, "reuses": a.reuse_count,
            "offloadable_at_345792": offloadable, "timings": a.timings,
            "peak_rss_mb": peak_rss_mb()}


def run_child(kind: str, trace: Path, block_size: int, cache_dir: str) -> dict:
    args = [sys.executable, __file__, "--child", kind, "--trace", str(trace),
            "--child-block-size", str(block_size), "--cache-dir", cache_dir]
    out = subprocess.run(args, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def report(name: str, trace: Path, block_size: int, r: dict, target_mb: int) -> None:
    size = trace.stat().st_size
    per_block = r["peak_rss_mb"] * 2**20 / max(r["blocks"], 1)
    print(f"{name} at B={block_size}: {size / 1e6:,.0f} MB file, {r['requests']:,} requests, "
          f"{r['blocks']:,} blocks ({r['unique_blocks']:,} unique), {r['reuses']:,} reuses")
    print(f"  {r['seconds']:.1f} s wall, {r['cpu_s']:.1f} s CPU "
          f"({', '.join(f'{k} {v:.1f} s' for k, v in r['timings'].items())}); "
          f"peak RSS {r['peak_rss_mb']:,.0f} MB (target {target_mb:,} MB), "
          f"{per_block:.1f} bytes per block; offloadable at 345,792 tokens "
          f"{r['offloadable_at_345792']:.4f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mooncake-mb", type=float, default=1000,
                   help="size of the Mooncake trace in MB (0: skip; default 1000)")
    p.add_argument("--block-size", type=int, nargs="+", default=[512, 64],
                   help="block sizes to analyse the Mooncake trace at (default: 512 64)")
    p.add_argument("--aiperf-scale", type=float, default=1.0,
                   help="aiperf trace at bench_text's scale (1: ~393 MB; 0: skip)")
    p.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "kvreuse-big",
                   help="directory for the generated traces (kept, reused when present)")
    p.add_argument("--child", choices=("mooncake", "aiperf"), help=argparse.SUPPRESS)
    p.add_argument("--trace", help=argparse.SUPPRESS)
    p.add_argument("--child-block-size", type=int, help=argparse.SUPPRESS)
    p.add_argument("--cache-dir", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.trace, args.child_block_size, args.cache_dir)))
        return

    args.out.mkdir(parents=True, exist_ok=True)
    print(f"cores: {os.cpu_count()}, load average: {os.getloadavg()[0]:.2f}")
    if args.mooncake_mb:
        trace = args.out / f"mooncake_{args.mooncake_mb:g}MB.jsonl"
        if not trace.exists():
            # Generated in a child too: this process stays small for the analyses' sake.
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c",
                            "import sys; sys.path.insert(0, sys.argv[1]); "
                            "import bench_big_inputs as b; from pathlib import Path; "
                            "print(b.write_big_mooncake(Path(sys.argv[2]), int(sys.argv[3])))",
                            str(Path(__file__).parent), str(trace),
                            str(int(args.mooncake_mb * 1e6))], check=True)
            print(f"generated {trace} in {time.perf_counter() - start:.0f} s")
        for b in args.block_size:
            with tempfile.TemporaryDirectory(prefix="kvreuse-cache-") as cache:
                report("mooncake", trace, b, run_child("mooncake", trace, b, cache), 600)
    if args.aiperf_scale:
        trace = args.out / f"multiturn_{args.aiperf_scale:g}.aiperf.json"
        if not trace.exists():
            start = time.perf_counter()
            sessions = max(4, round(AIPERF_SESSIONS_AT_SCALE_1 * args.aiperf_scale))
            subprocess.run([sys.executable, "-c",
                            "import sys; from pytest_kvreuse.synthetic import Workload, "
                            "generate, write_aiperf; write_aiperf(generate(Workload("
                            "sessions=int(sys.argv[1]), seed=11)), sys.argv[2])",
                            str(sessions), str(trace)], check=True)
            print(f"generated {trace} in {time.perf_counter() - start:.0f} s")
        with tempfile.TemporaryDirectory(prefix="kvreuse-cache-") as cache:
            report("aiperf (cold)", trace, 64, run_child("aiperf", trace, 64, cache), 1200)


if __name__ == "__main__":
    main()
