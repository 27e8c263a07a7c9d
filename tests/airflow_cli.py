"""A real Airflow CLI on a throwaway AIRFLOW_HOME with a migrated SQLite metadata DB."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

AIRFLOW = str(Path(sys.executable).with_name("airflow"))
EXAMPLE_DAGS = Path(__file__).resolve().parent.parent / "dags_examples"


def airflow_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of an Airflow process of this venv on ``home``: no inherited ``AIRFLOW*``
    setting, the example DAGs, SQLite under ``home``, and this venv's ``airflow`` first on PATH
    (executors start ``airflow ...`` by name). ``extra`` adds or overrides variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(
        PATH=f"{Path(AIRFLOW).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(EXAMPLE_DAGS),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__UNIT_TEST_MODE="False",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home}/airflow.db",
    )
    env.update(extra)
    return env


@pytest.fixture(scope="session")
def airflow_cli(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., str]]:
    home = tmp_path_factory.mktemp("airflow_home")
    env = airflow_env(home)
    subprocess.run([AIRFLOW, "db", "migrate"], env=env, check=True, capture_output=True, timeout=600)

    def run(*args: str) -> str:
        done = subprocess.run([AIRFLOW, *args], env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"airflow {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    yield run
