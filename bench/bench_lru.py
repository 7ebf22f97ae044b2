"""Benchmark the exact LRU pass against a plain OrderedDict replay, in the same run.

    python bench/bench_lru.py                  # a synthetic ~2.2-million-block chat trace
    python bench/bench_lru.py --trace PATH     # any trace kvreuse reads

Prints the stack-distance pass (best of --repeat, wall and CPU), a plain OrderedDict LRU
replay at --capacities cache sizes, their ratio, and checks that both give the same hits.
Goals (issue 4): the pass under 1.5 s on 2.2 million blocks, and at least 10x faster than
the replay of 10 capacities (the pass answers every capacity at once).
"""

from __future__ import annotations

import argparse
import tempfile
import time
import tracemalloc
from collections import OrderedDict
from pathlib import Path

import numpy as np

from pytest_kvreuse.core.lru import (
    COLD,
    lru_profile,
    sequence_stack_distances,
    stack_distances,
    touch_order,
)
from pytest_kvreuse.loaders.stream import load_block_stream
from pytest_kvreuse.synthetic import Workload, generate, write_mooncake

TARGET_S = 1.5
TARGET_RATIO = 10.0


def replay_hits(touch_keys: list[int], capacity_blocks: int) -> int:
    """The baseline: a plain LRU cache of ``capacity_blocks`` blocks, touch by touch."""
    cache: OrderedDict[int, None] = OrderedDict()
    hits = 0
    for key in touch_keys:
        if key in cache:
            hits += 1
            cache.move_to_end(key)
        else:
            cache[key] = None
            if len(cache) > capacity_blocks:
                cache.popitem(last=False)
    return hits


def timed(fn, repeat: int):
    best_wall = best_cpu = float("inf")
    out = None
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        out = fn()
        best_wall = min(best_wall, time.perf_counter() - wall)
        best_cpu = min(best_cpu, time.process_time() - cpu)
    return out, best_wall, best_cpu


def bench_stream(trace: Path | None, sessions: int, block_size: int):
    """The benchmark's stream: ``trace``, or the synthetic chat trace of ``sessions``."""
    with tempfile.TemporaryDirectory() as tmp:
        path = trace
        if path is None:
            path = Path(tmp) / "chat.mooncake.jsonl"
            start = time.perf_counter()
            write_mooncake(generate(Workload(sessions=sessions, seed=4)), path)
            print(f"synthetic trace: {sessions:,} sessions, "
                  f"{time.perf_counter() - start:.1f} s to write")
        return load_block_stream(path, block_size=block_size)


def trace_parser(doc: str) -> argparse.ArgumentParser:
    """The flags that choose the benchmark's stream (:func:`bench_stream`), and --repeat."""
    parser = argparse.ArgumentParser(description=doc,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trace", type=Path, help="trace to measure (default: synthetic)")
    parser.add_argument("--sessions", type=int, default=5000,
                        help="sessions of the synthetic trace (5000: ~2.2 million blocks)")
    parser.add_argument("--block-size", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3)
    return parser


def main() -> int:
    parser = trace_parser(__doc__)
    parser.add_argument("--capacities", type=int, default=10,
                        help="cache sizes the OrderedDict replay runs (default: 10)")
    parser.add_argument("--worst-case", action="store_true",
                        help="also time the pass on random keys of the same length: no "
                             "re-touched prefix runs to merge")
    args = parser.parse_args()

    stream = bench_stream(args.trace, args.sessions, args.block_size)
    n = stream.num_blocks
    print(f"blocks: {n:,} in {stream.num_requests:,} requests (block size {stream.block_size})")

    dist, pass_wall, pass_cpu = timed(lambda: stack_distances(stream), args.repeat)
    profile, prof_wall, prof_cpu = timed(lambda: lru_profile(stream), args.repeat)
    tracemalloc.start()
    lru_profile(stream)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    reuses = int(np.count_nonzero(dist != COLD))
    print(f"reuse touches: {reuses:,}")
    print(f"stack-distance pass:      {pass_wall:.3f} s wall, {pass_cpu:.3f} s CPU "
          f"(best of {args.repeat})")
    print(f"full LRU profile:         {prof_wall:.3f} s wall, {prof_cpu:.3f} s CPU "
          f"(pass + sorting for every capacity), peak {peak / 2**20:.0f} MiB")

    if args.worst_case:
        rng = np.random.default_rng(0)
        noise = rng.integers(0, max(1, n // 4), n)
        _, wall, cpu = timed(lambda: sequence_stack_distances(noise), 1)
        print(f"worst case, random keys:  {wall:.3f} s wall, {cpu:.3f} s CPU")

    finite = np.sort(dist[dist != COLD])
    top = max(2, int(finite[-1]) + 2) if finite.size else 2
    capacities = np.unique(np.geomspace(16, top, args.capacities).astype(np.int64))
    touch_keys = stream.keys[touch_order(stream)].tolist()
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    replayed = [replay_hits(touch_keys, int(m)) for m in capacities]
    replay_wall = time.perf_counter() - start_wall
    replay_cpu = time.process_time() - start_cpu
    print(f"OrderedDict replay:       {replay_wall:.3f} s wall, {replay_cpu:.3f} s CPU "
          f"({capacities.size} capacities, {capacities[0]:,} to {capacities[-1]:,} blocks)")
    exact = [int(np.searchsorted(finite, m, side="left")) for m in capacities]
    if exact != replayed:
        print(f"MISMATCH: stack distances {exact} != replay {replayed}")
        return 1
    print("hits agree at every replayed capacity")

    ratio_wall = replay_wall / pass_wall
    ratio_cpu = replay_cpu / pass_cpu
    print(f"speed-up over the replay: {ratio_wall:.1f}x wall, {ratio_cpu:.1f}x CPU "
          f"(goal >= {TARGET_RATIO:.0f}x)")
    ok = pass_wall < TARGET_S and ratio_wall >= TARGET_RATIO
    print(f"goals: pass < {TARGET_S} s: {'yes' if pass_wall < TARGET_S else 'NO'}; "
          f">= {TARGET_RATIO:.0f}x: {'yes' if ratio_wall >= TARGET_RATIO else 'NO'}"
          + ("" if n >= 2_000_000 else f" (only {n:,} blocks)"))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
