"""How the tests start Airflow processes: this venv's ``airflow`` and the one environment they get.

The fixtures built on it (``airflow_home``, ``airflow_cli``) live in ``conftest.py``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from locations import EXAMPLE_DAGS

AIRFLOW = str(Path(sys.executable).with_name("airflow"))


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
