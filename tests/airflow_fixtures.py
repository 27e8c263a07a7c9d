"""Helpers shared by the operator, sensor, trigger and example-DAG tests (the fixtures built on them
live in ``conftest.py``). Import what you use explicitly: ``from airflow_fixtures import ...``.

- Unit level: :class:`FakeTI` records ``xcom_push`` calls; :func:`make_context` wraps one in a
  task context; :func:`valid_case` is a small case the simulator accepts; :func:`connect` points
  ``emedgene_default`` at a simulator. The fakes (:class:`FakeTI`, ``FakeClock``, ``FakeTime``)
  are in :mod:`emedgene_provider.testing.fakes`.
- Real Airflow (``e2e``): :class:`AirflowHome` (the ``airflow_home`` fixture's value);
  :func:`airflow_run` runs the ``airflow`` CLI and :func:`python_run` a Python snippet in that
  environment, in subprocesses, so that no Airflow configuration is read by the pytest process.
"""

from __future__ import annotations

import copy
import json
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from airflow_cli import AIRFLOW, EXAMPLE_DAGS

from emedgene_provider.testing import EmedgeneSimulator
from emedgene_provider.testing.fakes import FakeTI

__all__ = ["EXAMPLE_DAGS", "FakeTI"]  # re-exported: the tests import them from here
CASE_NAME_PATTERN = r"EMG\d{9}"


