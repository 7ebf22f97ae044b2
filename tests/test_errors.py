"""Everything a user can get wrong is a KvReuseError of one line naming the file (and the
line): through the API, the CLI (exit 2) and pytest items."""

from __future__ import annotations

import json
import math

import pytest

from pytest_kvreuse import KvReuseError, analyze
from pytest_kvreuse.cli import main
from pytest_kvreuse.errors import BlockSizeError, EmptyTraceError, TraceFormatError, TraceReadError
from pytest_kvreuse.plugin.manifest import ManifestError, load_manifest
from pytest_kvreuse.result import TraceResult

MOONCAKE = (b'{"input_length": 1024, "hash_ids": [1, 2]}\n'
            b'{"input_length": 1536, "hash_ids": [1, 2, 3]}\n')


def error_of(tmp_path, content: bytes | None, name: str = "t.jsonl", **kwargs) -> KvReuseError:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    kwargs.setdefault("use_cache", False)
    with pytest.raises(KvReuseError) as info:
        analyze(path, **kwargs)
    line = info.value.one_line()
    assert "\n" not in line and str(path) in line, line
    return info.value


@pytest.mark.parametrize("content, kwargs, kind, fragment, line", [
    (None, {}, TraceReadError, "no such file", None),
    (b"", {}, EmptyTraceError, "trace is empty", None),
    (b"\n  \n", {}, EmptyTraceError, "empty", None),
    (b"hello\n", {}, TraceFormatError, "cannot detect the format", None),
    (b'{"x": 1}\n', {}, TraceFormatError, "cannot detect the format", 1),
    (MOONCAKE + b'{"hash_ids": [1,\n', {}, TraceFormatError, "not valid JSON", 3),
    (MOONCAKE + b'{"hash_ids": [1], "input_length": "9"}\n', {}, TraceFormatError,
     "'input_length' must be an integer", 3),
    (MOONCAKE + b'{"hash_ids": [1], "timestamp": "now"}\n', {}, TraceFormatError,
     "'timestamp' must be a number", 3),
    (MOONCAKE, {"format": "nope"}, KvReuseError, "unknown format 'nope'", None),
    (MOONCAKE, {"format": "bailian"}, TraceFormatError, "'chat_id'", 1),
    (MOONCAKE, {"block_size": 48}, BlockSizeError, "does not fit", None),
    (b'{"messages": [{"role": "user", "content": 5}]}\n', {}, TraceFormatError,
     "'content' must be a string", 1),
    (b'{"token_ids": [1, "a"]}\n', {}, TraceFormatError, "must hold integers", 1),
    (b'{"token_ids": [1, 2], "session_id": [1]}\n', {}, TraceFormatError,
     "'session_id' must be", 1),
    (b'{"data": [{"payloads": 3}]}', {}, TraceFormatError, "'payloads' list", 1),
    (b'{"data": [' + b"[" * 20000 + b"]" * 20000 + b"]}", {"format": "aiperf"},
     TraceFormatError, "nested too deeply", 1),
    (b'{"data": [{"payloads": [{"prompt": "x", "timestamp": ' + b"9" * 400 + b"}]}]}", {},
     TraceFormatError, "'timestamp' is out of range", 1),
])
def test_user_mistakes(tmp_path, content, kwargs, kind, fragment, line):
    err = error_of(tmp_path, content, **kwargs)
    assert isinstance(err, kind), (type(err), err)
    assert fragment in err.one_line()
    if line is not None:
        assert err.line == line


@pytest.mark.parametrize("kwargs, fragment", [
    ({"block_size": 0}, "block size must be a positive integer"),
    ({"block_size": -64}, "block size must be a positive integer"),
    ({"block_size": 6.4}, "block size must be a positive integer"),
    ({"hash_block_size": 0}, "hash block size must be a positive integer"),
    ({"hash_block_size": -512}, "hash block size must be a positive integer"),
    ({"warmup": 1.5}, "warmup"),
    ({"prompt": "bogus", "format": "chat"}, "prompt"),
    ({"tokenizer": "", "format": "chat"}, "tokenizer"),
    ({"tokenizer": "/no/such/dir", "format": "chat"}, "does not exist"),
])
def test_bad_parameters(tmp_path, kwargs, fragment):
    path = tmp_path / "t.jsonl"
    path.write_bytes(MOONCAKE)
    with pytest.raises(KvReuseError) as info:
        analyze(path, use_cache=False, **kwargs)
    assert fragment in info.value.one_line() and "\n" not in info.value.one_line()


# Text reads as the user writes sizes ("345,792"); bytes need the model, which is not named.
@pytest.mark.parametrize("size", [-1, float("nan"), "lots", "64GiB", None])
def test_bad_cache_sizes(tmp_path, size):
    path = tmp_path / "t.jsonl"
    path.write_bytes(MOONCAKE)
    a = analyze(path)
    for figure in (a.offloadable_fraction, a.lru_hit_fraction, a.lru_offloadable_fraction):
        with pytest.raises(KvReuseError):
            figure(size)
    with pytest.raises(KvReuseError):
        a.lru_offloadable_fraction(1000, size if size is not None else -1)


