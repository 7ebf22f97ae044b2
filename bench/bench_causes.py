"""Where reuse comes from and where it breaks (docs/causes.md): the block-level passes
against the interval pass every analysis makes, on the same stream, same run.

    python bench/bench_causes.py                 # 2,400 sessions, about 2.2M blocks
    python bench/bench_causes.py --sessions 600  # smaller

The stream is built straight from the synthetic workload (prefix hash ids, one session per
conversation), so no loading or tokenizing is timed. Target: ``top_prefixes``,
``reuse_by_category`` and ``turn_breaks`` each within a small multiple of the interval pass
(they are a sort or a few gathers over the blocks, never a loop per block).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from pytest_kvreuse.core.analysis import ReuseAnalysis
from pytest_kvreuse.core.blocks import BlockStream, dense_ids, request_index
from pytest_kvreuse.core.causes import category_breakdown, previous_occurrence, top_prefixes
from pytest_kvreuse.core.causes import turn_breaks as breaks_of
from pytest_kvreuse.synthetic import Workload, generate, prefix_hash_ids


def build(sessions: int, block: int = 64) -> BlockStream:
    requests = generate(Workload(sessions=sessions, turns=(1, 9), document_share=0.6,
                                 document_tokens=(4000, 20000), documents=40, seed=7))
    ids = list(prefix_hash_ids(requests, block))
    # Full blocks only: a request's last id covers its partial tail.
    full = [i[:r.input_length // block] for i, r in zip(ids, requests, strict=True)]
    counts = np.asarray([len(f) for f in full], dtype=np.int64)
    keys, _ = dense_ids(np.asarray([k for f in full for k in f], dtype=np.int64))
    return BlockStream(keys=keys, request=request_index(counts), block_size=block,
                       prompt_tokens=np.asarray([r.input_length for r in requests]),
                       timestamps=np.asarray([r.timestamp_ms / 1000 for r in requests]),
                       sessions=np.asarray([r.session for r in requests], dtype=np.int64))


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=2400)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    stream = build(args.sessions)
    labels = np.where(stream.sessions % 3 == 0, "text", "search")
    print(f"stream: {stream.num_requests:,} requests, {stream.num_blocks:,} blocks")
    base = best(lambda: ReuseAnalysis(stream), args.repeat)
    print(f"interval pass (baseline)     {base:8.3f} s")
    prev = previous_occurrence(stream.keys)
    for name, fn in (
            ("previous_occurrence", lambda: previous_occurrence(stream.keys)),
            ("top_prefixes(10)", lambda: top_prefixes(stream, 10, prev=prev)),
            ("category_breakdown", lambda: category_breakdown(stream, labels, sizes=[345_792],
                                                              prev=prev)),
            ("turn_breaks", lambda: breaks_of(stream))):
        t = best(fn, args.repeat)
        print(f"{name:<28} {t:8.3f} s  ({t / base:.2f}x the interval pass)")


if __name__ == "__main__":
    main()