def free_port() -> int:
    """A port nobody on this machine listens on right now (for servers the tests start)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- unit level ---------------------------------------------------------------------------------


def make_context(ti: FakeTI | None = None, **extra: Any) -> dict[str, Any]:
    """A task context with a :class:`FakeTI` and what templates in these tests use."""
    context: dict[str, Any] = {"ti": ti or FakeTI(), "run_id": "manual__unit", "params": {}}
    context.update(extra)
    return context


_VALID_CASE: dict[str, Any] = {
    "sharing_level": 0,
    "should_upload": False,
    "test_data": {
        "type": "Exome",
        "sample_type": "vcf",
        "gene_list": {"id": 1, "type": "all"},
        "labels": [],
        "selected_preset_set": "Default",
        "extra_data": {"lims_id": "LIMS-UNIT-1"},
        "patients": {
            "proband": {
                "id": "proband",
                "fastq_sample": "S-UNIT-1",
                "gender": "Female",
                "relationship": "Test Subject",
                "healthy": False,
                "phenotypes": [{"id": "phenotypes/EMG_PHENOTYPE_0001250"}],
            },
            "other": [],
        },
        "samples": [
            {
                "fastq": "S-UNIT-1",
                "status": "uploaded",
                "sampleFiles": [
                    {
                        "path": "/runs/unit/S-UNIT-1.vcf.gz",
                        "filename": "S-UNIT-1.vcf.gz",
                        "size": 0,
                        "status": "uploaded",
                        "storage_id": 7,
                    }
                ],
            }
        ],
    },
}


def valid_case(**extra_data: Any) -> dict[str, Any]:
    """A fresh copy of a valid singleton case; keyword arguments land in ``test_data.extra_data``
    (``simulator_outcome="Issue reported"`` scripts that case's outcome)."""
    case = copy.deepcopy(_VALID_CASE)
    case["test_data"]["extra_data"].update(extra_data)
    return case


def connect(
    monkeypatch: pytest.MonkeyPatch, sim: EmedgeneSimulator, conn: dict[str, Any] | None = None
) -> None:
    """Make ``emedgene_default`` the given connection (the simulator's own by default)."""
    monkeypatch.setenv("AIRFLOW_CONN_EMEDGENE_DEFAULT", json.dumps(conn or sim.connection_json()))


def status_gets(sim: EmedgeneSimulator) -> int:
    """How many ``GET /api/test/{name}`` (status or case) requests the simulator answered."""
    return int(sim.counters()["requests"].get("GET /api/test/{name}", 0))


def creates(sim: EmedgeneSimulator) -> int:
    return int(sim.counters()["requests"].get("POST /api/cases/v2/cases", 0))


# -- real Airflow, in subprocesses --------------------------------------------------------------


@dataclass
class AirflowHome:
    home: Path
    env: dict[str, str]

    def with_env(self, **extra: str) -> dict[str, str]:
        env = dict(self.env)
        env.update(extra)
        return env


def airflow_run(env: dict[str, str], *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """Run the ``airflow`` CLI; the caller asserts on the exit code and output."""
    return subprocess.run(
        [AIRFLOW, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def python_run(env: dict[str, str], script: str, *args: str, timeout: float = 120) -> Any:
    """Run ``script`` with this venv's Python; it must print one JSON document as its last line."""
    done = subprocess.run(
        [sys.executable, "-c", script, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, f"helper script failed:\n{done.stdout}\n{done.stderr}"
    return json.loads(done.stdout.strip().splitlines()[-1])


#: Parses a DAG folder the way the scheduler does; prints import errors, DAGs, tasks, links.
DAGBAG_SCRIPT = """
import json, sys
try:
    from airflow.dag_processing.dagbag import DagBag
except ImportError:
    from airflow.models.dagbag import DagBag
try:
    bag = DagBag(dag_folder=sys.argv[1], include_examples=False)
except TypeError:  # Airflow 3.3 dropped the argument: no examples unless configured
    bag = DagBag(dag_folder=sys.argv[1])
dags = {}
for dag_id, dag in bag.dags.items():
    dags[dag_id] = {
        task.task_id: sorted(type(link).__name__ + ":" + link.name for link in task.operator_extra_links)
        for task in dag.tasks
    }
print(json.dumps({"errors": {k: str(v) for k, v in bag.import_errors.items()}, "dags": dags}))
"""

#: The latest run of a DAG: its state, its task instances' states, their XComs and, for tasks
#: with the "Emedgene case" link, what the link resolves to. Airflow 2 resolves links on read
#: (``get_link`` reads the XCom table); Airflow 3 resolves them in the worker at the end of the
#: task (``get_link`` through the task SDK) and stores the result as the ``_link_<class>`` XCom,
#: which is what its API serves.
RUN_SCRIPT = """
import json, sys
from airflow.models import DagRun, TaskInstance
from airflow.utils.session import create_session
try:
    from airflow.models.xcom import XComModel as X
    AIRFLOW_3 = True
except ImportError:
    from airflow.models.xcom import XCom as X
    AIRFLOW_3 = False
from emedgene_provider.links.emedgene import EmedgeneCaseLink

dag_id = sys.argv[1]
out = {"airflow_3": AIRFLOW_3}
with create_session() as session:
    run = session.query(DagRun).filter(DagRun.dag_id == dag_id).order_by(DagRun.id.desc()).first()
    out["run_id"] = run.run_id
    out["state"] = str(getattr(run.state, "value", run.state))
    tis = session.query(TaskInstance).filter(
        TaskInstance.dag_id == dag_id, TaskInstance.run_id == run.run_id
    ).all()
    out["tasks"] = {
        f"{ti.task_id}[{ti.map_index}]": str(getattr(ti.state, "value", ti.state)) for ti in tis
    }
    rows = session.query(X).filter(X.dag_id == dag_id, X.run_id == run.run_id).all()
    out["xcom"] = {f"{r.task_id}[{r.map_index}]:{r.key}": r.value for r in rows}
    links = {}
    if not AIRFLOW_3:
        from airflow.models.dagbag import DagBag
        dag = DagBag(include_examples=False).get_dag(dag_id)
        for ti in tis:
            task = dag.get_task(ti.task_id)
            if any(isinstance(link, EmedgeneCaseLink) for link in task.operator_extra_links):
                links[f"{ti.task_id}[{ti.map_index}]"] = EmedgeneCaseLink().get_link(task, ti_key=ti.key)
    else:
        for r in rows:
            if r.key == "_link_" + EmedgeneCaseLink.__name__:
                links[f"{r.task_id}[{r.map_index}]"] = r.value
    out["links"] = links
print(json.dumps(out, default=str))
"""


def dag_run_summary(env: dict[str, str], dag_id: str) -> dict[str, Any]:
    """What :data:`RUN_SCRIPT` prints for the latest run of ``dag_id``."""
    result: dict[str, Any] = python_run(env, RUN_SCRIPT, dag_id)
    return result


def sim_cases(sim: EmedgeneSimulator) -> list[dict[str, Any]]:
    """Every case the simulator holds, whole, through the provider's own sync client."""
    from emedgene_provider.client.config import config_from_connection
    from emedgene_provider.client.sync import EmedgeneClient

    conn = sim.connection_json()
    config = config_from_connection(
        host=conn["host"], login=conn["login"], password=conn["password"], extra=conn["extra"]
    )
    client = EmedgeneClient(config)
    return [client.get_case(str(listed["name"])) for listed in client.iter_cases()]