def test_zero_full_blocks_are_undefined_not_a_division(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_bytes(b'{"input_length": 10, "hash_ids": [1]}\n' * 3)
    a = analyze(path)
    assert a.num_requests == 3 and a.num_blocks == 0
    for value in (a.reused_fraction, a.compulsory_fraction, a.offloadable_fraction(100),
                  a.lru_hit_fraction(100), a.lru_offloadable_fraction(100, 50)):
        assert math.isnan(value)
    result = TraceResult.from_analysis(a, name="t", sizes=[100]).to_json()
    text = json.dumps(result, allow_nan=False)  # None, never NaN
    assert result["figures"]["offloadable_fraction"]["100"] is None
    assert result["figures"]["lru_hit_fraction"]["100"] is None and "NaN" not in text


def test_warmup_leaving_nothing_is_undefined(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_bytes(MOONCAKE)
    a = analyze(path, warmup=0.9)  # floor(0.9 * 2) = 1 request left: still counted
    assert a.counted_tokens > 0
    one = tmp_path / "one.jsonl"
    one.write_bytes(b'{"input_length": 1024, "hash_ids": [1, 2]}\n' * 3)
    b = analyze(one, warmup=0.5)
    assert not math.isnan(b.reused_fraction)


# -- the CLI: one line on stderr, exit 2 --------------------------------------------------

def cli_error(argv, capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("kvreuse: error: "), err
    return err


@pytest.mark.parametrize("content, extra, fragment", [
    (None, [], "no such file"),
    (b"", [], "trace is empty"),
    (b'{"hash_ids": [1, "x"]}\n', [], ":1: 'hash_ids' must hold integers"),
    (MOONCAKE, ["--block-size", "48"], "does not fit"),
    (MOONCAKE, ["--format", "chat"], ":1: record has no 'messages'"),
])
def test_cli_analyze_one_line(tmp_path, capsys, content, extra, fragment):
    path = tmp_path / "t.jsonl"
    if content is not None:
        path.write_bytes(content)
    err = cli_error(["analyze", str(path), "--no-cache", "-q", *extra], capsys)
    assert fragment in err and str(path) in err


def test_cli_unknown_tokenizer(tmp_path, capsys):
    path = tmp_path / "t.jsonl"
    path.write_bytes(b'{"prompt": "hi"}\n')
    err = cli_error(["analyze", str(path), "--no-cache", "--tokenizer", "/no/such"], capsys)
    assert "tokenizer directory '/no/such' does not exist" in err


def test_cli_analyze_unwritable_output(tmp_path, capsys):
    path = tmp_path / "t.jsonl"
    path.write_bytes(MOONCAKE)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    err = cli_error(["analyze", str(path), "-q", "--json", str(blocker / "o.json")], capsys)
    assert "cannot write" in err


@pytest.mark.parametrize("content, fragment", [
    (None, "cannot read"),
    (b"{not json", "not valid JSON"),
    (b"[1, 2]", ""),
    (b'{"run": {}, "traces": 5}', ""),
    (b'{"run": {}, "traces": [{"name": 5}]}', ""),
    (b"\xff\xfe", ""),
])
def test_cli_compare_one_line(tmp_path, capsys, content, fragment):
    good = tmp_path / "good.json"
    trace = tmp_path / "t.jsonl"
    trace.write_bytes(MOONCAKE)
    assert main(["analyze", str(trace), "-q", "--json", str(good),
                 "--gpu-kv-cache-size", "512"]) == 0
    bad = tmp_path / "bad.json"
    if content is not None:
        bad.write_bytes(content)
    for argv in (["compare", str(good), str(bad)], ["compare", str(bad), str(good)]):
        err = cli_error(argv, capsys)
        assert fragment in err and "bad.json" in err


# -- manifests ----------------------------------------------------------------------------

@pytest.mark.parametrize("body, line, fragment", [
    ('[[trace]]\npath = "t.jsonl"\nblock_size = 0\n', 3, "'block_size' must be a positive"),
    ('[[trace]]\npath = "t.jsonl"\nhash_block_size = -5\n', 3, "'hash_block_size'"),
    ('[[trace]]\npath = "t.jsonl"\ngpu_cache_tokens = 0\n', 3, "'gpu_cache_tokens'"),
    ('[[trace]]\npath = "t.jsonl"\n[[trace.check]]\nmetric = "offloadable_fraction"\n'
     'at = -1\n', 5, "'at' must be a positive"),
    ('[[trace]]\npath = "t.jsonl"\n[[trace.check]]\nmetric = "offloadable_fraction"\n'
     'at = 0\n', 5, "'at' must be a positive"),
    ('[[trace]]\npath = "t.jsonl"\n[[trace.check]]\nmetric = "reused_fraction"\n'
     'min = "x"\n', 5, "'min' must be a number"),
    ('[[trace]]\npath = "t.jsonl"\nbogus = 1\n', 3, "unknown key 'bogus'"),
    ('[[trace]]\nname = "x"\n', 1, "needs 'path'"),
    ('[[trace]]\npath = 5\n', 2, "'path'"),
    ('[[trace]\n', 1, "invalid TOML"),
])
def test_bad_manifest(tmp_path, body, line, fragment):
    path = tmp_path / "kvreuse.toml"
    path.write_text(body)
    with pytest.raises(ManifestError) as info:
        load_manifest(path)
    assert isinstance(info.value, KvReuseError)
    text = info.value.one_line()
    assert fragment in text and f"{path}:{line}:" in text, text


def test_non_utf8_manifest(tmp_path):
    path = tmp_path / "kvreuse.toml"
    path.write_bytes(b'[[trace]]\npath = "\xff"\n')
    with pytest.raises(ManifestError) as info:
        load_manifest(path)
    assert str(path) in info.value.one_line() and "\n" not in info.value.one_line()


# -- pytest items fail with the one line --------------------------------------------------

def test_items_fail_with_the_line(pytester):
    pytester.makefile(".jsonl",
                      bad='{"input_length": 1024, "hash_ids": [1, 2]}\n{"hash_ids": [1,\n')
    pytester.makefile(".toml", kvreuse='[[trace]]\npath = "bad.jsonl"\n'
                      '[[trace.check]]\nmetric = "reused_fraction"\nmin = 0.1\n')
    pytester.makepyfile(test_m="""
        import pytest

        @pytest.mark.kvreuse("bad.jsonl")
        def test_marked(kvreuse):
            pass

        @pytest.mark.kvreuse("bad.jsonl", block_size=0)
        def test_zero_block(kvreuse):
            pass
    """)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1, errors=2)  # fixture errors are setup errors
    out = result.stdout.str()
    assert "Traceback" not in out
    assert out.count("bad.jsonl:2: not valid JSON") >= 2
    assert "block size must be a positive integer, got 0" in out


def test_zero_full_blocks_through_the_plugin(pytester):
    pytester.makefile(".jsonl", nofull='{"input_length": 10, "hash_ids": [1]}\n')
    pytester.makepyfile(test_z="""
        import pytest

        @pytest.mark.kvreuse("nofull.jsonl", gpu_cache_tokens=1000, min_offloadable=0.1)
        def test_bound(kvreuse):
            pass

        @pytest.mark.kvreuse("nofull.jsonl", gpu_cache_tokens=1000)
        def test_plain(kvreuse):
            pass
    """)
    result = pytester.runpytest("-p", "no:cacheprovider", "--kvreuse-json=o.json",
                                "--kvreuse-report=o.html")
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    assert "Traceback" not in out and "ZeroDivision" not in out
    assert "offloadable_fraction at 1,000 tokens is undefined" in out
    (trace,) = json.loads((pytester.path / "o.json").read_text())["traces"]
    assert trace["figures"]["offloadable_fraction"] == {"1000": None}
    assert trace["figures"]["reused_fraction"] is None
    assert "undefined" in (pytester.path / "o.html").read_text()


def test_chat_template_failure_names_the_request(tmp_path, monkeypatch, deepseek):
    from pytest_kvreuse.errors import TokenizerError
    from pytest_kvreuse.text.tokenizer import TextTokenizer

    def refuse(self, messages):
        raise TokenizerError("tokenizer 'deepseek-v3' cannot render a chat: bad roles")

    monkeypatch.setattr(TextTokenizer, "render_chat", refuse)
    path = tmp_path / "t.jsonl"
    path.write_text('\n{"messages": [{"role": "user", "content": "hi"}]}\n')
    with pytest.raises(TokenizerError) as info:
        analyze(path, prompt="chat", use_cache=False, progress=False)
    assert info.value.one_line().startswith(f"{path}:2: tokenizer 'deepseek-v3' cannot render")


@pytest.mark.parametrize("flags", [
    ["--block-size", "0"], ["--hash-block-size", "-512"], ["--gpu-kv-cache-size", "0"],
    ["--gpu-kv-cache-size", "1000", "--lower-tier-size", "-1"], ["--warmup", "1"],
    ["--format", "nope"], ["--lower-tier-size", "100"]])
def test_cli_usage_errors_are_one_line(tmp_path, capsys, flags):
    path = tmp_path / "t.jsonl"
    path.write_bytes(MOONCAKE)
    with pytest.raises(SystemExit) as info:
        main(["analyze", str(path), *flags])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "error:" in err, err
