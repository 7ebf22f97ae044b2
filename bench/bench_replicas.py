"""Benchmark prefix routing over replicas against the tests' OrderedDict oracle, in one run.

    python bench/bench_replicas.py                  # the 12,000-request, 2.2M-block chat trace
    python bench/bench_replicas.py --sessions 5000  # bench_lru.py's trace (22,583 requests)
    python bench/bench_replicas.py --trace PATH     # any trace kvreuse reads

Routes every request to one of --replicas replicas under load-bounded prefix routing (each
replica a tail-first LRU cache of --gpu-kv-cache-size tokens) and counts the hits: the
engine (pytest_kvreuse.core.replicas, best of --repeat, wall and CPU) beside the oracle
of tests/oracle_replicas.py (one OrderedDict per replica, section 8 read literally),
checks that both route every request alike and hit alike, and prints the ratio. Also
times round-robin routing (the partitioned stack-distance pass) against the oracle.
Goal (issue 14): prefix routing at least 5x faster than the oracle.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from pytest_kvreuse.core.replicas import prefix_replicas, replica_touches, route
from pytest_kvreuse.loaders.stream import load_block_stream
from pytest_kvreuse.synthetic import Workload, generate, write_mooncake

ROOT = Path(__file__).resolve().parents[1]
# The tests' oracle, the conversation-sized workload of bench_intervals.py (12,000
# requests, 2.2 million blocks) and bench_lru.py's timer, by path: none is in the package.
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "bench")]
from bench_intervals import BENCH_WORKLOAD  # noqa: E402
from bench_lru import timed  # noqa: E402
from oracle_replicas import requests_of, simulate  # noqa: E402

TARGET_RATIO = 5.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trace", type=Path, help="trace to measure (default: synthetic)")
    parser.add_argument("--sessions", type=int, default=None,
                        help="bench_lru.py's synthetic trace of this many sessions instead "
                             "(5000: 22,583 requests, 2.2 million blocks)")
    parser.add_argument("--block-size", type=int, default=64)
    parser.add_argument("--replicas", type=int, default=8)
    parser.add_argument("--gpu-kv-cache-size", type=int, default=1_000_000,
                        help="tokens per replica (default: 1,000,000)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-round-robin", dest="round_robin", action="store_false",
                        help="skip the round-robin comparison")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = args.trace
        if path is None:
            path = Path(tmp) / "chat.mooncake.jsonl"
            start = time.perf_counter()
            workload = (Workload(**BENCH_WORKLOAD) if args.sessions is None
                        else Workload(sessions=args.sessions, seed=4))
            write_mooncake(generate(workload), path)
            print(f"synthetic trace: {workload.sessions:,} sessions, "
                  f"{time.perf_counter() - start:.1f} s to write")
        stream = load_block_stream(path, block_size=args.block_size)
    n, m = args.replicas, args.gpu_kv_cache_size // args.block_size
    print(f"blocks: {stream.num_blocks:,} in {stream.num_requests:,} requests (block size "
          f"{stream.block_size}); {n} replicas of {args.gpu_kv_cache_size:,} tokens "
          f"({m:,} blocks) each")
    requests = requests_of(stream)

    (assignment, hits), wall, cpu = timed(lambda: prefix_replicas(stream, n, m),
                                          args.repeat)
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    want = simulate(requests, n, m, "prefix")
    oracle_wall = time.perf_counter() - start_wall
    oracle_cpu = time.process_time() - start_cpu
    hit = int(hits.sum()) * stream.block_size / stream.total_tokens
    print(f"prefix routing, engine:   {wall:.3f} s wall, {cpu:.3f} s CPU (best of "
          f"{args.repeat}); hit {hit * 100:.4f} %")
    print(f"prefix routing, oracle:   {oracle_wall:.3f} s wall, {oracle_cpu:.3f} s CPU "
          "(OrderedDict per replica)")
    if assignment.tolist() != want["assignment"] or hits.tolist() != want["hits"]:
        print("MISMATCH: the engine and the oracle route or hit differently")
        return 1
    print("routing and hits agree on every request")
    ratio_wall, ratio_cpu = oracle_wall / wall, oracle_cpu / cpu
    print(f"speed-up over the oracle: {ratio_wall:.1f}x wall, {ratio_cpu:.1f}x CPU "
          f"(goal >= {TARGET_RATIO:.0f}x)")

    if args.round_robin:
        def partitioned():
            return replica_touches(stream, route(stream, n, "round-robin"), n,
                                   "round-robin").hits(m)

        rr, rr_wall, rr_cpu = timed(partitioned, args.repeat)
        start_wall, start_cpu = time.perf_counter(), time.process_time()
        rr_want = simulate(requests, n, m, "round-robin")
        rr_oracle_wall = time.perf_counter() - start_wall
        rr_oracle_cpu = time.process_time() - start_cpu
        same = rr.tolist() == rr_want["hits"]
        print(f"round-robin, one partitioned pass: {rr_wall:.3f} s wall, {rr_cpu:.3f} s CPU; "
              f"oracle {rr_oracle_wall:.3f} s wall, {rr_oracle_cpu:.3f} s CPU "
              f"({rr_oracle_wall / rr_wall:.1f}x wall); hits "
              + ("agree" if same else "DIFFER"))
        if not same:
            return 1
    # Both clocks: on a shared machine wall time also measures the neighbours.
    ok = min(ratio_wall, ratio_cpu) >= TARGET_RATIO
    print(f"goal: prefix routing >= {TARGET_RATIO:.0f}x the oracle (wall and CPU): "
          f"{'yes' if ok else 'NO'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
