"""The ``kvreuse`` command: one-off analysis, and a stand-in for the original script."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import orjson

from . import __version__
from .analysis import ReuseAnalysis, analyze
from .atomic import atomic_write_bytes
from .errors import KvReuseError
from .formats import FORMATS
from .textblocks import PROMPT_MODES

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
                   metavar="NAME",
                   help="tokenizer for text traces: 'deepseek-v3' (built in, the default), a "
                        "local directory, or a Hugging Face name already in the local cache")
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
    p.add_argument("--quiet", "-q", action="store_true", help="no summary, no progress")
    p.set_defaults(func=_run_analyze)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kvreuse",
        description="KV-cache reuse of LLM request traces: reuse intervals, offloadable "
                    "fraction at a GPU cache size, CCDF plot.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_analyze(sub)
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
