"""OpenLineage events from a real Airflow, read back from OpenLineage's file transport.

``airflow dags test`` runs tests/e2e/lineage_dags/emedgene_lineage.py against the simulator twice,
in one AIRFLOW_HOME: with the default (paths hashed) and with ``[emedgene] lineage_plain_paths``.
The create defers until delivery, so its COMPLETE event is made by the resumed task.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from airflow_cli import airflow_env
from airflow_fixtures import CASE_NAME_PATTERN, airflow_run, valid_case

from emedgene_provider.case_events import tenant_asset_uri
from emedgene_provider.testing import EmedgeneSimulator

pytest.importorskip("airflow.providers.openlineage")  # the extra, which both venvs install

DAG_ID = "emedgene_lineage"
DAGS = Path(__file__).parent / "lineage_dags"
#: Two files in two of the tenant's storages; their paths hold the sample name.
FILES = [("7", "/runs/unit/S-UNIT-1.vcf.gz"), ("9", "runs/unit/S-UNIT-1.g.vcf.gz")]


def _sha(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


@dataclass
class Run:
    data: Path
    text: str  # the whole events file
    events: list[dict[str, Any]]
    tenant: str
    password: str
    case_name: str

    def event(self, task_id: str, kind: str = "COMPLETE") -> dict[str, Any]:
        found = [
            e for e in self.events if e["eventType"] == kind and e["job"]["name"] == f"{DAG_ID}.{task_id}"
        ]
        assert len(found) == 1, f"{kind} events of {task_id}: {len(found)}"
        return found[0]

    def datasets(self, task_id: str, side: str, kind: str = "COMPLETE") -> list[tuple[str, str]]:
        return [(d["namespace"], d["name"]) for d in self.event(task_id, kind)[side]]


def _case() -> dict[str, Any]:
    case = valid_case()
    files = case["test_data"]["samples"][0]["sampleFiles"]
    files.append(dict(files[0], path=FILES[1][1], filename="S-UNIT-1.gvcf.gz", storage_id=9))
    return case


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    home = tmp_path_factory.mktemp("lineage_airflow_home")
    out: dict[str, Run] = {}
    with EmedgeneSimulator(stage_seconds=0.2) as sim:
        conn = sim.connection_json()
        base = airflow_env(
            home,
            AIRFLOW__CORE__DAGS_FOLDER=str(DAGS),
            AIRFLOW_CONN_EMEDGENE_DEFAULT=json.dumps(conn),
            EMEDGENE_LINEAGE_CASE=json.dumps(_case()),
            EMEDGENE_POLL_INTERVAL="0.2",
        )
        done = airflow_run(base, "db", "migrate", timeout=600)
        assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
        for mode, plain in (("hashed", None), ("plain", "True")):
            data = tmp_path_factory.mktemp(f"lineage_{mode}")
            events_file = data / "ol.json"
            transport = {"type": "file", "log_file_path": str(events_file), "append": True}
            env = dict(
                base, EMEDGENE_DATA_DIR=str(data), AIRFLOW__OPENLINEAGE__TRANSPORT=json.dumps(transport)
            )
            if plain:
                env["AIRFLOW__EMEDGENE__LINEAGE_PLAIN_PATHS"] = plain
            done = airflow_run(env, "dags", "test", DAG_ID, timeout=300)
            assert done.returncode == 0, (done.stdout + done.stderr)[-6000:]
            text = events_file.read_text()
            events = [json.loads(line) for line in text.splitlines() if line.strip()]
            (export,) = (data / "exports").iterdir()
            out[mode] = Run(data, text, events, tenant_asset_uri(sim.url), conn["password"], export.stem)
    return out


@pytest.mark.e2e
def test_the_create_reports_its_sample_files_hashed_and_the_case_it_made(runs: dict[str, Run]) -> None:
    run = runs["hashed"]
    assert re.fullmatch(CASE_NAME_PATTERN, run.case_name)
    files = [(f"{run.tenant}/storage/{storage}", _sha(path)) for storage, path in FILES]
    assert run.datasets("create_case", "inputs") == files
    assert run.datasets("create_case", "outputs") == [(run.tenant, f"cases/{run.case_name}")]
    # Started twice (before and after its deferral), each time with the files it sends.
    starts = [
        e for e in run.events if e["eventType"] == "START" and e["job"]["name"].endswith(".create_case")
    ]
    assert [[(d["namespace"], d["name"]) for d in e["inputs"]] for e in starts] == [files, files]


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("task_id", "folder"), [("export_case", "exports"), ("get_candidates", "candidates")]
)
def test_a_result_task_reports_the_case_in_and_its_file_hashed_out(
    runs: dict[str, Run], task_id: str, folder: str
) -> None:
    run = runs["hashed"]
    written = run.data / folder / f"{run.case_name}.json"
    assert written.exists()
    assert run.datasets(task_id, "inputs") == [(run.tenant, f"cases/{run.case_name}")]
    assert run.datasets(task_id, "outputs") == [("file", _sha(str(written)))]


@pytest.mark.e2e
def test_candidates_through_xcom_report_the_case_only(runs: dict[str, Run]) -> None:
    run = runs["hashed"]
    assert run.datasets("candidates_xcom", "inputs") == [(run.tenant, f"cases/{run.case_name}")]
    assert run.datasets("candidates_xcom", "outputs") == []


def _without_asset_events(event: dict[str, Any]) -> dict[str, Any]:
    """The event less the task's outlets in the OpenLineage provider's own ``airflow`` run facet,
    which on Airflow 3 lists the asset events the task recorded, by their URIs (docs/lineage.md)."""
    event = json.loads(json.dumps(event))
    task = event["run"].get("facets", {}).get("airflow", {}).get("task", {})
    task.pop("outlets", None)
    return event


@pytest.mark.e2e
def test_no_path_sample_name_or_secret_leaves_by_default(runs: dict[str, Run]) -> None:
    """Not in our datasets, nor in any facet Airflow or OpenLineage add to any event; the written
    files' paths only where the ``airflow`` facet lists the task's Airflow asset events."""
    run = runs["hashed"]
    assert len(run.events) >= 9
    for private in ("S-UNIT-1", "runs/unit", "LIMS-UNIT-1", run.password):
        assert private not in run.text, private
    rest = json.dumps([_without_asset_events(e) for e in run.events])
    assert str(run.data / "exports") not in rest
    assert str(run.data / "candidates") not in rest


@pytest.mark.e2e
def test_the_option_sends_the_paths_as_they_are(runs: dict[str, Run]) -> None:
    run = runs["plain"]
    files = [(f"{run.tenant}/storage/{storage}", path) for storage, path in FILES]
    assert run.datasets("create_case", "inputs") == files
    assert run.datasets("create_case", "outputs") == [(run.tenant, f"cases/{run.case_name}")]
    export = run.data / "exports" / f"{run.case_name}.json"
    assert run.datasets("export_case", "outputs") == [("file", str(export))]
    assert run.password not in run.text
    assert "S-UNIT-1.vcf.gz" in run.text  # the opt-in, not a name that vanished
