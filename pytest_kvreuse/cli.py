"""The ``kvreuse`` command: one-off analysis, and a stand-in for the original script."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

import orjson

from . import __version__
from .api import analyze
from .atomic import atomic_write_bytes
from .baselines.drift import Tolerance, compare_runs, format_comparison, parse_tolerance
from .baselines.storage import describe_run, load_results
from .core.analysis import ReuseAnalysis, defined
from .errors import KvReuseError
from .loaders import FORMATS
from .loaders.fingerprint import content_sha256
from .text.blocks import PROMPT_MODES

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line, like every other error (not the whole usage block)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text.replace("_", "").replace(",", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1), got {text!r}") \
            from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1), got {text!r}")
    return value


def _add_analyze(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "analyze",
        help="reuse figures and CCDF plot of one trace",
        description="Cut every request of TRACE into full KV blocks and measure, for every "
                    "block seen again in a later request, the tokens streamed in between. "
                    "Prints a summary; the offloadable fraction at --gpu-kv-cache-size is "
                    "the share of tokens a GPU cache of that size has let go but a lower "
                    "tier could serve.",
    )
    p.add_argument("trace", nargs="?", metavar="TRACE", help="trace file (JSONL or JSON)")
    p.add_argument("--input-file", dest="input_file", metavar="TRACE",
                   help="same as TRACE (the original script's flag)")
    p.add_argument("--format", default="auto", choices=("auto", *FORMATS),
                   help="trace format (default: detected from the content)")
    p.add_argument("--block-size", type=_positive_int, default=64, metavar="N",
                   help="KV block size in tokens (default: 64)")
    p.add_argument("--hash-block-size", type=_positive_int, default=None, metavar="N",
                   help="native block of hash-id traces (default: Mooncake 512, Bailian 16)")
    p.add_argument("--gpu-kv-cache-size", type=_positive_int, default=None, metavar="TOKENS",
                   help="GPU KV cache size in tokens, as vLLM prints at start-up")
    p.add_argument("--lower-tier-size", type=_positive_int, default=None, metavar="TOKENS",
                   help="a CPU/SSD tier of this many tokens below the GPU cache (exclusive, "
                        "LRU): splits the LRU offloadable share into what it serves and "
                        "what neither tier holds")
    p.add_argument("--warmup", type=_fraction, default=0.0, metavar="F",
                   help="steady state: the first F of the requests (a fraction in [0, 1)) "
                        "fill the cache but are not counted (default: 0)")
    p.add_argument("--tokenizer", "--model-name", dest="tokenizer", default=None,
                   metavar="NAME",
                   help="tokenizer for text traces: 'deepseek-v3' (built in, the default), a "
                        "local directory, or a Hugging Face name already in the local cache "
                        "(deepseek-ai/DeepSeek-R1 runs on the built-in one when not cached)")
    p.add_argument("--prompt", default="raw", choices=PROMPT_MODES,
                   help="how a text request becomes a prompt: 'raw' message contents "
                        "(default), 'chat' (the tokenizer's chat template), 'per-message' "
                        "(every message its own request, as the original script)")
    p.add_argument("--cache-dir", metavar="DIR", default=None,
                   help="where tokenized traces are cached (default: the user cache directory)")
    p.add_argument("--no-cache", dest="use_cache", action="store_false",
                   help="neither read nor write the tokenized-trace cache")
    p.add_argument("--output", "-o", metavar="PLOT", help="write the CCDF plot (.png or .svg)")
    p.add_argument("--json", metavar="PATH", help="write the figures as JSON")
    p.add_argument("--html", metavar="PATH",
                   help="write the self-contained HTML report (figures and CCDF plot)")
    p.add_argument("--quiet", "-q", action="store_true", help="no summary, no progress")
    p.set_defaults(func=_run_analyze)


def _tolerance(text: str) -> Tolerance:
    try:
        return parse_tolerance(text)
    except KvReuseError as exc:
        raise argparse.ArgumentTypeError(exc.one_line()) from None


def _add_compare(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare",
        help="drift of a run's figures from a baseline run",
        description="Compare the traces of CURRENT with those of the same name in BASELINE "
                    "(saved runs, --kvreuse-json files or kvreuse analyze --json output). "
                    "Exit status 1 when a figure drifted beyond a --fail tolerance.",
    )
    p.add_argument("baseline", metavar="BASELINE", help="the accepted run (JSON)")
    p.add_argument("current", metavar="CURRENT", help="the run to check (JSON)")
    p.add_argument("--fail", dest="tolerances", action="append", type=_tolerance, default=[],
                   metavar="EXPR",
                   help="fail when METRIC moved by more than AMOUNT (METRIC:0.02) or AMOUNT "
                        "percent of the baseline (METRIC:5%%); repeatable")
    p.set_defaults(func=_run_compare)


def _run_compare(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    base, base_doc = load_results(args.baseline)
    cur, cur_doc = load_results(args.current)
    comparison = compare_runs(base, cur, args.tolerances, pair_single=True)
    print(f"baseline: {describe_run(base_doc, args.baseline)}")
    print(f"current:  {describe_run(cur_doc, args.current)}\n")
    print(format_comparison(comparison))
    return 1 if comparison.failed else 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="kvreuse",
        description="KV-cache reuse of LLM request traces: reuse intervals, offloadable "
                    "fraction at a GPU cache size, CCDF plot.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_analyze(sub)
    _add_compare(sub)
    return parser


def _percent(x: float | None) -> str:
    return "undefined" if x is None or x != x else f"{x * 100:.4f} %"


def _split(d: dict[str, float] | None) -> str:
    if d is None:
        return ""
    return (f" (same session {_percent(d['same_session'])}, "
            f"cross-session {_percent(d['cross_session'])})")


def _summary(a: ReuseAnalysis, gpu: int | None, lower: int | None = None) -> str:
    fmt = a.params.get("format", "?")
    lines = [
        f"trace:            {a.params.get('path')} ({fmt}, block size {a.block_size})",
        f"requests:         {a.num_requests:,}",
        f"blocks:           {a.num_blocks:,} ({a.unique_blocks:,} unique)",
        f"total tokens:     {a.total_tokens:,}",
        f"reuses:           {a.reuse_count:,} ({_percent(a.reused_fraction)} of tokens)",
    ]
    if a.warmup_requests:
        lines.append(f"warm-up:          first {a.warmup_requests:,} requests not counted; "
                     f"figures over {a.counted_requests:,} requests, "
                     f"{a.counted_tokens:,} tokens")
    if a.reuse_count:
        lines.append(f"interval, tokens: min {a.interval_min:,}, median {a.interval_median:,}, "
                     f"max {a.interval_max:,}")
    lines.append(f"first touches:    {_percent(a.compulsory_fraction)} of tokens (compulsory)")
    if gpu is not None:
        lines.append(f"offloadable at {gpu:,} tokens: {_percent(a.offloadable_fraction(gpu))} "
                     "(reuse interval > cache size)")
        lines.append(f"LRU cache of {gpu:,} tokens: hit {_percent(a.lru_hit_fraction(gpu))}"
                     f"{_split(a.lru_hit_split(gpu))}")
        lines.append(f"LRU offloadable:  {_percent(a.lru_offloadable_fraction(gpu))}"
                     f"{_split(a.lru_offloadable_split(gpu))}")
        if lower is not None:
            tiers = lru_tiers(a, gpu, lower)
            lines.append(f"with a {lower:,}-token lower tier: it serves "
                         f"{_percent(tiers['lower_tier_hit'])}, neither tier holds "
                         f"{_percent(tiers['beyond_tiers'])}")
    return "\n".join(lines)


def lru_tiers(a: ReuseAnalysis, gpu: int, lower: int) -> dict[str, float | None]:
    """Every counted token lands in exactly one of these shares (they add up to 1)."""
    served = a.lru_offloadable_fraction(gpu, lower)
    beyond = a.lru_offloadable_fraction(gpu) - served
    return {k: None if v != v else v for k, v in (
        ("gpu_hit", a.lru_hit_fraction(gpu)), ("lower_tier_hit", served),
        ("beyond_tiers", beyond), ("compulsory", a.compulsory_fraction))}


def analysis_json(a: ReuseAnalysis, gpu: int | None, lower: int | None = None) -> dict:
    out = a.to_dict()
    # Lets `kvreuse compare` tell a new export of a trace from the same bytes.
    out["params"]["content_sha256"] = content_sha256(a.params["path"])
    if gpu is not None:
        out["gpu_cache_tokens"] = gpu
        out["offloadable_fraction"] = defined(a.offloadable_fraction(gpu))
        out["lru_hit_fraction"] = defined(a.lru_hit_fraction(gpu))
        out["lru_offloadable_fraction"] = defined(a.lru_offloadable_fraction(gpu))
        hit_split = a.lru_hit_split(gpu)
        if hit_split is not None:
            out["lru_hit_split"] = {k: defined(v) for k, v in hit_split.items()}
            out["lru_offloadable_split"] = {
                k: defined(v) for k, v in (a.lru_offloadable_split(gpu) or {}).items()}
        if lower is not None:
            out["lower_tier_tokens"] = lower
            out["lru_tiers"] = lru_tiers(a, gpu, lower)
    return out


def plot_analysis(a: ReuseAnalysis, gpu: int | None, path: str,
                  lower: int | None = None) -> None:
    """The interval CCDF F(x) and its exact twin, the share of tokens seen before that an
    LRU cache of x tokens no longer holds, on the same axes."""
    from .output.plot import Series, ccdf_figure, save_figure

    x, y = a.ccdf()
    lx, ly = a.lru_offloadable_curve()
    stats = {
        "total tokens": f"{a.total_tokens:,}",
        "blocks": f"{a.num_blocks:,} ({a.unique_blocks:,} unique)",
        "reuses": f"{a.reuse_count:,}",
    }
    if a.reuse_count:
        stats["min / median / max"] = (f"{a.interval_min:,} / {a.interval_median:,} / "
                                       f"{a.interval_max:,}")
    if a.warmup_requests:
        stats["warm-up requests"] = f"{a.warmup_requests:,} (not counted)"
    tier_bounds = None
    if gpu is not None and lower is not None:
        tier_bounds = [(f"GPU + lower tier: {gpu + lower:,} tokens", gpu + lower)]
    # Both curves start at the left edge from the share of tokens reused at all: F(0-).
    reusable = 1.0 - a.compulsory_fraction
    fig = ccdf_figure(
        [Series("reuse interval > x (proxy)", x, y, start=a.reused_fraction),
         Series("LRU: seen before, evicted from an x-token cache (exact)", lx, ly,
                style={"color": "darkorange"}, start=reusable)],
        gpu_cache_tokens=gpu,
        offloadable=None if gpu is None else a.offloadable_fraction(gpu),
        lru_offloadable=None if gpu is None else a.lru_offloadable_fraction(gpu),
        stats=stats, tier_bounds=tier_bounds,
        title=f"{a.params.get('path')} (block size {a.block_size})")
    save_figure(fig, path)


def write_html(a: ReuseAnalysis, gpu: int | None, path: str, trace: str,
               argv: Sequence[str] = ()) -> None:
    """The pytest report's renderer, for one trace and no checks."""
    from pathlib import Path

    from . import result as results
    from .output import report

    result = results.trace_result(a, name=Path(trace).name,
                                  gpu_cache_sizes=[gpu] if gpu else [])
    result.update(checks=[], error=None)
    duration = sum(v for v in a.timings.values() if isinstance(v, float))
    run = report.run_info(["kvreuse", *argv], duration_s=duration)
    run["timings"] = {result["name"]: results.trace_timings(a)}
    report.write_report(path, [result], run)


