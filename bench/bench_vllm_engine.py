"""Benchmark the engine="vllm" LRU pass against the ideal one, in the same run.

    python bench/bench_vllm_engine.py               # bench_lru's synthetic chat trace
    python bench/bench_vllm_engine.py --trace PATH  # any trace kvreuse reads

Prints the full LRU profile (every capacity at once) of the ideal model and of vLLM's
prefix cache (docs/vllm.md), best of --repeat, and their ratio. Goal (issue 12): the vLLM
pass within 2x the ideal pass's time.
"""

from __future__ import annotations

from bench_lru import bench_stream, timed, trace_parser

from pytest_kvreuse.core.lru import lru_profile

TARGET_RATIO = 2.0


def main() -> int:
    parser = trace_parser(__doc__)
    args = parser.parse_args()

    stream = bench_stream(args.trace, args.sessions, args.block_size)
    print(f"blocks: {stream.num_blocks:,} in {stream.num_requests:,} requests "
          f"(block size {stream.block_size})")
    ideal, ideal_wall, ideal_cpu = timed(lambda: lru_profile(stream), args.repeat)
    vllm, vllm_wall, vllm_cpu = timed(lambda: lru_profile(stream, engine="vllm"),
                                      args.repeat)
    print(f"ideal LRU profile:  {ideal_wall:.3f} s wall, {ideal_cpu:.3f} s CPU "
          f"(best of {args.repeat})")
    print(f"vLLM LRU profile:   {vllm_wall:.3f} s wall, {vllm_cpu:.3f} s CPU")
    ratio = vllm_wall / ideal_wall
    print(f"ratio: {ratio:.2f}x wall, {vllm_cpu / ideal_cpu:.2f}x CPU "
          f"(goal <= {TARGET_RATIO:.0f}x): {'yes' if ratio <= TARGET_RATIO else 'NO'}")
    size = 16 * 2**20 // args.block_size * args.block_size
    print(f"hit at {size:,} tokens: ideal {ideal.hit_fraction(size):.4%}, "
          f"vLLM {vllm.hit_fraction(size):.4%}")
    return 0 if ratio <= TARGET_RATIO else 1


if __name__ == "__main__":
    raise SystemExit(main())
