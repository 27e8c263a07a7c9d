"""pytest fixtures that start the Emedgene simulator. Opt-in, so that installing the provider adds
nothing to other projects' test sessions: ``pytest_plugins = ["emedgene_provider.testing.pytest_plugin"]``
in a ``conftest.py``, or ``pytest -p emedgene_provider.testing.pytest_plugin``.

``emedgene_simulator`` gives each test a fresh, fast simulator (0.2 s lifecycle stages), so tests
never share cases, tokens or queued faults. ``emedgene_simulator_factory`` builds ones with other
options; every simulator it started is stopped at teardown, even when the test fails.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from emedgene_provider.testing.simulator import EmedgeneSimulator

#: Stage length of the ready-made fixture: short enough for tests, long enough to observe stages.
FIXTURE_STAGE_SECONDS = 0.2


@pytest.fixture
def emedgene_simulator_factory() -> Iterator[Callable[..., EmedgeneSimulator]]:
    """Call with :class:`EmedgeneSimulator` keyword arguments; returns a started simulator."""
    started: list[EmedgeneSimulator] = []

    def make(**options: Any) -> EmedgeneSimulator:
        options.setdefault("stage_seconds", FIXTURE_STAGE_SECONDS)
        sim = EmedgeneSimulator(**options).start()
        started.append(sim)
        return sim

    yield make
    for sim in reversed(started):
        sim.stop()


@pytest.fixture
def emedgene_simulator(
    emedgene_simulator_factory: Callable[..., EmedgeneSimulator],
) -> EmedgeneSimulator:
    """A started simulator with default credentials and 0.2 s lifecycle stages."""
    return emedgene_simulator_factory(stage_seconds=FIXTURE_STAGE_SECONDS)
