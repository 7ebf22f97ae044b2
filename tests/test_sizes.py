"""Cache sizes in the user's units: tokens as vLLM prints them, bytes with a unit once the
model is known, everywhere a size is taken (API, CLI, manifest, marker)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_kvreuse import AnalysisParams, KvReuseError, analyze
from pytest_kvreuse.cli import main
from pytest_kvreuse.formatting import byte_size, size
from pytest_kvreuse.plugin.manifest import ManifestError, load_manifest
from pytest_kvreuse.sizes import ByteSize, SizeError, parse_size, resolve_size

EXAMPLE = Path(__file__).resolve().parents[1] / "example_traces" / "chat_sessions.mooncake.jsonl"
DEEPSEEK_BLOCK = 70272 * 64  # bytes of one 64-token block of DeepSeek-V3 in bf16


@pytest.mark.parametrize("text, tokens", [
    (345792, 345792), ("345792", 345792), ("345,792", 345792), ("345_792", 345792),
    (" 1,000,000 ", 1000000),
])
def test_tokens_as_users_write_them(text, tokens):
    assert parse_size("at", text) == tokens


@pytest.mark.parametrize("text, n", [
    ("64GiB", 64 * 2**30), ("1.5TB", 1_500_000_000_000), ("512MiB", 512 * 2**20),
    ("1TiB", 2**40), ("80 GB", 80 * 10**9), ("2kb", 2000), ("100B", 100),
])
def test_bytes_with_a_unit(text, n):
    assert parse_size("at", text) == ByteSize(n, text.strip())


@pytest.mark.parametrize("bad", ["0", "-5", "1.5", "64 parsecs", "GiB", "0GiB", 0, -1, 1.5,
                                 True, None])
def test_bad_sizes_are_one_line(bad):
    with pytest.raises(SizeError) as info:
        parse_size("at", bad)
    assert "'at' must be a positive integer" in info.value.one_line()


def test_a_byte_budget_holds_whole_blocks():
    # floor(bytes / (bytes_per_token * B)) blocks, read as tokens.
    assert resolve_size("at", "64GiB", 70272, 64) == (64 * 2**30 // DEEPSEEK_BLOCK) * 64 \
        == 977856
    assert resolve_size("at", ByteSize(70272 * 64 - 1, "x"), 70272, 1) == 63
    assert resolve_size("at", "345,792", None, 64) == 345792
    with pytest.raises(SizeError, match="holds no block"):
        resolve_size("at", "1MiB", 70272, 64)
    with pytest.raises(SizeError, match="is a size in bytes: name the model"):
        resolve_size("at", "64GiB", None, 64)


def test_params_turn_bytes_into_tokens():
    p = AnalysisParams(model="deepseek-v3")
    assert p.size_tokens("at", "64GiB") == 977856
    assert AnalysisParams(model="deepseek-v3", kv_dtype="fp8").size_tokens("at", "64GiB") \
        == (64 * 2**30 // (35136 * 64)) * 64
    assert AnalysisParams(model="deepseek-v3", block_size=16).size_tokens("at", "64GiB") \
        == (64 * 2**30 // (70272 * 16)) * 16
    with pytest.raises(SizeError, match="name the model"):
        AnalysisParams().size_tokens("at", "64GiB")
    with pytest.raises(SizeError, match="KV geometry of model 'x' is unknown"):
        AnalysisParams(model="x").size_tokens("at", "64GiB")


def test_byte_text():
    assert byte_size(64 * 2**30) == "64 GiB"
    assert byte_size(977856 * 70272) == "64 GiB"  # a hair under: still reads as provisioned
    assert byte_size(1.5 * 2**40) == "1.5 TiB"
    assert byte_size(15646464 * 70272) == "1 TiB"
    assert byte_size(512) == "512 B"
    assert size(345792, 70272) == "345,792 tokens (22.63 GiB)"
    assert size(345792) == "345,792 tokens"


def test_api_figures_take_sizes_as_users_write_them():
    a = analyze(EXAMPLE, model="deepseek-v3")
    tokens = a.tokens("64GiB")
    assert tokens == 977856
    assert a.lru_hit_fraction("64GiB") == a.lru_hit_fraction(977856)
    assert a.lru_hit_fraction("16,384") == a.lru_hit_fraction(16384)
    assert a.offloadable_fraction("512MiB") == a.offloadable_fraction(a.tokens("512MiB"))
    assert a.lru_offloadable_fraction("512MiB", "1TiB") == a.lru_offloadable_fraction(
        a.tokens("512MiB"), a.tokens("1TiB"))
    assert a.size_bytes(977856) == 977856 * 70272
    with pytest.raises(KvReuseError, match="name the model"):
        analyze(EXAMPLE).lru_hit_fraction("64GiB")


def test_cli_sizes_in_bytes_print_both_units(tmp_path, capsys):
    js = tmp_path / "a.json"
    assert main(["analyze", str(EXAMPLE), "--model", "deepseek-v3", "--gpu-kv-cache-size",
                 "512MiB", "--lower-tier-size", "64GiB", "--json", str(js)]) == 0
    out = capsys.readouterr().out
    gpu = (512 * 2**20 // DEEPSEEK_BLOCK) * 64
    assert f"GPU cache:        {gpu:,} tokens (" in out
    assert "lower tier:       977,856 tokens (64 GiB)" in out
    assert "model:            deepseek-v3 (bf16, tp 1): 70,272 bytes per token" in out
    assert f"LRU cache of {gpu:,} tokens: hit" in out
    doc = json.loads(js.read_text())["traces"][0]
    # Figures are keyed in tokens, as without a model; the bytes sit beside them.
    assert str(gpu) in doc["figures"]["lru_hit_fraction"]
    assert doc["size_bytes"][str(gpu)] == gpu * 70272
    assert doc["size_bytes"]["977856"] == 977856 * 70272
    assert doc["params"]["kv_bytes_per_token"] == 70272


def test_cli_tokens_as_vllm_prints_them(capsys):
    assert main(["analyze", str(EXAMPLE), "--gpu-kv-cache-size", "16,384"]) == 0
    out = capsys.readouterr().out
    assert "LRU cache of 16,384 tokens: hit" in out and "GPU cache:" not in out


@pytest.mark.parametrize("argv, fragment", [
    (["--gpu-kv-cache-size", "64GiB"], "is a size in bytes: name the model"),
    (["--gpu-kv-cache-size", "64GiB", "--model", "x"], "KV geometry of model 'x' is unknown"),
    (["--gpu-kv-cache-size", "64 apples"], "expected a positive number of tokens"),
    (["--gpu-kv-cache-size", "1KiB", "--model", "deepseek-v3"], "holds no block"),
    (["--model", "deepseek-v3", "--kv-dtype", "fp2"], "invalid choice: 'fp2'"),
])
def test_cli_bad_sizes_are_one_line(argv, fragment):
    proc = subprocess.run([sys.executable, "-m", "pytest_kvreuse.cli", "analyze", str(EXAMPLE),
                           *argv], capture_output=True, text=True)
    assert proc.returncode == 2
    assert fragment in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def write_manifest(tmp_path: Path, body: str) -> Path:
    (tmp_path / "t.jsonl").write_bytes(EXAMPLE.read_bytes())
    path = tmp_path / "kvreuse.toml"
    path.write_text(body)
    return path


def test_manifest_sizes_in_bytes_resolve_against_the_traces_model(tmp_path):
    m = load_manifest(write_manifest(tmp_path, """\
