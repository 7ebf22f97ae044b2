"""Hub names whose tokenizer is the built-in one run offline; every other name still needs
its files on disk."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_kvreuse.api import analyze
from pytest_kvreuse.cli import main
from pytest_kvreuse.text import tokenizer as tk

REPO = Path(__file__).resolve().parents[1]
TRACE = REPO / "example_traces" / "chat_sessions.aiperf.json"


@pytest.fixture(autouse=True)
def empty_hub_cache(tmp_path, monkeypatch):
    """No model in the Hugging Face cache, whatever this machine has downloaded."""
    for var in ("HF_HOME", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        monkeypatch.setenv(var, str(tmp_path / "hf"))
    monkeypatch.setattr(tk, "_NOTED", set())


@pytest.mark.parametrize("name", sorted(tk.BUILTIN_ALIASES))
def test_alias_runs_the_original_command_offline(name, tmp_path, capsys):
    out = tmp_path / "p.png"
    code = main(["--input-file", str(TRACE), "--model-name", name, "--block-size", "64",
                 "--gpu-kv-cache-size", "345792", "--output", str(out), "--json",
                 str(tmp_path / "a.json")])
    err = capsys.readouterr().err
    assert code == 0, err
    assert out.stat().st_size > 1000
    notes = [line for line in err.splitlines() if name in line]
    assert len(notes) == 1 and notes[0].startswith("kvreuse: note: ")
    assert "deepseek-v3" in notes[0]
    builtin = analyze(TRACE, block_size=64, tokenizer="deepseek-v3", progress=False)
    figures = json.loads((tmp_path / "a.json").read_text())["traces"][0]["figures"]
    assert figures["num_blocks"] == builtin.num_blocks
    assert figures["reused_fraction"] == pytest.approx(builtin.reused_fraction)


def test_alias_note_is_printed_once(capsys):
    name = sorted(tk.BUILTIN_ALIASES)[0]
    for _ in range(3):
        assert tk.resolve_tokenizer_dir(name) == tk.resolve_tokenizer_dir("deepseek-v3")
        tk.tokenizer_identity(name)
    err = capsys.readouterr().err
    assert err.count(name) == 1


def test_alias_shares_the_builtin_cache_key():
    name = sorted(tk.BUILTIN_ALIASES)[0]
    assert tk.tokenizer_identity(name) == tk.tokenizer_identity("deepseek-v3")


@pytest.mark.parametrize("name", ["deepseek-ai/DeepSeek-V2", "deepseek-ai/DeepSeek-V3.2",
                                  "Qwen/Qwen3-8B"])
def test_unverified_names_keep_the_offline_error(name, tmp_path, capsys):
    code = main(["--input-file", str(TRACE), "--model-name", name, "--block-size", "64",
                 "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err
    assert "not in the Hugging Face cache" in lines[0]


def test_alias_table_is_data_naming_only_the_builtin():
    assert tk.BUILTIN_ALIASES
    assert {a.target for a in tk.BUILTIN_ALIASES.values()} == {tk.DEFAULT_TOKENIZER}
    assert all(n.startswith("deepseek-ai/DeepSeek-") for n in tk.BUILTIN_ALIASES)


@pytest.mark.parametrize("name", sorted(n for n, a in tk.BUILTIN_ALIASES.items() if a.differs))
def test_alias_with_another_chat_template_refuses_chat_prompts(name, tmp_path, capsys):
    code = main(["analyze", str(TRACE), "--tokenizer", name, "--prompt", "chat", "-q",
                 "--no-cache"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "needs" in err and "chat template" in err and "--prompt raw" in err


def _hub_copy(name: str) -> Path | None:
    """A copy of ``name``'s published tokenizer.json, if this machine has one: in
    ``$KVREUSE_TOKENIZER_COPIES/<name>/`` (scripts/compare_tokenizer_copies.py --keep DIR
    makes one) or a Hugging Face hub cache."""
    import os

    copies = os.environ.get("KVREUSE_TOKENIZER_COPIES")
    if copies and (Path(copies) / name / "tokenizer.json").is_file():
        return Path(copies) / name / "tokenizer.json"
    roots = [Path(os.environ.get("KVREUSE_HUB_CACHE", Path.home() / ".cache" / "huggingface"
                                 / "hub"))]
    for root in roots:
        snap = root / f"models--{name.replace('/', '--')}" / "snapshots"
        for f in sorted(snap.glob("*/tokenizer.json")) if snap.is_dir() else []:
            return f
    return None


@pytest.mark.parametrize("name", sorted(tk.BUILTIN_ALIASES))
def test_alias_matches_a_downloaded_copy(name, shared_traces):
    """Where a real copy of the hub tokenizer exists: same vocabulary, merges and ids."""
    copy = _hub_copy(name)
    if copy is None:
        pytest.skip(f"no downloaded tokenizer.json of {name}")
    from tokenizers import Tokenizer

    ours = json.loads((tk.resolve_tokenizer_dir("deepseek-v3") / "tokenizer.json").read_text())
    theirs = json.loads(copy.read_text())
    assert ours["model"]["vocab"] == theirs["model"]["vocab"]
    assert ours["model"]["merges"] == theirs["model"]["merges"]
    assert ours["pre_tokenizer"] == theirs["pre_tokenizer"]
    differs = tk.BUILTIN_ALIASES[name].differs
    if not differs:
        assert ours["added_tokens"] == theirs["added_tokens"]
    a = Tokenizer.from_file(str(tk.resolve_tokenizer_dir("deepseek-v3") / "tokenizer.json"))
    b = Tokenizer.from_file(str(copy))
    doc = json.loads((shared_traces / "synthetic_head120.aiperf.json").read_text())
    texts = [m["content"] for s in doc["data"] for p in s["payloads"] for m in p["messages"]
             if isinstance(m.get("content"), str)]
    assert texts
    for x, y in zip(a.encode_batch(texts, add_special_tokens=False),
                    b.encode_batch(texts, add_special_tokens=False), strict=True):
        assert x.ids == y.ids
