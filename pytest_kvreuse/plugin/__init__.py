"""pytest plugin entry point (registered under ``pytest11`` as ``kvreuse``).

Thin on purpose: options, markers, fixtures and collection; the run state lives in a
:class:`~pytest_kvreuse.plugin.session.KvReuseSession` kept in ``config.stash``.

pytest loads this module in every run of everyone who installs the package. So it imports
only pytest and the standard library; the manifest reader, the session and everything
behind them are imported inside the hooks, the first time a run uses them (a manifest is
collected, a marked test or a fixture runs, a report is asked for).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from .state import FACTORY_KEY, active_session, checks_a_trace, session_of, uses_kvreuse

if TYPE_CHECKING:
    from .items import ManifestFile

# Saved baselines and drift checks (--kvreuse-save, --kvreuse-compare) live in their own
# module; loaded from here so that -p no:kvreuse turns them off too.
pytest_plugins = ("pytest_kvreuse.plugin.drift",)

DEFAULT_PATTERN = "kvreuse*.toml"
DEFAULT_REPORT = "kvreuse-report.html"
# --kvreuse-report given without a path. A string, not object(): xdist ships option values
# to its workers.
_BARE = "\x00kvreuse-default-report"
_OUTPUTS = pytest.StashKey[dict]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("kvreuse", "KV-cache reuse checks (pytest-kvreuse)")
    group.addoption("--kvreuse-manifest-pattern", default=None, metavar="GLOB",
                    help=f"file names collected as trace manifests (default: "
                         f"{DEFAULT_PATTERN}; space-separated for several)")
    group.addoption("--kvreuse-no-cache", action="store_true", default=None,
                    help="tokenize traces again instead of reading pytest's cache")
    group.addoption("--kvreuse-report", nargs="?", const=_BARE, default=None,
                    metavar="PATH",
                    help=f"write the HTML report (bare: {DEFAULT_REPORT} in the rootdir)")
    group.addoption("--kvreuse-json", default=None, metavar="PATH",
                    help="write the results as JSON")
    group.addoption("--kvreuse-template-dir", default=None, metavar="DIR",
                    help="templates overriding the report's own")
    group.addoption("--kvreuse-opt", action="store_true", default=None,
                    help="compute the Belady-optimal (OPT) hit fraction at every cache size "
                         "and its curve for the report (exact; may take a while on big "
                         "traces)")
    group.addoption("--kvreuse-ttl", default=None, metavar="TTLS",
                    help="TTL hit fraction and peak tokens at these time-to-lives, "
                         "comma-separated (60,600 or 10min,1h) on traces with timestamps")
    group.addoption("--kvreuse-policies", default=None, metavar="NAMES",
                    help="block-level hit fraction of these libCacheSim eviction policies "
                         "at every cache size, comma-separated (arc,s3fifo; needs "
                         "pytest-kvreuse[policies])")
    parser.addini("kvreuse_manifest_pattern", "file names collected as trace manifests",
                  default=DEFAULT_PATTERN)
    parser.addini("kvreuse_no_cache", "do not cache tokenized traces", type="bool",
                  default=False)
    parser.addini("kvreuse_report", "path of the HTML report, relative to the rootdir",
                  default="")
    parser.addini("kvreuse_json", "path of the JSON results, relative to the rootdir",
                  default="")
    parser.addini("kvreuse_template_dir", "templates overriding the report's own",
                  default="")
    parser.addini("kvreuse_opt", "compute the OPT (Belady) figures for every trace",
                  type="bool", default=False)
    parser.addini("kvreuse_ttl", "time-to-lives of the TTL figures, comma-separated",
                  default="")
    parser.addini("kvreuse_policies", "libCacheSim policies compared with LRU and OPT, "
                  "comma-separated", default="")


def _setting(config: pytest.Config, name: str) -> object:
    value = config.getoption(name)
    return config.getini(name) if value is None else value


def _out_path(config: pytest.Config, name: str) -> Path | None:
    """An output path: from the command line relative to the invocation directory, from the
    ini file relative to the rootdir."""
    value = config.getoption(name)
    if value == _BARE:  # equality: under xdist a worker gets a copy of the string
        return config.rootpath / DEFAULT_REPORT
    if value:
        path = config.invocation_params.dir / value
    else:
        ini = config.getini(name)
        path = config.rootpath / ini if ini else None
    if name == "kvreuse_report" and path is not None and path.suffix.lower() not in (
            ".html", ".htm"):
        # `--kvreuse-report tests/` would otherwise take the test path as the report and
        # write over it.
        raise pytest.UsageError(
            f"the kvreuse report path must end in .html, got {str(value or ini)!r} (write "
            f"--kvreuse-report=PATH, or give the bare flag after the test paths)")
    return path


def _list(config: pytest.Config, name: str, parse: Callable[[str, object], object],
          flag: str) -> tuple:
    from ..errors import KvReuseError

    text = str(_setting(config, name) or "")
    try:
        return tuple(dict.fromkeys(parse(flag, part) for part in text.split(",")
                                   if part.strip()))
    except KvReuseError as exc:
        raise pytest.UsageError(exc.message) from None


def _computed(config: pytest.Config) -> tuple[dict, list[str]]:
    """What the results compute beyond the defaults (the fields of ``Computed``), and a
    note for what cannot be."""
    opt = bool(_setting(config, "kvreuse_opt"))
    if not (_setting(config, "kvreuse_ttl") or _setting(config, "kvreuse_policies")):
        return {"opt": opt}, []
    from ..errors import KvReuseError
    from ..metrics import parse_name, parse_seconds

    notes = []
    policies = _list(config, "kvreuse_policies", parse_name, "--kvreuse-policies")
    if policies:
        from ..core.policies import available_policies

        try:
            offered = {p.lower() for p in available_policies()}
        except KvReuseError as exc:
            notes.append(f"kvreuse: note: --kvreuse-policies ignored: {exc.message}")
            policies = ()
        else:
            unknown = [p for p in policies if p not in offered]
            if unknown:
                raise pytest.UsageError(f"--kvreuse-policies: unknown policy {unknown[0]!r}; "
                                        f"libCacheSim offers: {', '.join(sorted(offered))}")
    computed = {"opt": opt,
                "ttls": _list(config, "kvreuse_ttl", parse_seconds, "--kvreuse-ttl"),
                "policies": policies}
    return computed, notes


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "kvreuse(path, block_size=64, tokenizer=..., gpu_cache_tokens=N, "
        "min_offloadable=F, max_offloadable=F, min_<metric>=X, max_<metric>=X, ...): "
        "analyse the trace "
        "(relative to the test file) for the `kvreuse` fixture and check the bounds after "
        "the test")
    cache = getattr(config, "cache", None)
    cache_dir: Callable[[], Path] | None = None
    if cache is not None:
        def cache_dir() -> Path:
            # Created on first analysis only: runs that analyse nothing leave no directory.
            return Path(cache.mkdir("kvreuse"))
    use_cache = not _setting(config, "kvreuse_no_cache")
    args = [str(a) for a in config.invocation_params.args]
    # Checked now, so a bad --kvreuse-ttl or --kvreuse-policies is a usage error at once.
    computed, notes = _computed(config)

    def make_session() -> object:
        from .session import Computed, KvReuseSession

        kv = KvReuseSession(rootpath=config.rootpath, cache_dir=cache_dir,
                            use_cache=use_cache, args=args, computed=Computed(**computed))
        kv.output_notes.extend(notes)
        return kv

    config.stash[FACTORY_KEY] = make_session
    config.stash[_OUTPUTS] = {
        "report": _out_path(config, "kvreuse_report"),
        "json": _out_path(config, "kvreuse_json"),
        "template_dir": _setting(config, "kvreuse_template_dir") or None,
    }


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> ManifestFile | None:
    patterns = str(_setting(parent.config, "kvreuse_manifest_pattern")).split()
    if any(fnmatch.fnmatch(file_path.name, p) for p in patterns):
        from .items import ManifestFile

        return ManifestFile.from_parent(parent, path=file_path)
    return None


# -- marker and fixtures -------------------------------------------------------------------

@pytest.fixture(scope="session")
def kvreuse_analyze(request: pytest.FixtureRequest) -> Callable[..., object]:
    """``kvreuse_analyze(path, **params)`` -> ReuseAnalysis, once per file content and
    parameters in the whole run (a relative path resolves against the rootdir)."""
    from .marker import check_params

    session = session_of(request.config)

    def analyze(path: str | Path, **params: object) -> object:
        path = Path(path)
        if not path.is_absolute():
            path = request.config.rootpath / path
        return session.analysis(path, check_params(params, "kvreuse_analyze"), dynamic=True)

    return analyze


@pytest.fixture
def kvreuse(request: pytest.FixtureRequest) -> object:
    """The ReuseAnalysis of the trace named by the test's ``@pytest.mark.kvreuse``."""
    from ..errors import KvReuseError
    from .items import marker_spec_of

    spec = marker_spec_of(request.node, strict=True)
    if spec is None:
        raise KvReuseError("the kvreuse fixture needs @pytest.mark.kvreuse(path, ...) on "
                           "the test")
    sizes = (spec.gpu_cache_tokens,) if spec.gpu_cache_tokens else ()
    return session_of(request.config).analysis(spec.path, spec.params, sizes=sizes)


