from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.procs import Stack, start_stack

# Every dialect this build speaks; CURSORGATE_TEST_DIALECTS narrows the list (comma separated).
ALL_DIALECTS = ("inference", "agent", "legacy")  # in auto's order of preference


def test_dialects() -> list[str]:
    from core.upstream.dialects import AVAILABLE

    built = {d.value for d in AVAILABLE}
    wanted = os.environ.get("CURSORGATE_TEST_DIALECTS", ",".join(ALL_DIALECTS)).split(",")
    return [d for d in ALL_DIALECTS if d in built and d in wanted]


test_dialects.__test__ = False  # type: ignore[attr-defined]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Modules marked `every_dialect` run each test once per upstream dialect."""
    if metafunc.definition.get_closest_marker("every_dialect") and "dialect" in metafunc.fixturenames:
        metafunc.parametrize("dialect", test_dialects(), indirect=True, scope="session")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "every_dialect: run once per upstream dialect (legacy, inference, agent)"
    )


@pytest.fixture(scope="session")
def dialect(request: pytest.FixtureRequest) -> str:
    """The upstream dialect the gateway is pinned to; "auto" outside `every_dialect` modules."""
    return str(getattr(request, "param", "auto"))


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory, dialect: str) -> Iterator[Stack]:
    """One gateway per dialect for the whole session, for tests that do not change its configuration."""
    gateway = start_stack(tmp_path_factory.mktemp(f"stack-{dialect}"), dialect=dialect)
    yield gateway
    gateway.stop()


@pytest.fixture
def fresh_stack(tmp_path: Path, dialect: str) -> Iterator[Stack]:
    """A gateway of its own, for tests that reconfigure or restart it."""
    gateway = start_stack(tmp_path, dialect=dialect)
    yield gateway
    gateway.stop()


# Suites that skip when their dependency is missing; a run that skipped them says so at its end.
OPTIONAL_SUITES = {
    "CURSORGATE_TEST_POSTGRES_URL": (
        "PostgreSQL variants (set CURSORGATE_TEST_POSTGRES_URL; .ci/run starts a server)"
    ),
    "chromedriver": "admin page in a real browser (apt-get install chromium chromium-driver)",
    "npm": "Node SDK clients (needs node and npm)",
}


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    skipped = terminalreporter.stats.get("skipped", [])
    reasons = " ".join(str(getattr(report, "longrepr", "")) for report in skipped)
    missing = [label for needle, label in OPTIONAL_SUITES.items() if needle in reasons]
    if missing:
        terminalreporter.write_sep("!", "suites skipped for a missing dependency", yellow=True)
        for label in missing:
            terminalreporter.write_line(f"SKIPPED SUITE: {label}")
