"""OPT at every cache size (one pass) against libCacheSim's Belady at one size, same run.

    PYTHONPATH=. /work/benchvenv/bin/python bench/bench_opt.py            # ~2.2M blocks
    PYTHONPATH=. /work/benchvenv/bin/python bench/bench_opt.py --sessions 500

Needs libcachesim (bench-only: ``pip install libcachesim``). Uses bench_lru.py's synthetic
chat trace, feeds libCacheSim the same tail-first touch stream, prints both timings, the
hits at 12 sizes, checks Belady's integer at its size, and, when ../shared is present, that
Belady gives section 6's figures on the Mooncake trace. Goal: the OPT pass for all 12 sizes
in less time than libCacheSim's Belady for one.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from pytest_kvreuse.core.lru import previous_touch, touch_order
from pytest_kvreuse.core.opt import opt_profile
from pytest_kvreuse.core.policies import policy_hits
from pytest_kvreuse.loaders.stream import load_block_stream
from pytest_kvreuse.synthetic import Workload, generate, write_mooncake

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "traces"
SECTION6 = {345_792: 224_820, 1_000_000: 365_992, 4_000_000: 576_777, 16_000_000: 622_601}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=5000)
    parser.add_argument("--block-size", type=int, default=64)
    parser.add_argument("--no-shared", action="store_true", help="skip the Mooncake check")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "chat.mooncake.jsonl"
        write_mooncake(generate(Workload(sessions=args.sessions, seed=4)), path)
        stream = load_block_stream(path, block_size=args.block_size)
    print(f"blocks: {stream.num_blocks:,} in {stream.num_requests:,} requests")
    # The engine steps once per run of re-touched prefix (core/opt.py): how many there are.
    keys = stream.keys[touch_order(stream)]
    prev = previous_touch(keys)
    t = np.flatnonzero((prev >= 0) & (prev != np.arange(keys.size) - 1))
    p = prev[t]
    runs = 1 + int(((t[1:] != t[:-1] + 1) | (p[1:] != p[:-1] + 1)).sum()) if t.size else 0
    print(f"reuse touches: {t.size:,} in {runs:,} runs (before cutting runs longer than "
          "their gap)")

    start = time.perf_counter()
    prof = opt_profile(stream)
    opt_s = time.perf_counter() - start
    top = max(2, int(prof.distances[-1]) + 2) if prof.distances.size else 2
    sizes = np.unique(np.geomspace(16, top, 12).astype(np.int64)) * stream.block_size
    hits = [prof.hits(int(c)) for c in sizes]
    print(f"OPT pass, {sizes.size} sizes: {opt_s:.2f} s")
    for c, h in zip(sizes.tolist(), hits, strict=True):
        print(f"  C = {c:>12,} tokens: {h:>10,} hits")

    one = int(sizes[len(sizes) // 2])
    start = time.perf_counter()
    belady = policy_hits(stream, "Belady", one)
    lcs_s = time.perf_counter() - start
    print(f"libCacheSim Belady, 1 size (C = {one:,}): {lcs_s:.2f} s, {belady:,} hits")
    ok = belady == prof.hits(one)
    print(f"same hits: {'yes' if ok else 'NO'}; all {sizes.size} OPT sizes faster than one "
          f"Belady run: {'yes' if opt_s < lcs_s else 'NO'} ({opt_s / lcs_s:.2f}x its time)")

    if SHARED.is_dir() and not args.no_shared:
        moon = load_block_stream(SHARED / "mooncake_synthetic_trace.jsonl", block_size=64)
        for c, want in SECTION6.items():
            got = policy_hits(moon, "Belady", c)
            print(f"Mooncake, libCacheSim Belady at {c:,}: {got:,} "
                  f"(section 6: {want:,}) {'ok' if got == want else 'MISMATCH'}")
            ok &= got == want
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