@pytest.hookimpl(trylast=True)
def pytest_runtest_call(item: pytest.Item) -> None:
    # trylast: runs after the test body, and only when the body passed (an exception in
    # item.runtest() stops the hook chain), so marker bounds are checked after the test.
    __tracebackhide__ = True
    if item.get_closest_marker("kvreuse") is None:
        return
    from .items import marker_spec_of

    spec = marker_spec_of(item, strict=True)
    session = session_of(item.config)
    # The marker's own name for the trace, not the entry's: under xdist which other test
    # reached the entry first differs between runs.
    session.check_trace(spec.path, spec.params, spec.checks, name=None,
                        sizes=(spec.gpu_cache_tokens,) if spec.gpu_cache_tokens else (),
                        nodeid=item.nodeid, properties=item.user_properties)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    # trylast: after -k / -m deselection. Declaring in collection order lists the traces
    # in declaration order, the same on every xdist worker.
    mine = [item for item in items if checks_a_trace(item)]
    if not mine:
        return
    from .items import declared_trace

    kv = session_of(config)
    for item in mine:
        declared = declared_trace(item)
        if declared is not None:
            path, params, name = declared
            kv.declare(path, params, name=name)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    if not uses_kvreuse(item):
        return
    from .items import one_line_failure

    report = outcome.get_result()
    # Python tests that use the plugin fail with its one line, not a plugin traceback.
    message = None
    if call.excinfo is not None:
        message = one_line_failure(call.excinfo)
        if message is not None and isinstance(item, pytest.Function):
            report.longrepr = message
    if (call.when == "call" or (call.when == "setup" and report.failed)) \
            and checks_a_trace(item):
        _record_outcome(item, report, message)


