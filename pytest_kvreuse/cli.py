"""The ``kvreuse`` command: one-off analysis, and a stand-in for the original script."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import orjson

from . import __version__
from .analysis import ReuseAnalysis, analyze
from .atomic import atomic_write_bytes
from .drift import Tolerance, compare_runs, format_comparison, parse_tolerance
from .errors import KvReuseError
from .fingerprint import content_sha256
from .formats import FORMATS
from .storage import describe_run, load_results

EXIT_USAGE = 2


def _positive_int(text: str) -> int:
    try:
        value = int(text.replace("_", "").replace(",", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
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
    p.add_argument("--tokenizer", "--model-name", dest="tokenizer", default=None,
                   metavar="NAME", help="tokenizer for text traces (default: deepseek-v3)")
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
    parser = argparse.ArgumentParser(
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


def _summary(a: ReuseAnalysis, gpu: int | None) -> str:
    fmt = a.params.get("format", "?")
    lines = [
        f"trace:            {a.params.get('path')} ({fmt}, block size {a.block_size})",
        f"requests:         {a.num_requests:,}",
        f"blocks:           {a.num_blocks:,} ({a.unique_blocks:,} unique)",
        f"total tokens:     {a.total_tokens:,}",
        f"reuses:           {a.reuse_count:,} ({_percent(a.reused_fraction)} of tokens)",
    ]
    if a.reuse_count:
        lines.append(f"interval, tokens: min {a.interval_min:,}, median {a.interval_median:,}, "
                     f"max {a.interval_max:,}")
    if gpu is not None:
        lines.append(f"offloadable at {gpu:,} tokens: {_percent(a.offloadable_fraction(gpu))}")
    return "\n".join(lines)


def analysis_json(a: ReuseAnalysis, gpu: int | None) -> dict:
    out = a.to_dict()
    # Lets `kvreuse compare` tell a new export of a trace from the same bytes.
    out["params"]["content_sha256"] = content_sha256(a.params["path"])
    if gpu is not None:
        out["gpu_cache_tokens"] = gpu
        frac = a.offloadable_fraction(gpu)
        out["offloadable_fraction"] = None if frac != frac else frac
    return out


def plot_analysis(a: ReuseAnalysis, gpu: int | None, path: str) -> None:
    from .plot import Series, ccdf_figure, save_figure

    x, y = a.ccdf()
    stats = {
        "total tokens": f"{a.total_tokens:,}",
        "blocks": f"{a.num_blocks:,} ({a.unique_blocks:,} unique)",
        "reuses": f"{a.reuse_count:,}",
    }
    if a.reuse_count:
        stats["min / median / max"] = (f"{a.interval_min:,} / {a.interval_median:,} / "
                                       f"{a.interval_max:,}")
    fig = ccdf_figure(
        [Series("reuse interval", x, y)], gpu_cache_tokens=gpu,
        offloadable=None if gpu is None else a.offloadable_fraction(gpu), stats=stats,
        title=f"{a.params.get('path')} (block size {a.block_size})")
    save_figure(fig, path)


def write_html(a: ReuseAnalysis, gpu: int | None, path: str, trace: str,
               argv: Sequence[str] = ()) -> None:
    """The pytest report's renderer, for one trace and no checks."""
    from pathlib import Path

    from . import report, results

    result = results.trace_result(a, name=Path(trace).name,
                                  gpu_cache_sizes=[gpu] if gpu else [])
    result.update(checks=[], error=None)
    duration = sum(v for v in a.timings.values() if isinstance(v, float))
    run = report.run_info(["kvreuse", *argv], duration_s=duration)
    report.write_report(path, [result], run)


def _run_analyze(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    trace = args.trace or args.input_file
    if args.trace and args.input_file and args.trace != args.input_file:
        parser.error("give the trace once: as TRACE or as --input-file")
    if not trace:
        parser.error("a trace is required: kvreuse analyze TRACE")
    options: dict = {}
    if args.tokenizer is not None:
        options["tokenizer"] = args.tokenizer
    a = analyze(trace, block_size=args.block_size, format=args.format,
                hash_block_size=args.hash_block_size, **options)
    gpu = args.gpu_kv_cache_size
    if a.num_blocks == 0:
        raise KvReuseError(f"no request holds a full block of {a.block_size} tokens: "
                           "the figures are undefined", path=trace)
    if args.json:
        atomic_write_bytes(args.json, orjson.dumps(analysis_json(a, gpu),
                                                   option=orjson.OPT_INDENT_2) + b"\n")
    if args.output:
        plot_analysis(a, gpu, args.output)
    if args.html:
        write_html(a, gpu, args.html, trace, getattr(args, "argv", []))
    if not args.quiet:
        print(_summary(a, gpu))
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
