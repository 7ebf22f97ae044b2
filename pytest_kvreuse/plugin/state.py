"""Where the plugin keeps its run state (``config.stash``), and which items are its own.

Light on purpose: the entry point imports this in every pytest run of everyone who installs
the package, most of which never check a trace. The session and everything behind it
(manifests, analyses, results) are imported and built on first use only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from .session import KvReuseSession

SESSION_KEY = pytest.StashKey["KvReuseSession"]()
FACTORY_KEY = pytest.StashKey[Callable[[], "KvReuseSession"]]()


def session_of(config: pytest.Config) -> KvReuseSession:
    """The run's session, built on first use."""
    session = config.stash.get(SESSION_KEY, None)
    if session is None:
        session = config.stash[SESSION_KEY] = config.stash[FACTORY_KEY]()
    return session


def active_session(config: pytest.Config) -> KvReuseSession | None:
    """The run's session if anything used it, else None (nothing to report)."""
    return config.stash.get(SESSION_KEY, None)


def checks_a_trace(item: pytest.Item) -> bool:
    """A manifest item, or a test marked ``@pytest.mark.kvreuse``."""
    return getattr(item, "kvreuse_trace", None) is not None or \
        item.get_closest_marker("kvreuse") is not None


def uses_kvreuse(item: pytest.Item) -> bool:
    """An item of the plugin's, or a test using one of its fixtures."""
    names = getattr(item, "fixturenames", ())
    return checks_a_trace(item) or "kvreuse" in names or "kvreuse_analyze" in names