def _record_outcome(item: pytest.Item, report: pytest.TestReport, message: str | None) -> None:
    from .items import declared_trace

    declared = declared_trace(item)
    if declared is None:
        return
    path, params, name = declared
    kv = session_of(item.config)
    text = message or (report.longreprtext.strip().splitlines() or [""])[-1]
    kv.item_outcome(kv.declare(path, params, name=name), item.nodeid, report.passed,
                    text or None)


# -- end of run ----------------------------------------------------------------------------

def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    kv = active_session(config)
    if _is_worker(config):
        if kv is not None:
            config.workeroutput["kvreuse"] = kv.payload()  # type: ignore[attr-defined]
        return
    out = config.stash[_OUTPUTS]
    if out["report"] is None and out["json"] is None:
        return
    session_of(config).write_outputs(report=out["report"], json_path=out["json"],
                                     template_dir=out["template_dir"])


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:  # noqa: ANN001 - xdist's WorkerController
    payload = getattr(node, "workeroutput", {}).get("kvreuse")
    if payload:
        session_of(node.config).add_worker_payload(payload)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if _is_worker(config):
        return
    try:
        _terminal_summary(terminalreporter, config)
    except Exception as exc:  # noqa: BLE001 - a summary must never turn into a traceback
        terminalreporter.write_line(f"kvreuse: summary not shown: {type(exc).__name__}: "
                                    f"{exc}")


def _terminal_summary(terminalreporter, config: pytest.Config) -> None:
    kv = active_session(config)
    if kv is None:
        return  # nothing used the plugin in this run
    from ..output import summary

    quiet = config.get_verbosity() < -1 if hasattr(config, "get_verbosity") else \
        config.option.verbose < -1
    results = kv.results()
    if results and not quiet:
        terminalreporter.write_sep("=", "kvreuse summary")
        for line in summary.summary_table(results):
            terminalreporter.write_line(line)
        terminalreporter.write_line(summary.summary_footer(results))
    for note in kv.output_notes:
        if not quiet or "warning" in note:
            terminalreporter.write_line(note)
