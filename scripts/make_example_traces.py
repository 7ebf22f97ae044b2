"""Write the bundled example traces into example_traces/ (deterministic: same bytes each run)."""

from __future__ import annotations

import argparse
from pathlib import Path

from pytest_kvreuse.synthetic import Workload, generate, write_mooncake

HERE = Path(__file__).resolve().parent.parent / "example_traces"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    chat = generate(Workload(sessions=400, seed=1))
    write_mooncake(chat, args.out / "chat_sessions.mooncake.jsonl")
    for p in sorted(args.out.iterdir()):
        print(f"{p.name}: {p.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
