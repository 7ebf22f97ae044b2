"""pytest glue for saved baselines (``--kvreuse-save``, ``--kvreuse-compare``, ...).

Loaded by the entry point through ``pytest_plugins``, so ``-p no:kvreuse`` turns it off
too. Options are read and checked at configure time; everything else is forwarded to a
:class:`~pytest_kvreuse.baselines.guard.BaselineGuard`. Like the entry point, it imports
the baselines code only in a run that saves or compares.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from ..baselines import DEFAULT_STORAGE
from .state import checks_a_trace, session_of

if TYPE_CHECKING:
    from ..baselines.drift import Comparison
    from ..baselines.guard import BaselineGuard
    from ..baselines.storage import BaselineStorage, SavedRun
    from ..result import TraceResult
    from .session import DeclaredTrace, KvReuseSession

# Bare --kvreuse-save / --kvreuse-compare. Strings, not object(): xdist ships option
# values to its workers.
_BARE = "\x00kvreuse-bare"
LATEST = "latest"


class DriftState:
    """A saving or comparing run's baseline state (a plain class: a dataclass would cost
    every pytest run of every user a few milliseconds at import)."""

    def __init__(self, guard: BaselineGuard, save_name: str | None) -> None:
        self.guard = guard
        self.save_name = save_name  # None: not saving; _BARE: the autosave name
        self.comparison: Comparison | None = None
        self.saved: SavedRun | None = None
        self.notes: list[str] = []
        self._results: dict = {}


_STATE = pytest.StashKey[DriftState]()
# Notes of a run that neither saves nor compares (no DriftState is made for it).
_NOTES = pytest.StashKey[list]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("kvreuse")
    group.addoption("--kvreuse-save", nargs="?", const=_BARE, default=None, metavar="NAME",
                    help="save this run's results as the next numbered baseline "
                         "(bare: named from the commit and time)")
    group.addoption("--kvreuse-autosave", action="store_true", default=None,
                    help="save this run as a baseline named from the commit and time")
    group.addoption("--kvreuse-storage", default=None, metavar="DIR",
                    help=f"directory of saved baselines (default: {DEFAULT_STORAGE} in the "
                         "rootdir)")
    group.addoption("--kvreuse-compare", nargs="?", const=LATEST, default=None,
                    metavar="NUM|NAME",
                    help="compare with a saved baseline: the latest (bare), number NUM or "
                         "the latest named NAME")
    group.addoption("--kvreuse-compare-fail", action="append", default=None, metavar="EXPR",
                    help="fail the tests of every trace whose METRIC drifted by more than "
                         "AMOUNT (METRIC:0.02) or AMOUNT percent (METRIC:5%%); repeatable")
    parser.addini("kvreuse_save", "save every run as a baseline under this name", default="")
    parser.addini("kvreuse_autosave", "save every run as a baseline named from the commit "
                  "and time", type="bool", default=False)
    parser.addini("kvreuse_storage", "directory of saved baselines, relative to the rootdir",
                  default="")
    parser.addini("kvreuse_compare", "compare with this saved baseline ('latest', a number "
                  "or a name)", default="")
    parser.addini("kvreuse_compare_fail", "drift tolerances (METRIC:AMOUNT or "
                  "METRIC:AMOUNT%), one per line", type="linelist", default=[])


def _given_bare(config: pytest.Config, flag: str, value: str) -> None:
    """Reject a test path swallowed as the optional value of a bare flag."""
    args = [str(a) for a in config.invocation_params.args]
    if f"{flag}={value}" in args or value in (_BARE, LATEST):
        return
    if (config.invocation_params.dir / value).exists():
        raise pytest.UsageError(
            f"{flag} took {value!r} (a path) as its value: write {flag}=VALUE, or put the "
            "bare flag after the test paths")


def _storage(config: pytest.Config) -> BaselineStorage:
    from ..baselines.storage import BaselineStorage

    value = config.getoption("kvreuse_storage")
    if value:
        return BaselineStorage(config.invocation_params.dir / value)
    ini = config.getini("kvreuse_storage")
    return BaselineStorage(config.rootpath / (ini or DEFAULT_STORAGE))


@pytest.hookimpl(trylast=True)  # after plugin.py has made the session
def pytest_configure(config: pytest.Config) -> None:
    fail = config.getoption("kvreuse_compare_fail")
    if fail is None:
        fail = config.getini("kvreuse_compare_fail")
    compare = config.getoption("kvreuse_compare")
    if compare is None:
        compare = config.getini("kvreuse_compare").strip() or None
    else:
        _given_bare(config, "--kvreuse-compare", compare)
    save = config.getoption("kvreuse_save")
    if save is not None:
        _given_bare(config, "--kvreuse-save", save)
    elif config.getoption("kvreuse_autosave") or config.getini("kvreuse_autosave"):
        save = _BARE
    else:
        save = config.getini("kvreuse_save").strip() or None
    if compare is None and save is None:
        if fail:  # checked even when unused: a typo is a usage error at once
            from ..baselines.drift import parse_tolerances
            from ..errors import KvReuseError

            try:
                parse_tolerances(fail)
            except KvReuseError as exc:
                raise pytest.UsageError(f"kvreuse: {exc.one_line()}") from None
        if config.getoption("kvreuse_compare_fail"):
            config.stash[_NOTES] = ["kvreuse: --kvreuse-compare-fail has no effect without "
                                    "--kvreuse-compare"]
        return
    from ..baselines.drift import parse_tolerances
    from ..baselines.guard import BaselineGuard
    from ..errors import KvReuseError

    try:
        tolerances = parse_tolerances(fail)
        guard = BaselineGuard(_storage(config), tolerances, compare=compare is not None,
                              selector=None if compare == LATEST else compare)
    except KvReuseError as exc:
        raise pytest.UsageError(f"kvreuse: {exc.one_line()}") from None
    state = DriftState(guard=guard, save_name=save)
    if config.getoption("kvreuse_compare_fail") and not guard.comparing:
        state.notes.append("kvreuse: --kvreuse-compare-fail has no effect without "
                           "--kvreuse-compare")
    config.stash[_STATE] = state
    if guard.comparing or save is not None:
        session_of(config).output_extenders.append(
            lambda results, run: _report_data(state, results, run))


def _report_data(state: DriftState, results: list[TraceResult], run: dict,
                 ) -> tuple[list[TraceResult], dict]:
    try:
        return state.guard.report_data(results, run)
    except Exception as exc:  # noqa: BLE001 - a report without baselines beats no report
        state.notes.append(f"kvreuse: warning: baseline data left out of the report: "
                           f"{type(exc).__name__}: {exc}")
        return results, run


# -- per item: fail the tests of a drifted trace -------------------------------------------

def _current_result(state: DriftState, kv: KvReuseSession, t: DeclaredTrace) -> TraceResult:
    """The trace's result as the session will report it (memoized while its sizes stay the
    same: the CCDF and the curves are not rebuilt for every item)."""
    key = (t.key, tuple(sorted(t.sizes)))
    if key not in state._results:
        state._results[key] = kv.result(t)
    return state._results[key]


@pytest.hookimpl(trylast=True)  # registered after the plugin's hooks: runs after its checks
def pytest_runtest_call(item: pytest.Item) -> None:
    __tracebackhide__ = True
    state = item.config.stash.get(_STATE, None)
    if state is None or not state.guard.comparing or not checks_a_trace(item):
        return
    from ..baselines.drift import DRIFTED
    from ..checks import ThresholdViolation
    from .items import declared_trace

    declared = declared_trace(item)
    if declared is None:
        return
    kv = session_of(item.config)
    path, params, name = declared
    t = kv.trace(path, params, name=name)
    if t.analysed.analysis is None:
        return
    result = _current_result(state, kv, t)
    # Measure every size the baseline measured, so each one is compared.
    sizes = state.guard.baseline_sizes(result)
    if not set(sizes) <= t.sizes:
        t = kv.trace(path, params, name=name, sizes=tuple(sizes))
        result = _current_result(state, kv, t)
    verdict = state.guard.verdict(result)
    if verdict.status == DRIFTED:
        raise ThresholdViolation(verdict.message())


# -- end of run: compare everything, save on the controller -------------------------------

def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    state = config.stash.get(_STATE, None)
    if state is None or hasattr(config, "workerinput"):
        return
    kv = session_of(config)
    results = kv.results()
    if state.guard.comparing:
        state.comparison = state.guard.compare(results)
        if state.comparison.failed and session.exitstatus == pytest.ExitCode.OK:
            # Drift in a trace no test item checks (e.g. only kvreuse_analyze used it).
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
    if state.save_name is None:
        return
    if session.exitstatus not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
        state.notes.append(f"kvreuse: no baseline saved: the run did not complete "
                           f"(exit status {int(session.exitstatus)})")
        return
    if not results:
        state.notes.append("kvreuse: no baseline saved: no trace was analysed")
        return
    from ..baselines.storage import autosave_name
    from ..errors import KvReuseError

    run = kv.run_info()
    name = autosave_name(run.get("git_commit")) if state.save_name == _BARE else \
        state.save_name
    try:
        state.saved = state.guard.save(results, run, name)
    except KvReuseError as exc:
        state.notes.append(f"kvreuse: error: baseline not saved: {exc.one_line()}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED if \
            session.exitstatus == pytest.ExitCode.OK else session.exitstatus


@pytest.hookimpl(trylast=True)  # below the plugin's summary table
def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):
        return
    for note in config.stash.get(_NOTES, []):
        terminalreporter.write_line(note)
    state = config.stash.get(_STATE, None)
    if state is None:
        return
    try:
        _summary(terminalreporter, config, state)
    except Exception as exc:  # noqa: BLE001 - a summary must never turn into a traceback
        terminalreporter.write_line(f"kvreuse: baseline summary not shown: "
                                    f"{type(exc).__name__}: {exc}")


def _summary(terminalreporter, config: pytest.Config, state: DriftState) -> None:
    from ..baselines.drift import format_comparison
    from ..baselines.storage import shown_path

    verbosity = config.get_verbosity() if hasattr(config, "get_verbosity") else \
        config.option.verbose
    quiet = verbosity < -1
    if state.comparison is not None and state.comparison.traces and not quiet:
        terminalreporter.write_sep("=", "kvreuse baseline comparison")
        terminalreporter.write_line(f"baseline: {state.guard.describe()}")
        for line in format_comparison(state.comparison).splitlines():
            terminalreporter.write_line(line)
    if state.saved is not None and (not quiet or state.comparison is None):
        terminalreporter.write_line(f"kvreuse: run saved as baseline {state.saved.label} "
                                    f"({shown_path(state.saved.path)})")
    for note in state.notes:
        terminalreporter.write_line(note)
