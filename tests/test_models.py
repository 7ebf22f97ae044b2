"""KV bytes per token of the catalog's models, of a config.json, of a cached hub model; the
model flag's tokenizer."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

import pytest_kvreuse
from pytest_kvreuse import AnalysisParams, analyze, kv_bytes_per_token
from pytest_kvreuse.models import (
    CATALOG_FILE,
    DTYPE_BITS,
    ModelError,
    catalog,
    catalog_id,
    find_model,
    resolve_geometry,
)

EXAMPLE = Path(__file__).resolve().parents[1] / "example_traces" / "chat_sessions.mooncake.jsonl"


def oracle(config: dict, dtype: str, tp: int) -> tuple[int, int, int]:
    """``(bytes per token, sliding bytes per request, linear bytes per request)`` of a
    config.json-shaped record, layer by layer, straight from docs/models.md."""
    c = {**config, **config.get("text_config", {})}
    n = c["num_hidden_layers"]
    if "layer_types" in c:
        kinds = c["layer_types"]
    elif "full_attention_interval" in c:
        kinds = ["full" if i % c["full_attention_interval"] == c["full_attention_interval"] - 1
                 else "linear" for i in range(n)]
    elif c.get("sliding_window_pattern"):
        p = c["sliding_window_pattern"]
        kinds = ["full" if i % p == p - 1 else "sliding" for i in range(n)]
    elif c.get("sliding_window") and c.get("use_sliding_window", True):
        kinds = ["sliding"] * n
    else:
        kinds = ["full"] * n
    half_bytes = {"bf16": 4, "fp16": 4, "fp8": 2, "fp4": 1, "int4": 1}[dtype]
    if "kv_lora_rank" in c:
        per_token = (c["kv_lora_rank"] + c["qk_rope_head_dim"]) * half_bytes / 2
    else:
        head_dim = c.get("head_dim") or c["hidden_size"] // c["num_attention_heads"]
        kv = c.get("num_key_value_heads", c["num_attention_heads"])
        per_gpu = max(1, -(-kv // tp))
        per_token = 2 * per_gpu * head_dim * half_bytes / 2
    token = sliding = linear = 0
    for kind in kinds:
        if kind.startswith("full"):
            token += math.ceil(per_token)
        elif kind.startswith("sliding"):
            sliding += math.ceil(per_token * c["sliding_window"])
        else:
            kh = max(1, -(-c["linear_num_key_heads"] // tp))
            vh = max(1, -(-c["linear_num_value_heads"] // tp))
            kd, vd = c["linear_key_head_dim"], c["linear_value_head_dim"]
            state = vh * kd * vd + (c["linear_conv_kernel_dim"] - 1) * (2 * kh * kd + vh * vd)
            linear += state * 2  # bf16 state
    return token, sliding, linear


def test_deepseek_v3_is_the_definition():
    # docs/models.md: 61 layers * (512 + 64) * 2 bytes.
    assert kv_bytes_per_token("deepseek-v3") == 61 * (512 + 64) * 2 == 70272
    assert pytest_kvreuse.kv_bytes_per_token("deepseek-v3", "fp8") == 35136
    assert kv_bytes_per_token("deepseek-v3", "fp4") == kv_bytes_per_token("deepseek-v3",
                                                                            "int4") == 17568
    # MLA's latent is replicated on every GPU: tp does not divide it.
    assert kv_bytes_per_token("deepseek-v3", tp=8) == 70272


def test_catalog_is_big_and_every_entry_names_its_source():
    doc = json.loads(CATALOG_FILE.read_text())
    assert len(doc["models"]) >= 25
    for mid, entry in doc["models"].items():
        assert mid == mid.lower(), mid
        assert entry["source"] == f"https://huggingface.co/{entry['hf_id']}/blob/main/config.json"
        assert entry["checked"] in ("verified", "unverified"), mid
    families = ("deepseek-v3", "deepseek-r1", "kimi-k2", "llama-3.1-8b", "llama-3.1-70b",
                "llama-3.1-405b", "llama-3.3-70b", "qwen2.5-7b", "qwen2.5-72b", "qwen3-0.6b",
                "qwen3-32b", "qwen3-235b-a22b", "qwen3.5-397b-a17b", "qwen3.6-35b-a3b",
                "gpt-oss-120b", "gemma-3-27b", "mistral-7b", "mixtral-8x7b", "glm-4.5",
                "minimax-m2")
    assert set(families) <= set(catalog())


@pytest.mark.parametrize("mid", sorted(json.loads(CATALOG_FILE.read_text())["models"]))
def test_every_entry_computes_from_its_config_record(mid):
    config = json.loads(CATALOG_FILE.read_text())["models"][mid]["config"]
    for dtype in DTYPE_BITS:
        for tp in (1, 2, 8):
            g = resolve_geometry(mid, dtype, tp)
            assert (g.bytes_per_token, g.sliding_bytes_per_request,
                    g.linear_bytes_per_request) == oracle(config, dtype, tp), (dtype, tp)
            assert g.bytes_per_token > 0
    # The same record as a user's config.json gives the same bytes.
    assert kv_bytes_per_token(mid) == oracle(config, "bf16", 1)[0]


@pytest.mark.parametrize("name, bpt", [
    # 2 (K, V) * kv heads * head dim * 2 bytes * layers
    ("meta-llama/Llama-3.1-70B-Instruct", 2 * 8 * 128 * 2 * 80),
    ("llama-3.1-405b", 2 * 8 * 128 * 2 * 126),
    ("Qwen/Qwen3-32B", 2 * 8 * 128 * 2 * 64),
    ("qwen3-235b-a22b", 2 * 4 * 128 * 2 * 94),
    ("qwen2.5-7b", 2 * 4 * 128 * 2 * 28),
    # hybrids: only the full-attention layers
    ("openai/gpt-oss-120b", 2 * 8 * 64 * 2 * 18),
    ("qwen3.5-397b-a17b", 2 * 2 * 256 * 2 * 15),
    ("gemma-3-27b", 2 * 16 * 128 * 2 * 10),
])
def test_spot_checks(name, bpt):
    assert kv_bytes_per_token(name) == bpt


def test_sliding_and_linear_layers_are_per_request():
    g = resolve_geometry("gpt-oss-120b")
    assert (g.full_layers, g.sliding_layers) == (18, 18)
    assert g.sliding_bytes_per_request == 18 * 128 * (2 * 8 * 64 * 2)
    q = resolve_geometry("qwen3.5-397b-a17b")
    assert (q.full_layers, q.linear_layers) == (15, 45)
    state = 64 * 128 * 128 + 3 * (2 * 16 * 128 + 64 * 128)
    assert q.linear_bytes_per_request == 45 * state * 2
    assert "per request" in q.describe()


def test_tp_divides_kv_heads_down_to_one():
    assert kv_bytes_per_token("llama-3.1-70b", tp=8) == 80 * 2 * 1 * 128 * 2
    assert kv_bytes_per_token("llama-3.1-70b", tp=16) == 80 * 2 * 1 * 128 * 2


@pytest.mark.parametrize("name, mid", [
    ("deepseek-ai/DeepSeek-V3.1", "deepseek-v3.1"),
    ("meta-llama/Llama-3.1-70B-Instruct", "llama-3.1-70b"),
    ("Llama-3.1-70B-Instruct", "llama-3.1-70b"),
    ("QWEN3-32B", "qwen3-32b"),
    ("Qwen/Qwen3-235B-A22B-Instruct-2507", "qwen3-235b-a22b"),
    ("no/such-model", None),
])
def test_hugging_face_ids_resolve_to_catalog_ids(name, mid):
    assert catalog_id(name) == mid


def write_config(where: Path, **fields: object) -> Path:
    where.mkdir(parents=True, exist_ok=True)
    (where / "config.json").write_text(json.dumps(fields))
    return where


def test_model_config_file_or_directory(tmp_path):
    d = write_config(tmp_path / "m", num_hidden_layers=2, hidden_size=64,
                     num_attention_heads=4, num_key_value_heads=2)
    for given in (d, d / "config.json"):
        g = resolve_geometry("mine", config_path=given)
        assert g.bytes_per_token == 2 * 2 * 2 * 16 * 2
    # A path given as the model itself works too.
    assert kv_bytes_per_token(str(d)) == 256


@pytest.mark.parametrize("fields, missing", [
    ({"hidden_size": 64, "num_attention_heads": 4}, "num_hidden_layers"),
    ({"num_hidden_layers": 2, "num_key_value_heads": 2}, "num_attention_heads"),
    ({"num_hidden_layers": 2, "kv_lora_rank": 512}, "qk_rope_head_dim"),
    ({"num_hidden_layers": 2, "num_attention_heads": 4, "head_dim": 8,
      "layer_types": ["sliding_attention", "full_attention"]}, "sliding_window"),
])
def test_a_missing_field_is_one_line_naming_it(tmp_path, fields, missing):
    d = write_config(tmp_path / "m", **fields)
    with pytest.raises(ModelError) as info:
        resolve_geometry("mine", config_path=d)
    line = info.value.one_line()
    assert f"no {missing!r}" in line and "\n" not in line and str(d) in line


def test_bad_config_paths_are_one_line(tmp_path):
    with pytest.raises(ModelError, match="no such model config"):
        find_model(None, tmp_path / "nowhere")
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ModelError, match="not JSON"):
        find_model(None, tmp_path)


def test_a_hub_model_in_the_local_cache(tmp_path, monkeypatch):
    hub = tmp_path / "hub"
    repo = hub / "models--acme--tiny"
    write_config(repo / "snapshots" / "abc123", num_hidden_layers=3, hidden_size=128,
                 num_attention_heads=8, num_key_value_heads=8)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    assert kv_bytes_per_token("acme/tiny") == 3 * 2 * 8 * 16 * 2
    with pytest.raises(ModelError, match="unknown model 'acme/other'"):
        kv_bytes_per_token("acme/other")


def test_the_model_gives_the_tokenizer_unless_one_is_named():
    assert AnalysisParams().tokenizer_name == "deepseek-v3"
    assert AnalysisParams(model="deepseek-v3").tokenizer_name == "deepseek-v3"
    assert AnalysisParams(model="qwen3-32b").tokenizer_name == "Qwen/Qwen3-32B"
    assert AnalysisParams(model="deepseek-ai/DeepSeek-V3.1").tokenizer_name == \
        "deepseek-ai/DeepSeek-V3.1"
    assert AnalysisParams(model="qwen3-32b", tokenizer="/my/tok").tokenizer_name == "/my/tok"
    # Hash-id traces are never tokenized: the model's tokenizer changes nothing there.
    assert AnalysisParams(model="qwen3-32b").key("mooncake") == \
        AnalysisParams(model="qwen3-32b", tokenizer="x").key("mooncake")


def test_analyze_with_a_model():
    a = analyze(EXAMPLE, model="deepseek-v3", kv_dtype="fp8", tp=8)
    assert a.bytes_per_token == 35136
    assert a.params["kv_bytes_per_token"] == 35136
    assert a.params["model"] == "deepseek-v3" and a.params["tp"] == 8
    plain = analyze(EXAMPLE)
    # Without a model the results read as before: no model parameters at all.
    assert not {"model", "kv_dtype", "tp", "model_config", "kv_bytes_per_token"} & set(
        plain.params)
    assert a.lru_hit_fraction(16384) == plain.lru_hit_fraction(16384)


def test_analyze_refuses_a_bad_model_config_before_reading(tmp_path):
    d = write_config(tmp_path / "m", num_hidden_layers=2)
    with pytest.raises(pytest_kvreuse.KvReuseError) as info:
        analyze(tmp_path / "missing.jsonl", model_config=str(d))
    assert "num_attention_heads" in info.value.one_line()


def test_an_unknown_model_names_only_a_tokenizer():
    # The original script's --model-name took any tokenizer name: no geometry, no error.
    a = analyze(EXAMPLE, model="x")
    assert a.kv is None and a.bytes_per_token is None


def test_two_models_of_one_trace_share_one_analysis(pytester: pytest.Pytester,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import pytest_kvreuse.api

    calls = []
    real = pytest_kvreuse.api.analyze
    monkeypatch.setattr(pytest_kvreuse.api, "analyze",
                        lambda path, params=None, **kw: calls.append(path) or real(
                            path, params, **kw))
    pytester.makefile(".jsonl", t=EXAMPLE.read_text())
    pytester.makefile(".toml", kvreuse="""\