[defaults]
model = "deepseek-v3"
gpu_cache_tokens = "64GiB"

[[trace]]
path = "t.jsonl"

[[trace.check]]
metric = "lru_hit_fraction"
min = 0.0

[[trace.check]]
metric = "lower_tier_hit_fraction"
at = "512MiB"
lower_tier = "1TiB"
min = 0.0

[[trace]]
name = "fp8"
path = "t.jsonl"
kv_dtype = "fp8"
gpu_cache_tokens = ["345,792", "64GiB"]
"""))
    first, fp8 = m.traces
    assert first.gpu_cache_tokens == (977856,)
    assert first.checks[0].check.at == 977856
    tier = first.checks[1].check
    assert tier.at == (512 * 2**20 // DEEPSEEK_BLOCK) * 64
    assert dict(tier.args)["lower_tier"] == (2**40 // DEEPSEEK_BLOCK) * 64
    assert fp8.gpu_cache_tokens == (345792, (64 * 2**30 // (35136 * 64)) * 64)


def test_manifest_bytes_without_a_model_name_the_line(tmp_path):
    path = write_manifest(tmp_path, """\
[[trace]]
path = "t.jsonl"

[[trace.check]]
metric = "lru_hit_fraction"
at = "64GiB"
min = 0.1
""")
    with pytest.raises(ManifestError) as info:
        load_manifest(path)
    line = info.value.one_line()
    assert line.startswith(f"{path}:6: ") and "is a size in bytes: name the model" in line


def test_marker_and_manifest_byte_sizes_in_a_run(pytester: pytest.Pytester) -> None:
    pytester.makefile(".jsonl", t=EXAMPLE.read_text())
    pytester.makefile(".toml", kvreuse="""\
[[trace]]
path = "t.jsonl"
model = "deepseek-ai/DeepSeek-V3"
gpu_cache_tokens = "64GiB"

[[trace.check]]
metric = "lru_hit_fraction"
min = 0.01
""")
    pytester.makepyfile(test_m="""
import pytest

@pytest.mark.kvreuse("t.jsonl", model="deepseek-v3", gpu_cache_tokens="64GiB",
                     min_lru_hit=0.01)
def test_marked(kvreuse):
    assert kvreuse.lru_hit_fraction("64GiB") > 0.01

@pytest.mark.kvreuse("t.jsonl", gpu_cache_tokens="64GiB", min_lru_hit=0.01)
def test_without_model():
    pass
""")
    result = pytester.runpytest("-p", "no:cacheprovider", "--kvreuse-json", "out.json")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*is a size in bytes: name the model*"])
    doc = json.loads((pytester.path / "out.json").read_text())
    # The Hugging Face id and the catalog id name one model: its results read the same.
    for trace in doc["traces"]:
        assert trace["params"]["model"] == "deepseek-v3"
        assert trace["sizes"] == [977856]
        assert trace["size_bytes"]["977856"] == 977856 * 70272
        assert "977856" in trace["figures"]["lru_hit_fraction"]


def test_a_ttl_is_no_size_in_bytes():
    from pytest_kvreuse.result import TraceResult

    a = analyze(EXAMPLE, model="deepseek-v3")
    r = TraceResult.from_analysis(a, name="t", sizes=[16384], ttls=[600])
    in_bytes = r.size_bytes()
    assert "16384" in in_bytes and "600" not in in_bytes
    peak = r.value("ttl_peak_tokens", at=600)
    assert in_bytes[str(peak)] == peak * 70272  # the TTL cache's peak is a size
