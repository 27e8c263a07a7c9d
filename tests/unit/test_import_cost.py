"""DAG files are parsed every few seconds: importing the operators, the sensor (and the trigger and
hook they name) must not load the HTTP clients, tenacity, the simulator or cryptography. They load
when a call is made; the simulator and cryptography never in production.

Measured in a fresh interpreter against a baseline of what Airflow's own base classes already
import, so the test names only what *this* package adds.
"""

from __future__ import annotations

import json
import subprocess
import sys

from locations import HEAVY, ROOT

_PROBE = """
import json, sys
from airflow.providers.common.compat.sdk import BaseOperator, BaseSensorOperator  # noqa: F401
from airflow.triggers.base import BaseTrigger  # noqa: F401
before = set(sys.modules)
import emedgene_provider.operators.emedgene  # noqa: F401
import emedgene_provider.sensors.emedgene  # noqa: F401
import emedgene_provider.triggers.emedgene  # noqa: F401
import emedgene_provider.hooks.emedgene  # noqa: F401
print(json.dumps(sorted(set(sys.modules) - before)))
"""


def _added_by_import() -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return list(json.loads(done.stdout.strip().splitlines()[-1]))


def test_importing_operators_sensor_and_trigger_loads_no_http_client() -> None:
    added = _added_by_import()
    assert "emedgene_provider.operators.emedgene" in added  # the probe did import them
    heavy = [m for m in added if any(m == h or m.startswith(h + ".") for h in HEAVY)]
    assert heavy == []


def test_the_simulator_pytest_plugin_is_opt_in() -> None:
    """Installing the provider must not load the simulator into every pytest session of every
    project: no ``pytest11`` entry point (this suite loads it with ``pytest_plugins``)."""
    from importlib.metadata import distribution

    entry_points = distribution("airflow-provider-emedgene").entry_points
    assert [ep.value for ep in entry_points if ep.group == "pytest11"] == []
    assert [ep.value for ep in entry_points if ep.group == "apache_airflow_provider"] == [
        "emedgene_provider:get_provider_info"
    ]