[[trace]]
name = "bf16"
path = "t.jsonl"
model = "deepseek-v3"
gpu_cache_tokens = "64GiB"

[[trace]]
name = "fp8"
path = "t.jsonl"
model = "deepseek-v3"
kv_dtype = "fp8"
gpu_cache_tokens = "64GiB"

[[trace]]
name = "plain"
path = "t.jsonl"
gpu_cache_tokens = 977856
""")
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--kvreuse-json", "o.json")
    result.assert_outcomes(passed=3)
    assert len(calls) == 1  # the model changes what a size is in bytes, not the stream
    traces = {t["name"]: t for t in json.loads((pytester.path / "o.json").read_text())["traces"]}
    assert traces["bf16"]["sizes"] == traces["plain"]["sizes"] == [977856]
    assert traces["fp8"]["sizes"] == [(64 * 2**30 // (35136 * 64)) * 64]
    assert traces["bf16"]["params"]["kv_bytes_per_token"] == 70272
    assert traces["fp8"]["params"]["kv_bytes_per_token"] == 35136
    assert "kv_bytes_per_token" not in traces["plain"]["params"]
    assert traces["bf16"]["figures"]["lru_hit_fraction"] == \
        traces["plain"]["figures"]["lru_hit_fraction"]


def test_the_model_tokenizes_text_traces(tmp_path, monkeypatch):
    for var in ("HF_HOME", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        monkeypatch.setenv(var, str(tmp_path / "hf"))  # nothing cached
    trace = tmp_path / "chat.jsonl"
    text = "the same long system prompt, again and again " * 40
    trace.write_text("".join(json.dumps({"messages": [{"role": "user", "content": text}]})
                             + "\n" for _ in range(3)))
    kw = {"use_cache": False, "progress": False}
    builtin = analyze(trace, **kw)
    by_model = analyze(trace, model="deepseek-v3", **kw)
    assert by_model.num_blocks == builtin.num_blocks and by_model.params["tokenizer"] == \
        "deepseek-v3"
    # Qwen3's own tokenizer is not cached here: the one-line offline error names it...
    with pytest.raises(pytest_kvreuse.KvReuseError, match="'Qwen/Qwen3-32B' is not a local"):
        analyze(trace, model="qwen3-32b", **kw)
    # ... unless --tokenizer names another.
    other = analyze(trace, model="qwen3-32b", tokenizer="deepseek-v3", **kw)
    assert other.num_blocks == builtin.num_blocks and other.bytes_per_token == 262144
