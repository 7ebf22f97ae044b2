"""The ``kvreuse`` command: one-off analysis, and a stand-in for the original script."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from . import __version__
from .api import analyze
from .baselines.drift import Tolerance, compare_runs, format_comparison, parse_tolerance
from .baselines.storage import describe_run, load_results
from .core.analysis import ReuseAnalysis
from .errors import KvReuseError
from .formatting import (
    UNDEFINED_TEXT,
    count,
    defined,
    estimate_text,
    percent,
    ratio,
    seconds,
    size,
    tokens,
)
from .loaders.fingerprint import content_sha256
from .metrics import (
    LOWER_TIER_SHARE,
    METRICS,
    OPT_METRICS,
    REACHABLE_SHARE,
    ROUTINGS,
    figure_title,
    parse_fraction,
    parse_name,
    parse_replicas,
    parse_routing,
    parse_seconds,
)
from .params import PARAMS, AnalysisParams, Param
from .result import TraceResult, causes_document, trace_timings
from .sizes import ByteSize, parse_size

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line, like every other error (not the whole usage block)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _size(text: str) -> int | ByteSize:
    """Tokens or bytes with a unit; bytes become tokens once the model is known."""
    try:
        return parse_size("size", text)
    except KvReuseError:
        raise argparse.ArgumentTypeError(f"expected a positive number of tokens (345792, "
                                         f"345,792) or a size in bytes with a unit (64GiB, "
                                         f"1.5TB), got {text!r}") from None


def _hit(text: str) -> float:
    try:
        return parse_fraction("hit", text)
    except KvReuseError:
        raise argparse.ArgumentTypeError(f"expected a hit fraction between 0 and 1 (0.3 for "
                                         f"30 %), got {text!r}") from None


def _count(text: str) -> int:
    if not text.strip().isdigit() or int(text) <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def _ttls(text: str) -> tuple[int | float, ...]:
    try:
        return tuple(dict.fromkeys(parse_seconds("ttl", t) for t in text.split(",")
                                   if t.strip()))
    except KvReuseError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def _listed(parse: Callable[[str, object], object], what: str
            ) -> Callable[[str], tuple]:
    """A comma-separated flag value, each item read by ``parse``, repeats dropped."""
    def read(text: str) -> tuple:
        try:
            return tuple(dict.fromkeys(parse(what, t) for t in text.split(",") if t.strip()))
        except KvReuseError as exc:
            raise argparse.ArgumentTypeError(exc.message) from None
    return read


_names = _listed(parse_name, "policy")


def _jobs(text: str) -> int:
    try:
        jobs = int(text)
    except ValueError:
        jobs = 0
    if jobs < 1:
        raise argparse.ArgumentTypeError(f"a positive number of processes, got {text!r}")
    return jobs


def _param_type(param: Param) -> Callable[[str], object] | None:
    """Reads a flag's text as the parameter's type and checks it where it is written."""
    if param.choices is not None:
        return None
    kind = param.kind or (type(param.default) if param.default is not None else int)

    def read(text: str) -> object:
        try:
            try:
                value = kind(text.replace("_", "").replace(",", ""))
            except ValueError:
                value = text  # refused by the parameter's own check, in its words
            return param.validate(value)
        except KvReuseError as exc:
            raise argparse.ArgumentTypeError(exc.message) from None
    return read


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
    for param in PARAMS:
        p.add_argument(param.flag, *param.aliases, dest=param.name, default=None,
                       type=_param_type(param), choices=param.choices, metavar=param.metavar,
                       help=param.help)
    p.add_argument("--gpu-kv-cache-size", type=_size, default=None, metavar="SIZE",
                   help="GPU KV cache size in tokens, as vLLM prints at start-up (345,792), "
                        "or in bytes per GPU with --model (64GiB)")
    p.add_argument("--lower-tier-size", type=_size, default=None, metavar="SIZE",
                   help="a CPU/SSD tier of this size below the GPU cache (exclusive, LRU), "
                        "in tokens or in bytes with --model (1TiB): splits the LRU "
                        "offloadable share into what it serves and what neither tier holds")
    p.add_argument("--target-hit", type=_hit, default=None, metavar="F",
                   help="the smallest LRU GPU cache whose hit fraction reaches F (0.3), in "
                        "tokens and, with --model, bytes")
    p.add_argument("--opt", action="store_true",
                   help="also the Belady-optimal (OPT) hit fraction at --gpu-kv-cache-size: "
                        "no eviction policy does better; the gap to LRU is what a smarter "
                        "policy could win (exact; may take a while on big traces)")
    p.add_argument("--ttl", type=_ttls, default=(), metavar="TTLS",
                   help="time-to-lives, comma-separated (60,600 or 10min,1h): the hit "
                        "fraction and peak tokens of a cache that drops a block that long "
                        "after its last use (traces with timestamps)")
    p.add_argument("--policies", type=_names, default=(), metavar="NAMES",
                   help="libCacheSim eviction policies, comma-separated (arc,s3fifo): their "
                        "block-level hit fraction at --gpu-kv-cache-size (needs "
                        'pip install "pytest-kvreuse[policies]")')
    p.add_argument("--replicas", type=_listed(parse_replicas, "replicas"), default=(),
                   metavar="N,...",
                   help="numbers of replicas, comma-separated (1,4,8), each with its own GPU "
                        "cache of --gpu-kv-cache-size tokens behind a router: their hit "
                        "fraction and load imbalance under every --routing")
    p.add_argument("--routing", type=_listed(parse_routing, "routing"), default=(),
                   metavar="NAMES",
                   help=f"how --replicas are fed, comma-separated: {', '.join(ROUTINGS)} "
                        "(default: round-robin,prefix)")
    p.add_argument("--top-prefixes", type=_count, default=0, metavar="N",
                   help="where reuse comes from: the N shared prefixes carrying the most "
                        "reused tokens (their text on text traces), and the reuse of each "
                        "request category or session")
    p.add_argument("--why", action="store_true",
                   help="where reuse breaks: session turns that do not re-send the previous "
                        "turn's prompt, grouped by the text where they depart from it "
                        "(text traces with sessions)")
    p.add_argument("--cache-dir", metavar="DIR", default=None,
                   help="where tokenized traces are cached (default: the user cache directory)")
    p.add_argument("--no-cache", dest="use_cache", action="store_false",
                   help="neither read nor write the tokenized-trace cache")
    p.add_argument("--jobs", "-j", type=_jobs, default=1, metavar="N",
                   help="tokenize a text trace in N processes (the same figures; default 1)")
    p.add_argument("--dask", metavar="ADDRESS", default=None,
                   help="run on a Dask cluster (tcp://scheduler:8786; default: "
                        "$KVREUSE_DASK): text tokenized and intervals sorted on its workers, "
                        'the same figures (needs pip install "pytest-kvreuse[dask]")')
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
    # The CLI's own precision (four decimals), through the one formatter.
    return percent(x, 4, UNDEFINED_TEXT)


def _split(d: dict[str, float] | None) -> str:
    if d is None:
        return ""
    return (f" (same session {_percent(d['same_session'])}, "
            f"cross-session {_percent(d['cross_session'])})")


def _summary(a: ReuseAnalysis, gpu: int | None, lower: int | None = None, *,
             opt: bool = False, ttls: Sequence[int | float] = (),
             policies: dict[str, float] | None = None,
             target_hit: float | None = None) -> str:
    fmt = a.params.get("format", "?")
    bpt = a.bytes_per_token

    lines = [
        f"trace:            {a.params.get('path')} ({fmt}, block size {a.block_size})",
        f"requests:         {a.num_requests:,}",
        f"blocks:           {a.num_blocks:,} ({a.unique_blocks:,} unique)",
        f"total tokens:     {a.total_tokens:,}",
        f"reuses:           {a.reuse_count:,} ({_percent(a.reused_fraction)} of tokens)",
    ]
    if a.kv is not None:
        lines.insert(1, f"model:            {a.kv.describe()}")
    if a.warmup_requests:
        lines.append(f"warm-up:          first {a.warmup_requests:,} requests not counted; "
                     f"figures over {a.counted_requests:,} requests, "
                     f"{a.counted_tokens:,} tokens")
    if a.cluster:
        lines.append(f"ran on:           Dask, {a.cluster['workers']} workers at "
                     f"{a.cluster['scheduler']}; LRU/OPT {a.cluster['lru']}")
    if a.reuse_count:
        lines.append(f"interval, tokens: min {count(a.interval_min, 'not sampled')}, median "
                     f"{a.interval_median:,}, max {count(a.interval_max, 'not sampled')}")
    lines.append(f"first touches:    {_percent(a.compulsory_fraction)} of tokens (compulsory)")
    if gpu is not None and bpt is not None:
        # The sizes in both units once; the figure lines keep reading in tokens.
        lines.append(f"GPU cache:        {size(gpu, bpt)}")
        if lower is not None:
            lines.append(f"lower tier:       {size(lower, bpt)}")
    if a.turn_breaks is not None:
        lines.append(f"broken reuse:     {_percent(a.broken_reuse_fraction)} of tokens (session "
                     "turns not re-sending the previous prompt; --why says where)")
    if gpu is not None:
        lines.append(f"offloadable at {gpu:,} tokens: {_percent(a.offloadable_fraction(gpu))} "
                     "(reuse interval > cache size)")
        engine = "vLLM's prefix cache" if a.engine == "vllm" else "LRU cache"
        over = {"blocks": "", "prompt": " of prompt tokens",
                "per-request": " (mean per request)"}[a.denominator]
        lines.append(f"{engine} of {gpu:,} tokens: hit {_percent(a.lru_hit_fraction(gpu))}"
                     f"{over}{_split(a.lru_hit_split(gpu))}")
        hit_tokens = a.lru_hit_tokens(gpu)
        if a.engine == "vllm":
            lines.append(f"vLLM would report a prefix cache hit rate of "
                         f"{_percent(a.lru_hit_prompt_fraction(gpu))} ({hit_tokens:,} hit "
                         f"tokens / {a.counted_prompt_tokens:,} prompt tokens, partial tails "
                         f"included)")
        else:
            lines.append(f"hit tokens:       {hit_tokens:,} "
                         f"({_percent(a.lru_hit_prompt_fraction(gpu))} of "
                         f"{a.counted_prompt_tokens:,} prompt tokens, partial tails included)")
        lines.append(f"LRU offloadable:  {_percent(a.lru_offloadable_fraction(gpu))}"
                     f"{_split(a.lru_offloadable_split(gpu))}")
        if lower is not None:
            tiers = lru_tiers(a, gpu, lower)
            lines.append(f"with a {lower:,}-token lower tier: it serves "
                         f"{_percent(tiers['lower_tier_hit'])}, neither tier holds "
                         f"{_percent(tiers['beyond_tiers'])}")
        if opt:
            gap = METRICS["opt_gap_fraction"].value(a, at=gpu)
            lines.append(f"OPT (Belady) hit: {_percent(a.opt_hit_fraction(gpu))}; gap to LRU "
                         f"{_points(gap)} (no eviction policy does better)")
        for name, hit in (policies or {}).items():
            lines.append(f"{name} (block-level): hit {_percent(hit)}")
        lines.extend(capacity_lines(a, gpu, target_hit))
    elif target_hit is not None:
        lines.extend(capacity_lines(a, None, target_hit))
    if ttls:
        lines.extend(_time_lines(a, ttls))
    if getattr(a, "sample", None) is not None:
        lines[1:1] = [f"sample:           SHARDS, {a.sampled_note}: figures are estimates "
                      "(requests, blocks, tokens counted exactly)"]
        lines.extend(_sample_lines(a, gpu, opt=opt, ttls=ttls))
    return "\n".join(lines)


def capacity_lines(a: ReuseAnalysis, gpu: int | None,
                   target_hit: float | None = None) -> list[str]:
    """The sizes that answer "how big a cache?": for ``target_hit``; for 90 % of the hit
    rate an unbounded cache reaches; and the lower tier below ``gpu`` beyond which more of
    it serves under 1 % of what an unbounded one would."""
    if not a.counted_tokens:
        return []
    bpt = a.bytes_per_token
    lines = []
    if target_hit is not None:
        c = a.lru_capacity_for(target_hit)
        lines.append(f"LRU hit {_percent(target_hit)} needs: "
                     + (size(c, bpt) if c is not None else
                        f"no cache reaches it (an unbounded one hits "
                        f"{_percent(1 - a.compulsory_fraction)})"))
    reachable = 1.0 - a.compulsory_fraction
    if reachable > 0:
        lines.append(f"{REACHABLE_SHARE * 100:.0f} % of the reachable hit rate "
                     f"({_percent(REACHABLE_SHARE * reachable)} of {_percent(reachable)}) "
                     f"needs a GPU cache of "
                     f"{size(a.lru_capacity_reachable(REACHABLE_SHARE), bpt)}")
    if gpu is not None:
        tier = a.lru_lower_tier_for(gpu, LOWER_TIER_SHARE)
        if tier is not None:
            lines.append(f"below {size(gpu, bpt)} of GPU cache, a lower tier of "
                         f"{size(tier, bpt)} serves {LOWER_TIER_SHARE * 100:.0f} % of what an "
                         "unbounded one would")
    return lines


def _sample_lines(a: ReuseAnalysis, gpu: int | None, *, opt: bool,
                  ttls: Sequence[int | float]) -> list[str]:
    """Every estimated figure of the summary with its standard error (docs/sampling.md)."""
    wanted: list[tuple[str, dict]] = [("unique_blocks", {}), ("reuse_count", {}),
                                      ("reused_fraction", {}), ("compulsory_fraction", {})]
    if gpu is not None:
        names = ["offloadable_fraction", "lru_hit_fraction", "lru_offloadable_fraction"]
        wanted += [(n, {"at": gpu}) for n in names + (["opt_hit_fraction"] if opt else [])]
    if a.times_reason is None:
        wanted += [("ttl_hit_fraction", {"at": t}) for t in ttls]
    lines = [f"sampled estimates, ± {a.error_method}:"]  # type: ignore[attr-defined]
    for name, args in wanted:
        m = METRICS[name]
        value, error = m.value(a, **args), a.figure_error(name, **args)  # type: ignore[attr-defined]
        text = estimate_text(m.unit, value, error, 4, UNDEFINED_TEXT)
        lines.append(f"  {figure_title(name, args)}: {text}")
    return lines


def _points(x: float | None) -> str:
    return UNDEFINED_TEXT if x is None else f"{x * 100:+.4f} points"


def _time_lines(a: ReuseAnalysis, ttls: Sequence[int | float]) -> list[str]:
    """The TTL figures, or one line saying why the trace has none."""
    reason = a.times_reason
    if reason is not None:
        return [f"reuse time:       undefined: {reason}"]
    q = [seconds(a.reuse_time_quantile(p), UNDEFINED_TEXT) for p in (0.5, 0.9, 0.99)]
    lines = [f"reuse time:       median {q[0]}, p90 {q[1]}, p99 {q[2]}"]
    for ttl in ttls:
        lines.append(f"TTL {seconds(ttl)}: hit {_percent(a.ttl_hit_fraction(ttl))}, peak "
                     f"{tokens(a.ttl_peak_tokens(ttl), UNDEFINED_TEXT)} held")
    return lines


def lru_tiers(a: ReuseAnalysis, gpu: int, lower: int) -> dict[str, float | None]:
    """Every counted token lands in exactly one of these shares (they add up to 1)."""
    served = METRICS["lower_tier_hit_fraction"].value(a, at=gpu, lower_tier=lower)
    beyond = METRICS["beyond_tiers_fraction"].value(a, at=gpu, lower_tier=lower)
    return {"gpu_hit": defined(a.lru_hit_fraction(gpu)), "lower_tier_hit": served,
            "beyond_tiers": beyond, "compulsory": defined(a.compulsory_fraction)}


def replica_table(a: ReuseAnalysis, gpu: int, replicas: Sequence[int],
                  routings: Sequence[str]) -> str:
    """Replicas x routing: the hit fraction and load imbalance, beside the single pooled
    cache of N x the GPU size; a routing the trace cannot take (session routing without
    sessions) reads as undefined, with the reason once below."""
    head = ["replicas", *(f"{r} {what}" for r in routings for what in ("hit", "imbalance")),
            "pooled N x C hit"]
    rows, notes = [], []
    for n in sorted(replicas):
        row = [f"{n:,}"]
        for r in routings:
            try:
                x = a.routed(gpu, replicas=n, routing=r)
            except KvReuseError as exc:
                notes += [exc.message] if exc.message not in notes else []
                row += [UNDEFINED_TEXT, UNDEFINED_TEXT]
                continue
            row += [_percent(defined(x.hit_fraction)),
                    ratio(defined(x.imbalance), UNDEFINED_TEXT)]
        row.append(_percent(defined(a.lru_hit_fraction(n * gpu))))
        rows.append(row)
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines = [f"replicas behind a router, a GPU cache of {gpu:,} tokens each:"]
    lines += ["  " + "  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True))
              for r in [head, *rows]]
    lines += [f"  {note}" for note in notes]
    return "\n".join(lines)


def trace_result(a: ReuseAnalysis, trace: str, gpu: int | None,
                 lower: int | None = None, *, opt: bool = False,
                 ttls: Sequence[int | float] = (),
                 policies: Sequence[str] = (), target_hit: float | None = None,
                 replicas: Sequence[int] = (), routings: Sequence[str] = ()) -> TraceResult:
    """The result document's trace: every figure, at the GPU size, with the lower tier,
    the cache size for the target hit, and the replicas."""
    figures: list[tuple[str, dict]] = []
    if gpu is not None and lower is not None:
        figures = [(name, {"at": gpu, "lower_tier": lower})
                   for name in ("lower_tier_hit_fraction", "beyond_tiers_fraction")]
    if target_hit is not None:
        figures += [("lru_capacity_for", {"hit": target_hit}),
                    ("lru_capacity_reachable", {"share": REACHABLE_SHARE})]
    # Lets `kvreuse compare` tell a new export of a trace from the same bytes.
    # A pipe cannot be read again: its hash is the one analyze() took of the bytes read.
    sha = getattr(a, "content_sha256", None) or content_sha256(a.params["path"])
    return TraceResult.from_analysis(a, name=Path(trace).name, path=trace,
                                     sizes=[gpu] if gpu else [], figures=figures,
                                     content_sha256=sha,
                                     include=OPT_METRICS if opt else (), ttls=ttls,
                                     policies=policies, replicas=replicas,
                                     routings=routings)


def plot_analysis(a: ReuseAnalysis, gpu: int | None, path: str,
                  lower: int | None = None, *, opt: bool = False) -> None:
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
                style={"color": "darkorange"}, start=a.lru.reusable_fraction),
         *([Series("OPT (Belady): not held by an optimal x-token cache",
                   *a.opt_offloadable_curve(), style={"color": "seagreen"},
                   start=reusable)] if opt else [])],
        gpu_cache_tokens=gpu,
        offloadable=None if gpu is None else a.offloadable_fraction(gpu),
        lru_offloadable=None if gpu is None else a.lru_offloadable_fraction(gpu),
        stats=stats, tier_bounds=tier_bounds,
        title=f"{a.params.get('path')} (block size {a.block_size})")
    save_figure(fig, path)


def _run(a: ReuseAnalysis, result: TraceResult, argv: Sequence[str]) -> dict:
    from .output.report import run_info

    duration = sum(v for v in a.timings.values() if isinstance(v, float))
    run = run_info(["kvreuse", *argv], duration_s=duration)
    run["timings"] = {result.name: trace_timings(a)}
    return run


def _run_analyze(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    trace = args.trace or args.input_file
    if args.trace and args.input_file and args.trace != args.input_file:
        parser.error("give the trace once: as TRACE or as --input-file")
    if not trace:
        parser.error("a trace is required: kvreuse analyze TRACE")
    if args.lower_tier_size is not None and args.gpu_kv_cache_size is None:
        parser.error("--lower-tier-size needs --gpu-kv-cache-size")
    if args.routing and not args.replicas:
        parser.error("--routing needs --replicas")
    for flag, given in (("--opt", args.opt), ("--policies", args.policies),
                        ("--replicas", args.replicas)):
        if given and args.gpu_kv_cache_size is None:
            parser.error(f"{flag} needs --gpu-kv-cache-size")
    policies = _policies_available(args.policies)
    routings = args.routing or ("round-robin", "prefix")
    params = AnalysisParams.from_mapping({p.name: getattr(args, p.name) for p in PARAMS})
    # Sizes in bytes become tokens before the trace is read: a byte size without a model is
    # one line, not a wasted analysis.
    gpu = lower = None
    if args.gpu_kv_cache_size is not None:
        gpu = params.size_tokens("--gpu-kv-cache-size", args.gpu_kv_cache_size)
    if args.lower_tier_size is not None:
        lower = params.size_tokens("--lower-tier-size", args.lower_tier_size)
    a = analyze(trace, params, cache_dir=args.cache_dir, use_cache=args.use_cache,
                progress=False if args.quiet else None, jobs=args.jobs, dask=args.dask)
    # No full block to count: the fractions are undefined (null in JSON, "undefined" in
    # the summary), which is a result, not an input error; say why on stderr.
    if a.num_blocks == 0:
        print(f"kvreuse: note: {trace}: no request holds a full block of {a.block_size} "
              "tokens: the fractions are undefined", file=sys.stderr)
    elif a.counted_tokens == 0:
        print(f"kvreuse: note: {trace}: the warm-up ({a.warmup_requests:,} of "
              f"{a.num_requests:,} requests) leaves no full block to count: the fractions "
              "are undefined", file=sys.stderr)
    causes: dict = {}
    if args.top_prefixes or args.why:
        causes = causes_document(a, top_prefixes=args.top_prefixes, why=args.why,
                                 sizes=[gpu] if gpu else [])
    if args.json or args.html:
        # jinja2 and matplotlib load only for the outputs that need them.
        from .output import report

        result = trace_result(a, trace, gpu, lower, opt=args.opt, ttls=args.ttl,
                              policies=policies, target_hit=args.target_hit,
                              replicas=args.replicas, routings=routings)
        result.causes = causes
        run = _run(a, result, getattr(args, "argv", []))
        if args.json:
            report.write_json(args.json, [result], run)
        if args.html:
            report.write_report(args.html, [result], run)
    if args.output:
        plot_analysis(a, gpu, args.output, lower, opt=args.opt)
    if not args.quiet:
        hits = {p: a.policy_hit_fraction(p, gpu) for p in policies} if gpu else {}
        print(_summary(a, gpu, lower, opt=args.opt, ttls=args.ttl, policies=hits,
                       target_hit=args.target_hit))
        if args.replicas:
            print(replica_table(a, gpu, args.replicas, routings))
        if causes:
            from .output.causes import causes_text

            print(causes_text(causes))
    return 0


def _policies_available(names: Sequence[str]) -> tuple[str, ...]:
    """The policies asked for, checked against libCacheSim; without it, one line on stderr
    naming the extra, and none (the rest of the analysis still runs)."""
    if not names:
        return ()
    from .core.policies import available_policies

    try:
        offered = {p.lower(): p for p in available_policies()}
    except KvReuseError as exc:
        print(f"kvreuse: note: --policies skipped: {exc.message}", file=sys.stderr)
        return ()
    unknown = [n for n in names if n not in offered]
    if unknown:
        raise KvReuseError(f"unknown policy {unknown[0]!r}; libCacheSim offers: "
                           + ", ".join(sorted(offered.values())))
    return tuple(names)


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
