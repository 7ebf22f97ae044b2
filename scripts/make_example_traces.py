"""Write the bundled example traces into example_traces/ (deterministic: same bytes each run)."""

from __future__ import annotations

import argparse
from pathlib import Path

import orjson

from pytest_kvreuse.atomic import atomic_write_bytes
from pytest_kvreuse.synthetic import (
    Workload,
    generate,
    weka_conversations,
    write_aiperf,
    write_chat,
    write_mooncake,
    write_mooncake_trace,
)

HERE = Path(__file__).resolve().parent.parent / "example_traces"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    chat = generate(Workload(sessions=400, seed=1))
    write_mooncake(chat, args.out / "chat_sessions.mooncake.jsonl")
    # Real text (DeepSeek-V3 one-token words), kept under 2 MB: short multi-turn sessions
    # sharing three system prompts and a few documents.
    text_chat = generate(Workload(sessions=70, system_prompts=3, system_tokens=(200, 600),
                                  turns=(1, 6), user_tokens=(20, 120), reply_tokens=(30, 160),
                                  document_share=0.25, document_tokens=(400, 1200),
                                  documents=4, seed=3))
    write_aiperf(text_chat, args.out / "chat_sessions.aiperf.json")
    # aiperf's mooncake_trace form of a few sessions: session_id and delay per turn.
    small = generate(Workload(sessions=40, seed=5))
    write_mooncake_trace(small, args.out / "chat_sessions.mooncake_trace.jsonl")
    # Agentic conversations as Weka / kv-cache-tester files, one per conversation, some
    # turns sent by subagents: a directory is one trace.
    weka_dir = args.out / "agentic.weka"
    weka_dir.mkdir(exist_ok=True)
    for old in weka_dir.glob("*.json"):
        old.unlink()
    agentic = generate(Workload(sessions=6, turns=(4, 10), seed=7))
    for doc in weka_conversations(agentic, 64, subagent_every=4):
        atomic_write_bytes(weka_dir / f"{doc['id']}.json", orjson.dumps(doc) + b"\n")
    # Chat sessions whose system prompt ends with the time of each request: no turn
    # re-sends its session's previous prompt past it (`kvreuse analyze --why` names it).
    clock_chat = generate(Workload(sessions=24, system_prompts=2, system_tokens=(150, 400),
                                   turns=(2, 5), user_tokens=(20, 80),
                                   reply_tokens=(30, 100), document_share=0.0, seed=7))
    write_chat(clock_chat, args.out / "clock_sessions.chat.jsonl", clock=True)
    for p in sorted(args.out.iterdir()):
        size = sum(f.stat().st_size for f in p.iterdir()) if p.is_dir() else p.stat().st_size
        print(f"{p.name}: {size:,} bytes")


if __name__ == "__main__":
    main()
