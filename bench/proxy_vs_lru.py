"""The interval proxy against the exact LRU answer, size by size (the README's table).

    python bench/proxy_vs_lru.py                                   # the bundled example
    python bench/proxy_vs_lru.py ../shared/traces/mooncake_synthetic_trace.jsonl \
        --sizes 345792 4000000
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pytest_kvreuse import analyze

EXAMPLE = Path(__file__).resolve().parents[1] / "example_traces" / "chat_sessions.mooncake.jsonl"
SIZES = (4_096, 16_384, 65_536, 262_144, 345_792, 1_048_576, 4_194_304)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("trace", nargs="?", default=str(EXAMPLE))
    p.add_argument("--block-size", type=int, default=64)
    p.add_argument("--sizes", type=int, nargs="+", default=list(SIZES),
                   help="GPU cache sizes in tokens")
    args = p.parse_args()
    a = analyze(args.trace, block_size=args.block_size)
    print(f"{Path(args.trace).name}: {a.num_requests:,} requests, {a.total_tokens:,} tokens, "
          f"{a.unique_blocks:,} unique blocks; reused {a.reused_fraction:.2%}, "
          f"compulsory {a.compulsory_fraction:.2%}")
    print("| GPU cache C (tokens) | interval proxy F(C) | LRU offloadable | LRU hit |")
    print("|---:|---:|---:|---:|")
    for c in args.sizes:
        print(f"| {c:,} | {a.offloadable_fraction(c):.2%} | "
              f"{a.lru_offloadable_fraction(c):.2%} | {a.lru_hit_fraction(c):.2%} |")


if __name__ == "__main__":
    main()
