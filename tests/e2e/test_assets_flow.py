"""Results as Airflow Assets in a real Airflow: a delivered export starts the example consumer DAG
``emedgene_results_consumer``.

The producer ``emedgene_case_pipeline`` runs with ``airflow dags test``; the metadata DB then holds
the asset event (through the alias) and the consumer's queue row; the scheduler's own DAG-run
creation (``SchedulerJobRunner._create_dagruns_for_dags``, one step of its loop, run in a
subprocess) makes the asset-triggered run; ``airflow tasks test`` runs the consumer's task in that
run, which reads the export and writes its report.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import airflow
import pytest
from airflow_cli import airflow_env
from airflow_fixtures import (
    CASE_NAME_PATTERN,
    DAGBAG_SCRIPT,
    EXAMPLE_DAGS,
    AirflowHome,
    airflow_run,
    python_run,
)

from emedgene_provider.operators.emedgene import EXPORTS_ASSET_ALIAS
from emedgene_provider.testing import EmedgeneSimulator

AIRFLOW_3 = airflow.__version__.startswith("3.")
CONSUMER = "emedgene_results_consumer"
PRODUCER = "emedgene_case_pipeline"

#: Asset events, their aliases, the consumer's queue rows and its alias reference, both majors.
DB_SCRIPT = """
import json, sys
from airflow.utils.session import create_session
try:
    from airflow.models.asset import AssetEvent as Event, AssetDagRunQueue as Queue
    AIRFLOW_3 = True
except ImportError:
    from airflow.models.dataset import DatasetEvent as Event, DatasetDagRunQueue as Queue
    AIRFLOW_3 = False
consumer, prefix = sys.argv[1], sys.argv[2]
out = {}
with create_session() as session:
    events = []
    for e in session.query(Event).order_by(Event.id).all():
        uri = e.asset.uri if AIRFLOW_3 else e.dataset.uri
        if uri.startswith(prefix):
            events.append({
                "uri": uri, "extra": e.extra, "source": [e.source_dag_id, e.source_task_id],
                "aliases": sorted(a.name for a in e.source_aliases),
            })
    out["events"] = events
    queued = []
    for q in session.query(Queue).filter(Queue.target_dag_id == consumer).all():
        queued.append((q.asset if AIRFLOW_3 else q.dataset).uri)
    out["queued"] = queued
print(json.dumps(out, default=str))
"""

#: One step of the scheduler loop: create the DAG runs that are due, asset-triggered ones included;
#: then the consumer's runs with the events each consumed.
SCHEDULER_STEP_SCRIPT = """
import json, sys
from airflow.jobs.job import Job
from airflow.jobs.scheduler_job_runner import SchedulerJobRunner
from airflow.models import DagRun
from airflow.utils.session import create_session
from airflow.utils.sqlalchemy import prohibit_commit

consumer = sys.argv[1]
runner = SchedulerJobRunner(job=Job())
with create_session() as session:
    with prohibit_commit(session) as guard:
        runner._create_dagruns_for_dags(guard, session)
with create_session() as session:
    runs = []
    for run in session.query(DagRun).filter(DagRun.dag_id == consumer).order_by(DagRun.id).all():
        consumed = getattr(run, "consumed_asset_events", None)
        if consumed is None:
            consumed = run.consumed_dataset_events
        runs.append({
            "run_id": run.run_id,
            "run_type": str(getattr(run.run_type, "value", run.run_type)),
            "consumed": [(e.asset if hasattr(e, "asset") else e.dataset).uri for e in consumed],
        })
