"""Every shared fixture, in one place; helpers that are not fixtures live in ``airflow_fixtures``.

- ``_clear_token_cache`` (autouse): no test sees a token another test obtained.
- ``sim_conn``: the per-test simulator (``emedgene_simulator``, from the provider's pytest plugin,
  loaded by ``pytest_plugins`` below)
  with ``emedgene_default`` pointing at it.
- ``fake_clock``: a :class:`~airflow_fixtures.FakeClock` for waits that must not depend on how
  fast the machine is.
- ``airflow_home``: one throwaway AIRFLOW_HOME with a migrated SQLite DB per session, for the venv
  running pytest; ``airflow_cli`` runs the ``airflow`` CLI on it.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator

import pytest
from airflow_cli import AIRFLOW, airflow_env
from airflow_fixtures import AirflowHome, FakeClock, airflow_run, connect

from emedgene_provider.client.auth import TOKEN_CACHE
from emedgene_provider.testing import EmedgeneSimulator

#: The simulator's fixtures are opt-in: installing the provider loads nothing into other
#: projects' pytest sessions.
pytest_plugins = ["emedgene_provider.testing.pytest_plugin"]


@pytest.fixture(autouse=True)
def _clear_token_cache() -> Iterator[None]:
    """The token cache is process-wide: no test may see a token another test obtained."""
    TOKEN_CACHE.clear()
    yield
    TOKEN_CACHE.clear()


@pytest.fixture
def sim_conn(emedgene_simulator: EmedgeneSimulator, monkeypatch: pytest.MonkeyPatch) -> EmedgeneSimulator:
    """The per-test simulator, with ``emedgene_default`` pointing at it."""
    connect(monkeypatch, emedgene_simulator)
    return emedgene_simulator


@pytest.fixture
def fake_clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """A virtual clock; ``fake_clock.install(module)`` makes ``module`` wait on it."""
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
