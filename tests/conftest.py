from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.procs import Stack, start_stack


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One gateway for the whole session, for tests that do not change its configuration."""
    gateway = start_stack(tmp_path_factory.mktemp("stack"))
    yield gateway
    gateway.stop()


@pytest.fixture
def fresh_stack(tmp_path: Path) -> Iterator[Stack]:
    """A gateway of its own, for tests that reconfigure or restart it."""
    gateway = start_stack(tmp_path)
    yield gateway
    gateway.stop()
