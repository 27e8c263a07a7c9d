"""Every shared fixture, in one place; helpers that are not fixtures live in ``airflow_fixtures``.

- ``_fresh_process`` (autouse): no test sees what another shared through the process's
  :data:`~emedgene_provider.client.process.PROCESS` (tokens, rate limiters, connection reads,
  claims...); connections without ``requests_per_second`` are unlimited (tests/integration/test_rate_limit.py
  puts the default back).
- ``sim_conn``: the per-test simulator (``emedgene_simulator``, from the provider's pytest plugin,
  loaded by ``pytest_plugins`` below)
  with ``emedgene_default`` pointing at it.
- ``fake_clock``: a :class:`~emedgene_provider.testing.fakes.FakeClock` for waits that must not depend on how
  fast the machine is.
- ``airflow_home``: one throwaway AIRFLOW_HOME with a migrated SQLite DB per session, for the venv
  running pytest; ``airflow_cli`` runs the ``airflow`` CLI on it.
"""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Callable, Iterator

import pytest
from airflow_cli import AIRFLOW, airflow_env
from airflow_fixtures import AirflowHome, airflow_run, connect

from emedgene_provider.client import config, polling
from emedgene_provider.client.process import PROCESS
from emedgene_provider.testing import EmedgeneSimulator
from emedgene_provider.testing.fakes import FakeClock

#: The simulator's fixtures are opt-in: installing the provider loads nothing into other
#: projects' pytest sessions.
pytest_plugins = ["emedgene_provider.testing.pytest_plugin"]


@pytest.fixture(autouse=True)
def _fresh_process(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """What clients share is process-wide: no test may see a token another test obtained, a
    connection read or claim another test's tasks made, nor inherit another's pacing, pause or
    rate (a lower rate for a tenant URL would otherwise stick for the rest of the session).

    And a connection without ``requests_per_second`` is unlimited in these tests: many count the
    client's sleeps exactly (retries, reconcile windows) with recorders that take no time, which
    the pacing would add to, and the default 20/s would add ~0.1-0.3 s of real sleeping to every
    simulator test making a handful of quick calls. tests/integration/test_rate_limit.py restores the real
    default and covers the pacing; the e2e tests (real Airflow subprocesses) run with it too.
    """
    monkeypatch.setattr(config, "DEFAULT_REQUESTS_PER_SECOND", 0.0)
    PROCESS.reset()
    yield
    PROCESS.reset()


@pytest.fixture
def sim_conn(emedgene_simulator: EmedgeneSimulator, monkeypatch: pytest.MonkeyPatch) -> EmedgeneSimulator:
    """The per-test simulator, with ``emedgene_default`` pointing at it."""
    connect(monkeypatch, emedgene_simulator)
    return emedgene_simulator


@pytest.fixture
def task_log(caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> Callable[[], str]:
    """What the task logged: Airflow 3's task logger writes through structlog to stdout, Airflow
    2's through logging; read both."""
    caplog.set_level(logging.INFO)
    return lambda: caplog.text + capsys.readouterr().out


@pytest.fixture
def fake_clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """A virtual clock; ``fake_clock.install(module)`` makes ``module`` wait on it. Waits between
    polls are drawn without jitter here, so they land where the polling rule's arithmetic says
    (tests/integration/test_polling.py covers the jitter itself)."""
    monkeypatch.setattr(polling, "DEFAULT_JITTER", 0.0)
    return FakeClock(monkeypatch)


@pytest.fixture(scope="session")
def airflow_home(tmp_path_factory: pytest.TempPathFactory) -> AirflowHome:
    """A throwaway AIRFLOW_HOME with a migrated SQLite DB, for this venv's Airflow."""
    home = tmp_path_factory.mktemp("airflow_home")
    env = airflow_env(home)
    done = subprocess.run(
        [AIRFLOW, "db", "migrate"], env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, f"airflow db migrate failed:\n{done.stdout}\n{done.stderr}"
    return AirflowHome(home=home, env=env)


@pytest.fixture(scope="session")
def airflow_cli(airflow_home: AirflowHome) -> Callable[..., str]:
    """Run ``airflow <args>`` on the session's AIRFLOW_HOME; fails the test on a non-zero exit."""

    def run(*args: str) -> str:
        done = airflow_run(airflow_home.env, *args, timeout=300)
        assert done.returncode == 0, f"airflow {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    return run