print(json.dumps(runs))
"""


@dataclass
class Flow:
    data: Path
    producer: Any
    db: dict[str, Any]
    runs_before_reparse: list[dict[str, Any]]
    runs: list[dict[str, Any]]
    consumer: Any
    reports: dict[str, Any]
    #: Airflow 2 only: the producer run on a DB no DAG processor has filled, and its events.
    unparsed_data: Path
    unparsed_run: Any = None
    unparsed_db: dict[str, Any] | None = None


def _ok(done: Any) -> None:
    assert done.returncode == 0, f"exit {done.returncode}\n{(done.stdout + done.stderr)[-6000:]}"


def _data_dir(tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    data = tmp_path_factory.mktemp(name)
    marker = data / "runs" / "latest" / "CopyComplete.txt"
    marker.parent.mkdir(parents=True)
    marker.write_text("run complete\n")
    return data


@pytest.fixture(scope="module")
def flow(tmp_path_factory: pytest.TempPathFactory) -> Flow:
    """The whole story in an AIRFLOW_HOME of its own: which runs an asset-triggered DAG consumes
    depends on every asset event in the DB, so no other test's events may be there."""
    home = tmp_path_factory.mktemp("assets_airflow_home")
    data = _data_dir(tmp_path_factory, "assets")
    unparsed = _data_dir(tmp_path_factory, "assets_unparsed")
    with EmedgeneSimulator(stage_seconds=0.2) as sim:
        base = airflow_env(
            home,
            AIRFLOW_CONN_EMEDGENE_DEFAULT=json.dumps(sim.connection_json()),
            EMEDGENE_POLL_INTERVAL="0.2",
        )
        _ok(airflow_run(base, "db", "migrate", timeout=600))
        unparsed_run = unparsed_db = None
        if not AIRFLOW_3:  # before any parse, the alias is not in the DB (Airflow 3 needs it not)
            unparsed_env = dict(base, EMEDGENE_DATA_DIR=str(unparsed))
            unparsed_run = airflow_run(unparsed_env, "dags", "test", PRODUCER)
            unparsed_db = python_run(unparsed_env, DB_SCRIPT, CONSUMER, f"file://{unparsed}/")
        env = dict(base, EMEDGENE_DATA_DIR=str(data))
        # What the DAG processor does first: the consumer and its alias are known; it is unpaused.
        _ok(airflow_run(env, "dags", "reserialize"))
        _ok(airflow_run(env, "dags", "unpause", CONSUMER))
        producer = airflow_run(env, "dags", "test", PRODUCER)
        _ok(producer)
        db = python_run(env, DB_SCRIPT, CONSUMER, f"file://{data}/")
        runs_before = python_run(env, SCHEDULER_STEP_SCRIPT, CONSUMER)
        runs = runs_before
        if not runs:
            # Airflow 2 resolves a DatasetAlias schedule when it parses the DAG: the DAG
            # processor's next parse of the consumer (every min_file_process_interval).
            _ok(airflow_run(env, "dags", "reserialize"))
            runs = python_run(env, SCHEDULER_STEP_SCRIPT, CONSUMER)
        consumer = None
        if runs:
            consumer = airflow_run(env, "tasks", "test", CONSUMER, "report_exports", runs[-1]["run_id"])
    reports_dir = data / "reports"
    reports = (
        {p.name: json.loads(p.read_text()) for p in reports_dir.iterdir()} if reports_dir.exists() else {}
    )
    return Flow(data, producer, db, runs_before, runs, consumer, reports, unparsed, unparsed_run, unparsed_db)


@pytest.mark.e2e
def test_consumer_dag_is_scheduled_on_the_exports_alias(airflow_home: AirflowHome) -> None:
    parsed = python_run(airflow_home.env, DAGBAG_SCRIPT, str(EXAMPLE_DAGS / f"{CONSUMER}.py"))
    assert parsed["errors"] == {}
    assert parsed["dags"] == {CONSUMER: {"report_exports": []}}


@pytest.mark.e2e
def test_the_producer_records_an_asset_event_for_the_written_export(flow: Flow) -> None:
    (export,) = sorted((flow.data / "exports").iterdir())
    case_name = export.stem
    assert re.fullmatch(CASE_NAME_PATTERN, case_name)
    uri = f"file://{export}"
    count = len(json.loads(export.read_text()))
    extra = {"case_name": case_name, "path": uri, "count": count, "kind": "export"}
    assert flow.db["events"] == [
        {"uri": uri, "extra": extra, "source": [PRODUCER, "export_case"], "aliases": [EXPORTS_ASSET_ALIAS]}
    ]
    assert flow.db["queued"] == [uri]  # the scheduler has the consumer to run on it


@pytest.mark.e2e
def test_the_scheduler_starts_the_consumer_on_the_export(flow: Flow) -> None:
    (export,) = sorted((flow.data / "exports").iterdir())
    (run,) = flow.runs
    assert run["run_type"] == ("asset_triggered" if AIRFLOW_3 else "dataset_triggered")
    assert run["consumed"] == [f"file://{export}"]
    # Airflow 3 queues the consumer on the event itself; Airflow 2.11 only once the consumer's DAG
    # file is parsed again (a DatasetAlias schedule is resolved at parse time).
    assert (flow.runs_before_reparse != []) is AIRFLOW_3


@pytest.mark.e2e
def test_the_consumer_reads_the_export_and_writes_its_report(flow: Flow) -> None:
    assert flow.consumer is not None
    _ok(flow.consumer)
    (export,) = sorted((flow.data / "exports").iterdir())
    variants = json.loads(export.read_text())
    report = flow.reports[export.name]
    assert report["case_name"] == export.stem
    assert report["export"] == f"file://{export}"
    assert report["variants"] == len(variants)
    assert sum(report["by_acmg"].values()) == len(variants)
    output = flow.consumer.stdout + flow.consumer.stderr
    assert output.count(f"Emedgene export of case {export.stem}:") == 1  # each event once
    assert list(flow.reports) == [export.name]


@pytest.mark.e2e
def test_airflow_2_dags_test_before_any_parse_succeeds_without_an_event(flow: Flow) -> None:
    if AIRFLOW_3:
        pytest.skip("Airflow 3 records the event with or without the alias in the DB")
    run = flow.unparsed_run
    _ok(run)
    (export,) = sorted((flow.unparsed_data / "exports").iterdir())
    assert export.suffix == ".json"
    assert f"Asset alias {EXPORTS_ASSET_ALIAS!r} is not in the metadata DB" in run.stdout + run.stderr
    assert flow.unparsed_db == {"events": [], "queued": []}
