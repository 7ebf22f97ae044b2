"""Bad text traces and options: one clear line naming the file (and line), never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_kvreuse import load_block_stream
from pytest_kvreuse.cli import main
from pytest_kvreuse.errors import KvReuseError, TokenizerError, TraceFormatError
from pytest_kvreuse.text.tokenizer import load_tokenizer


def payloads(*messages_lists):
    return {"data": [{"session_id": "s", "payloads": [{"messages": m} for m in messages_lists]}]}


def load(path: Path, **kw):
    return load_block_stream(path, block_size=4, use_cache=False, **kw)


def one_line(exc: KvReuseError) -> str:
    line = exc.one_line()
    assert "\n" not in line and "Traceback" not in line
    return line


@pytest.mark.parametrize("text, line, fragment", [
    ('{"data": [\n  {"session_id": "a", "payloads": []},\n  {"session_id": "b", "payloads": [}\n]}',
     3, "not valid JSON"),
    ('{"data": [\n  {"payloads": []}\n  {"payloads": []}\n]}', 3, "expected ',' or ']'"),
    ('{"data": [\n  {"payloads": []}\n', 3, "expected"),
    ('{"data": [\n  {"payloads": [{"messages": [{"role": "user", "content": "x"}]}]}\n]}\n  x',
     4, "extra data"),
])
def test_invalid_aiperf_json_names_the_line(tmp_path, text, line, fragment):
    p = tmp_path / "inputs.json"
    p.write_text(text)
    with pytest.raises(TraceFormatError) as err:
        load(p, format="aiperf")
    assert err.value.line == line
    assert fragment in one_line(err.value) and str(p) in one_line(err.value)


def test_invalid_chat_jsonl_names_the_line(tmp_path):
    p = tmp_path / "chat.jsonl"
    p.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n{"messages": [\n')
    with pytest.raises(TraceFormatError) as err:
        load(p)
    assert err.value.line == 2 and "not valid JSON" in one_line(err.value)


@pytest.mark.parametrize("doc, fragment", [
    (payloads([]), "data[0].payloads[0] has no messages"),
    ({"data": [{"payloads": [{"max_tokens": 3}]}]}, "has no 'messages'"),
    (payloads([{"role": "user", "content": 42}]), "'content' must be a string"),
    (payloads([{"role": "user", "content": {"text": "x"}}]), "'content' must be a string"),
    (payloads([{"role": "user", "content": [{"type": "text", "text": 5}]}]), "string 'text'"),
    (payloads(["hello"]), "message 0 must be an object"),
    ({"data": [{"session_id": [1], "payloads": []}]}, "'session_id' must be"),
    ({"data": [{"session_id": "a"}]}, "no 'payloads' list"),
    ({"data": {"a": 1}}, "'data' must be a list"),
    ({"other": []}, "no 'data' list"),
    ({"data": []}, "holds no requests"),
])
def test_bad_payloads(tmp_path, doc, fragment):
    p = tmp_path / "inputs.json"
    p.write_text(json.dumps(doc))
    with pytest.raises(TraceFormatError) as err:
        load(p, format="aiperf")
    assert fragment in one_line(err.value)


@pytest.mark.parametrize("records, fragment", [
    ([{"messages": "hi"}], "'messages' must be a list"),
    ([{"messages": [{"role": "user", "content": 1.5}]}], "'content' must be a string"),
    ([{"messages": [{"role": "user", "content": "x"}], "timestamp": "soon"}], "'timestamp'"),
])
def test_bad_chat_records(tmp_path, records, fragment):
    p = tmp_path / "chat.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in records))
    with pytest.raises(TraceFormatError) as err:
        load(p, format="chat")
    assert fragment in one_line(err.value) and err.value.line == 1


@pytest.mark.parametrize("record, fragment", [
    ({"token_ids": [1, 2.5]}, "must hold integers"),
    ({"token_ids": "1 2 3"}, "'token_ids'"),
    ({"token_ids": [[1], [2]]}, "must hold integers"),
])
def test_bad_token_ids(tmp_path, record, fragment):
    p = tmp_path / "t.jsonl"
    p.write_text(json.dumps(record) + "\n")
    with pytest.raises(TraceFormatError) as err:
        load(p, format="token-ids")
    assert fragment in one_line(err.value)


@pytest.mark.parametrize("fmt, body", [
    ("aiperf", b'{"data": [\n{"payloads": [{"messages": [{"role": "user", '
               b'"content": "caf\xe9"}]}]}]}'),
    ("chat", b'{"messages": [{"role": "user", "content": "ok"}]}\n'
             b'{"messages": [{"role": "user", "content": "caf\xe9"}]}\n'),
])
def test_non_utf8_file(tmp_path, fmt, body):
    p = tmp_path / "bad.json"
    p.write_bytes(body)
    with pytest.raises(TraceFormatError) as err:
        load(p, format=fmt)
    assert "not UTF-8" in one_line(err.value) and err.value.line == 2


@pytest.mark.parametrize("name, fragment", [
    ("no-such-org/no-such-model", "deepseek-v3"),
    ("./missing/tokenizer/dir", "does not exist"),
])
def test_unknown_tokenizer(name, fragment):
    with pytest.raises(TokenizerError) as err:
        load_tokenizer(name)
    assert fragment in one_line(err.value)


def test_unknown_tokenizer_message_names_alternatives():
    with pytest.raises(TokenizerError) as err:
        load_tokenizer("no-such-org/no-such-model")
    line = one_line(err.value)
    assert "no network" in line and "'deepseek-v3'" in line and "directory" in line


def test_directory_without_tokenizer(tmp_path):
    with pytest.raises(TokenizerError) as err:
        load_tokenizer(str(tmp_path))
    assert "tokenizer.json" in one_line(err.value)


def test_unknown_prompt_mode(tmp_path):
    p = tmp_path / "p.jsonl"
    p.write_text('{"prompt": "hello"}\n')
    with pytest.raises(KvReuseError) as err:
        load(p, prompt="fancy")
    assert "raw, chat, per-message" in one_line(err.value)


def test_cli_reports_one_line(tmp_path, capsys):
    p = tmp_path / "inputs.json"
    p.write_text(json.dumps(payloads([{"role": "user", "content": 42}])))
    assert main(["analyze", str(p), "--no-cache"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'content' must be a string" in err
    assert main(["analyze", str(p), "--no-cache", "--tokenizer", "nope/nope"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "deepseek-v3" in err


def test_prompt_must_be_a_string(tmp_path):
    p = tmp_path / "p.jsonl"
    p.write_text('{"prompt": "ok"}\n{"prompt": ["a", "b"]}\n')
    with pytest.raises(TraceFormatError) as err:
        load(p, format="prompt")
    assert err.value.line == 2 and "string 'prompt'" in one_line(err.value)


def test_local_directory_tokenizer_quiet_and_offline(tmp_path, deepseek, capfd, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    deepseek.hf.save_pretrained(tmp_path / "tok")
    capfd.readouterr()
    local = load_tokenizer(str(tmp_path / "tok"))
    text = "Local tokenizers, 123 digits and 中文 too."
    assert local.encode_batch([text])[0].tolist() == deepseek.encode_batch([text])[0].tolist()
    assert local.safe_cuts
    out = capfd.readouterr()
    assert out.out == "" and out.err == ""
    import os

    assert "HF_HUB_OFFLINE" not in os.environ  # set only while loading