def _run_analyze(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    trace = args.trace or args.input_file
    if args.trace and args.input_file and args.trace != args.input_file:
        parser.error("give the trace once: as TRACE or as --input-file")
    if not trace:
        parser.error("a trace is required: kvreuse analyze TRACE")
    options: dict = {"prompt": args.prompt, "cache_dir": args.cache_dir,
                     "use_cache": args.use_cache, "progress": False if args.quiet else None}
    if args.tokenizer is not None:
        options["tokenizer"] = args.tokenizer
    if args.lower_tier_size is not None and args.gpu_kv_cache_size is None:
        parser.error("--lower-tier-size needs --gpu-kv-cache-size")
    a = analyze(trace, block_size=args.block_size, format=args.format,
                hash_block_size=args.hash_block_size, warmup=args.warmup, **options)
    gpu = args.gpu_kv_cache_size
    lower = args.lower_tier_size
    # No full block to count: the fractions are undefined (null in JSON, "undefined" in
    # the summary), which is a result, not an input error; say why on stderr.
    if a.num_blocks == 0:
        print(f"kvreuse: note: {trace}: no request holds a full block of {a.block_size} "
              "tokens: the fractions are undefined", file=sys.stderr)
    elif a.counted_tokens == 0:
        print(f"kvreuse: note: {trace}: the warm-up ({a.warmup_requests:,} of "
              f"{a.num_requests:,} requests) leaves no full block to count: the fractions "
              "are undefined", file=sys.stderr)
    if args.json:
        atomic_write_bytes(args.json, orjson.dumps(analysis_json(a, gpu, lower),
                                                   option=orjson.OPT_INDENT_2) + b"\n")
    if args.output:
        plot_analysis(a, gpu, args.output, lower)
    if args.html:
        write_html(a, gpu, args.html, trace, getattr(args, "argv", []))
    if not args.quiet:
        print(_summary(a, gpu, lower))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # The original one-file script took only flags: `kvreuse --input-file X ...` still works.
    if argv and argv[0].startswith("--") and argv[0] not in ("--help", "--version"):
        argv.insert(0, "analyze")
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = argv  # shown in the HTML report's header
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return args.func(args, parser)
    except KvReuseError as exc:
        print(f"kvreuse: error: {exc.one_line()}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("kvreuse: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
