"""`kvreuse analyze --top-prefixes N --why`, the report's sections and the CI guard, as a
user meets them on a generated chat trace whose system prompt carries each request's
time (docs/causes.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import report_html

from pytest_kvreuse.cli import main
from pytest_kvreuse.result import Results
from pytest_kvreuse.synthetic import Workload, generate, write_chat

WORKLOAD = Workload(sessions=16, system_prompts=2, system_tokens=(150, 300), turns=(2, 4),
                    user_tokens=(20, 60), reply_tokens=(20, 60), document_share=0.0, seed=9)


@pytest.fixture(autouse=True)
def _this_checkouts_templates(monkeypatch: pytest.MonkeyPatch) -> None:
    """The report's templates of this source tree, wherever the package is installed from
    (an editable install elsewhere maps ``pytest_kvreuse.templates`` to its own tree)."""
    from pytest_kvreuse.output import report

    here = Path(__file__).resolve().parents[1] / "templates"
    monkeypatch.setattr(report, "builtin_templates", lambda: here)


@pytest.fixture(scope="module")
def clock_trace(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("clock") / "clock.jsonl"
    write_chat(generate(WORKLOAD), path, clock=True)
    return path


def test_why_names_the_clock_and_gives_the_lost_fraction(clock_trace, tmp_path, capsys):
    js = tmp_path / "r.json"
    assert main(["analyze", str(clock_trace), "--block-size", "16", "--why",
                 "--top-prefixes", "3", "--json", str(js)]) == 0
    out = capsys.readouterr().out
    trace = Results.from_json(json.loads(js.read_text())).traces[0]
    breaks = trace.causes["breaks"]
    fraction = trace.figures["broken_reuse_fraction"]
    assert breaks["fraction"] == fraction > 0.1
    (cause,) = breaks["causes"]
    assert cause["cause"].startswith("The current time is # #[")
    assert cause["lost_tokens"] == breaks["lost_tokens"]
    assert f"broken reuse:     {fraction * 100:.4f} %" in out
    assert "where reuse breaks: " in out
    assert "1. The current time is # #[# -> #]: " in out
    assert "before 'The current time is 2026-12-01 " in out
    assert "top shared prefixes (by reused tokens):" in out
    assert len(trace.causes["top_prefixes"]) == 3
    assert all(p["text"] for p in trace.causes["top_prefixes"])
    assert [t["by"] for t in trace.causes["categories"]] == ["session"]


def test_without_the_flags_no_causes_are_computed(clock_trace, tmp_path, capsys):
    js = tmp_path / "r.json"
    assert main(["analyze", str(clock_trace), "--block-size", "16", "--json", str(js)]) == 0
    doc = json.loads(js.read_text())["traces"][0]
    assert "causes" not in doc
    assert "top shared prefixes" not in capsys.readouterr().out


def test_hash_ids_without_sessions_say_why(tmp_path, capsys):
    path = tmp_path / "m.jsonl"
    path.write_text("".join(json.dumps({"timestamp": i, "input_length": 1024,
                                        "output_length": 1, "hash_ids": [1, 2 + i % 2]}) + "\n"
                            for i in range(4)))
    assert main(["analyze", str(path), "--why", "--top-prefixes", "2"]) == 0
    out = capsys.readouterr().out
    assert "where reuse breaks: undefined: the trace carries no session ids" in out
    assert "broken reuse" not in out
    assert "1. 1,536 reused tokens (60.00 % of reuse): 8 blocks (512 tokens) from block 0, " \
           "4 requests" in out


@pytest.mark.parametrize("value", ["0", "x", "-3"])
def test_top_prefixes_takes_a_positive_count(value, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["analyze", "t.jsonl", f"--top-prefixes={value}"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--top-prefixes: expected a positive integer" in err[0]


def test_the_report_shows_top_prefixes_and_the_breaks(clock_trace, tmp_path):
    html = tmp_path / "r.html"
    assert main(["analyze", str(clock_trace), "--block-size", "16", "--why",
                 "--top-prefixes", "4", "--gpu-kv-cache-size", "2048", "--html", str(html),
                 "--quiet"]) == 0
    text = html.read_text()
    page = report_html.parse(text)
    body = " ".join(page.text)
    assert "Where reuse comes from" in body and "Where reuse breaks" in body
    assert "Top shared prefixes, by reused tokens" in body
    assert "Reuse by session" in body and "offloadable at 2,048" in body
    assert "The current time is # #[# -&gt; #]" in text
    # Two bar charts beside the CCDF and the reuse-time plot.
    charts = [src for _, src in page.images]
    assert len(charts) == 4
    assert all(report_html.decode_image(src) for src in charts)
    # Self-contained still: nothing is fetched.
    assert all(v.startswith(("data:", "#")) for _, _, v in page.urls)


MANIFEST = """\
[[trace]]
name = "clock"
path = "{path}"
block_size = 16

[[trace.check]]
metric = "broken_reuse_fraction"
max = 0.01
"""


def test_a_manifest_bound_fails_when_reuse_breaks(clock_trace, pytester: pytest.Pytester):
    pytester.makefile(".toml", kvreuse=MANIFEST.format(path=clock_trace))
    result = pytester.runpytest("-p", "no:cacheprovider", "kvreuse.toml")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*broken_reuse_fraction is 0.* above the maximum 0.01*"])
