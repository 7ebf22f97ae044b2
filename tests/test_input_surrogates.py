"""A lone surrogate (the JSON escape \\ud800 with no low half) is not Unicode text: in any
text field of any text format it is one KvReuseError line naming the file and line, through
the API, the CLI (exit 2) and a manifest item, never a UnicodeEncodeError traceback."""

from __future__ import annotations

import re

import pytest

from pytest_kvreuse import KvReuseError, analyze
from pytest_kvreuse.cli import main

LONE = r"\ud800"  # written as the JSON escape, as a JSON encoder would write the string
GOOD_CHAT = '{"messages": [{"role": "user", "content": "hello there"}]}\n'

CASES = {
    # name: (file name, text, line of the bad record)
    "chat-content": ("t.jsonl", GOOD_CHAT + '{"messages": [{"role": "user", "content": "a'
                     + LONE + 'b"}]}\n', 2),
    "chat-content-first-line": ("t.jsonl", '{"messages": [{"role": "user", "content": "a'
                                + LONE + '"}]}\n', 1),
    "chat-role": ("t.jsonl", GOOD_CHAT + '{"messages": [{"role": "' + LONE
                  + '", "content": "x"}]}\n', 2),
    "chat-session": ("t.jsonl", GOOD_CHAT + '{"session_id": "' + LONE
                     + '", "messages": [{"role": "user", "content": "x"}]}\n', 2),
    "prompt": ("t.jsonl", '{"prompt": "ok"}\n{"prompt": "x' + LONE + '"}\n', 2),
    "text": ("t.jsonl", '{"text": "ok"}\n\n{"text": "' + r"\udc00" + 'x"}\n', 3),
    "token-ids-session": ("t.jsonl", '{"token_ids": [1, 2]}\n{"token_ids": [1], '
                          '"session_id": "' + LONE + '"}\n', 2),
    "aiperf-content": ("inputs.json", '{"data": [\n{"payloads": [{"messages": [{"role": '
                       '"user", "content": "ok"}]}]},\n{"payloads": [{"messages": [{"role": '
                       '"user", "content": "a' + LONE + '"}]}]}\n]}', 3),
    "aiperf-prompt": ("inputs.json", '{"data": [{"payloads": [{"prompt": "a' + r"\udfff"
                      + 'b"}]}]}', 1),
    "aiperf-role": ("inputs.json", '{"data": [\n{"payloads": [{"messages": [{"role": "'
                    + LONE + '", "content": "x"}]}]}]}', 2),
    "aiperf-session": ("inputs.json", '{"data": [\n\n{"session_id": "' + LONE
                       + '", "payloads": [{"prompt": "x"}]}]}', 3),
    "aiperf-text-part": ("inputs.json", '{"data": [{"payloads": [{"messages": [{"role": '
                         '"user", "content": [{"type": "text", "text": "' + LONE
                         + '"}]}]}]}]}', 1),
    "aiperf-reversed-pair": ("inputs.json", '{"data": [{"payloads": [{"prompt": "'
                             + r"\udc00\ud800" + '"}]}]}', 1),
}


@pytest.mark.usefixtures("deepseek")
@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("fmt", ["auto", "explicit"])
def test_lone_surrogate_is_one_line_naming_file_and_line(tmp_path, case, fmt):
    name, text, line = CASES[case]
    path = tmp_path / name
    path.write_text(text, encoding="ascii")
    explicit = ("aiperf" if name.endswith(".json") else "chat" if "messages" in text
                else "token-ids" if "token_ids" in text else "prompt")
    with pytest.raises(KvReuseError) as info:
        analyze(path, format="auto" if fmt == "auto" else explicit, use_cache=False,
                progress=False, block_size=4)
    text_line = info.value.one_line()
    assert "\n" not in text_line and text_line.startswith(f"{path}:{line}: "), text_line
    assert "surrogate" in text_line, text_line


def test_a_proper_surrogate_pair_is_text(tmp_path, deepseek):
    path = tmp_path / "inputs.json"
    path.write_text('{"data": [{"payloads": [{"prompt": "smile \\ud83d\\ude42 and a '
                    'literal \\\\ud800"}]}]}', encoding="ascii")
    a = analyze(path, use_cache=False, progress=False, block_size=1)
    assert a.num_requests == 1 and a.total_tokens > 0


@pytest.mark.usefixtures("deepseek")
@pytest.mark.parametrize("case", ["aiperf-content", "chat-content", "aiperf-session"])
def test_cli_exit_2_with_one_line(tmp_path, capsys, case):
    name, text, line = CASES[case]
    path = tmp_path / name
    path.write_text(text, encoding="ascii")
    assert main(["analyze", str(path), "--no-cache", "-q", "--block-size", "4"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"kvreuse: error: {path}:{line}: ") and "surrogate" in err, err


def test_manifest_item_fails_with_one_line_and_the_trace_stays_in_the_summary(
        pytester: pytest.Pytester) -> None:
    _, text, _ = CASES["aiperf-content"]
    (pytester.path / "bad.json").write_text(text, encoding="ascii")
    pytester.makefile(".jsonl", tiny='{"input_length": 1024, "hash_ids": [1, 2]}\n'
                                     '{"input_length": 1536, "hash_ids": [1, 2, 3]}\n')
    pytester.makefile(".toml", kvreuse="""\
[[trace]]
name = "tiny"
path = "tiny.jsonl"
[[trace.check]]
metric = "reused_fraction"
min = 0.3

[[trace]]
name = "bad"
path = "bad.json"
block_size = 4
[[trace.check]]
metric = "reused_fraction"
min = 0.1
""")
    result = pytester.runpytest("-v", "-p", "no:cacheprovider", "--kvreuse-no-cache")
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    assert "Traceback" not in out and "UnicodeEncodeError" not in out, out
    assert re.search(r"kvreuse: \S*bad\.json:3: .*surrogate", out), out
    lines = out.splitlines()
    start = next(i for i, s in enumerate(lines) if "kvreuse summary" in s)
    table = "\n".join(lines[start:start + 6])
    assert re.search(r"^bad\s.*ERROR", table, re.M), table
