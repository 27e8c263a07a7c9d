"""Results as Airflow Assets (Datasets on Airflow 2): what the export and candidates operators
declare, what they record when they write, and a real Airflow in which a delivered export starts
the example consumer DAG ``emedgene_results_consumer``.

Unit level: outlets at parse time (plain and mapped tasks), the asset URI of a written path, and
the events recorded through Airflow's own ``OutletEventAccessors`` against the simulator.
Real Airflow (``e2e``): the producer ``emedgene_case_pipeline`` runs with ``airflow dags test``;
the metadata DB then holds the asset event (through the alias) and the consumer's queue row; the
scheduler's own DAG-run creation (``SchedulerJobRunner._create_dagruns_for_dags``, one step of its
loop, run in a subprocess) makes the asset-triggered run; ``airflow tasks test`` runs the
consumer's task in that run, which reads the export and writes its report.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import DAG, Asset, AssetAlias, ObjectStoragePath
from airflow_cli import airflow_env
from airflow_fixtures import (
    CASE_NAME_PATTERN,
    DAGBAG_SCRIPT,
    EXAMPLE_DAGS,
    AirflowHome,
    airflow_run,
    make_context,
    python_run,
    valid_case,
)

from emedgene_provider.hooks.emedgene import EmedgeneHook
from emedgene_provider.operators import results as operators_module
from emedgene_provider.operators.assets import asset_uri
from emedgene_provider.operators.emedgene import (
    CANDIDATES_ASSET_ALIAS,
    EXPORTS_ASSET_ALIAS,
    EmedgeneExportCaseOperator,
    EmedgeneGetCandidatesOperator,
)
from emedgene_provider.testing import EmedgeneSimulator

try:  # Airflow 3
    from airflow.sdk.execution_time.context import OutletEventAccessors

    AIRFLOW_3 = True
except ImportError:  # Airflow 2
    from airflow.utils.context import OutletEventAccessors  # type: ignore[no-redef]

    AIRFLOW_3 = False

OPERATORS = [
    (EmedgeneExportCaseOperator, EXPORTS_ASSET_ALIAS, "export"),
    (EmedgeneGetCandidatesOperator, CANDIDATES_ASSET_ALIAS, "candidates"),
]
CONSUMER = "emedgene_results_consumer"
PRODUCER = "emedgene_case_pipeline"


def _dag() -> DAG:
    return DAG("unit_dag", schedule=None, start_date=datetime(2026, 1, 1))


def _alias_events(events: Any, alias: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(alias, asset URI, event extra) of each event recorded through ``alias``, both majors."""
    accessor = events[AssetAlias(alias)]
    if AIRFLOW_3:
        return [(e.source_alias_name, e.dest_asset_key.uri, e.extra) for e in accessor.asset_alias_events]
    return [
        (e["source_alias_name"], e["dest_dataset_uri"], e["extra"]) for e in accessor.dataset_alias_events
    ]


def _created_case() -> str:
    return EmedgeneHook().client.create_case(valid_case())


# -- the asset URI ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "uri"),
    [
        ("file:///data/exports/EMG1.json", "file:///data/exports/EMG1.json"),
        ("/data/exports/EMG1.json", "file:///data/exports/EMG1.json"),
        ("s3://bucket/exports/EMG1.json", "s3://bucket/exports/EMG1.json"),
        ("s3://aws_lab@bucket/exports/EMG1.json", "s3://bucket/exports/EMG1.json"),
        ("gs://bucket/a/EMG1.json", "gs://bucket/a/EMG1.json"),
    ],
)
def test_asset_uri_names_the_file_without_the_connection(path: str, uri: str) -> None:
    assert asset_uri(ObjectStoragePath(path)) == uri
    # Already what Airflow's own URI rules make of it: the asset is stored under this very URI.
    assert Asset(uri=uri).uri == uri


def test_asset_uri_of_a_relative_local_path_is_where_it_is_written(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    # Airflow 3 writes a relative local path under the working directory; Airflow 2's
    # ObjectStoragePath roots it at "/".
    expected = (tmp_path if AIRFLOW_3 else Path("/")) / "out" / "EMG1.json"
    assert asset_uri(ObjectStoragePath("out/EMG1.json")) == f"file://{expected}"


# -- what a task declares ---------------------------------------------------------------------------


@pytest.mark.parametrize(("operator", "alias", "kind"), OPERATORS)
@pytest.mark.parametrize(
    "output_path", ["{{ params.dir }}", "file:///data/exports/", "s3://bucket/fixed.json"]
)
def test_output_path_declares_the_alias(operator, alias, kind, output_path: str) -> None:
    with _dag():
        task = operator(task_id="fetch", case_name="EMG1", output_path=output_path)
    assert task.outlets == [AssetAlias(alias)]
    assert task.asset_alias == alias


@pytest.mark.parametrize(("operator", "alias", "kind"), OPERATORS)
def test_no_output_path_declares_nothing(operator, alias, kind) -> None:
    with _dag():
        assert operator(task_id="fetch", case_name="EMG1").outlets == []


def test_asset_alias_none_declares_nothing() -> None:
    with _dag():
        task = EmedgeneExportCaseOperator(
            task_id="export", case_name="EMG1", output_path="file:///x/", asset_alias=None
        )
    assert task.outlets == []


def test_a_named_alias_is_declared_and_the_tasks_own_outlets_are_kept() -> None:
    mine = Asset(uri="s3://bucket/manifest.csv")
    with _dag():
        task = EmedgeneExportCaseOperator(
            task_id="export",
            case_name="EMG1",
            output_path="file:///x/",
            asset_alias="lab-a-exports",
            outlets=[mine, AssetAlias("lab-a-exports")],
        )
    assert task.outlets == [mine, AssetAlias("lab-a-exports")]  # the alias once


@pytest.mark.parametrize(("operator", "alias", "kind"), OPERATORS)
def test_a_mapped_task_declares_the_alias_at_parse_time(operator, alias, kind) -> None:
    with _dag():
        mapped = operator.partial(task_id="fetch", output_path="file:///x/").expand(case_name=["A", "B"])
        expanded_path = operator.partial(task_id="fetch2").expand(
            case_name=["A", "B"], output_path=["file:///x/", "file:///y/"]
        )
        to_xcom = operator.partial(task_id="fetch3", output_path=None).expand(case_name=["A"])
        off = operator.partial(task_id="fetch4", output_path="file:///x/", asset_alias=None).expand(
            case_name=["A"]
        )
    assert mapped.outlets == [AssetAlias(alias)]
    assert expanded_path.outlets == [AssetAlias(alias)]  # the path may come from expand()
    assert to_xcom.outlets == []
    assert off.outlets == []


# -- what a run records -----------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _aliases_known(monkeypatch: pytest.MonkeyPatch) -> None:
    """The aliases are in the metadata DB, as once a DAG processor parsed the DAG (Airflow 2 asks
    the DB, and this process's DB is whatever the machine has); the test below says otherwise."""
    monkeypatch.setattr(operators_module, "alias_registered", lambda name: True)


class _Recorder:
    """A logger that keeps what it was told (Airflow 3's task loggers bypass ``caplog``)."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def _record(self, level: str, message: str, *args: Any) -> None:
        self.lines.append((level, message % args))

    def info(self, message: str, *args: Any) -> None:
        self._record("info", message, *args)

    def warning(self, message: str, *args: Any) -> None:
        self._record("warning", message, *args)


def test_an_alias_unknown_to_airflow_2_records_nothing_and_warns(sim_conn, monkeypatch, tmp_path) -> None:
    name = _created_case()
    sim_conn.set_status(name, "Delivered")
    monkeypatch.setattr(operators_module, "alias_registered", lambda alias: alias != EXPORTS_ASSET_ALIAS)
    log = _Recorder()
    monkeypatch.setattr(EmedgeneExportCaseOperator, "log", log)
    events = OutletEventAccessors()
    with _dag():
        task = EmedgeneExportCaseOperator(task_id="export", case_name=name, output_path=f"file://{tmp_path}/")
    result = task.execute(make_context(outlet_events=events))
    assert result["path"] == f"file://{tmp_path}/{name}.json"  # written all the same
    assert list(events) == []
    warnings = [line for level, line in log.lines if level == "warning" and line.startswith("Asset alias")]
    assert len(warnings) == 1
    assert warnings[0].startswith(f"Asset alias {EXPORTS_ASSET_ALIAS!r} is not in the metadata DB")
    assert result["path"] in warnings[0]
    assert not any(line.startswith("Asset ") for level, line in log.lines if level == "info")


def test_airflow_3_needs_no_alias_in_the_db() -> None:
    if not AIRFLOW_3:
        pytest.skip("Airflow 2 asks the DB (covered end to end below)")
    assert operators_module.alias_registered("never-declared-anywhere") is True


@pytest.mark.parametrize(("operator", "alias", "kind"), OPERATORS)
def test_a_written_file_is_recorded_through_the_alias(sim_conn, operator, alias, kind, tmp_path) -> None:
    name = _created_case()
    sim_conn.set_status(name, "Delivered")
    with _dag():
        task = operator(task_id="fetch", case_name="{{ params.case }}", output_path="{{ params.dir }}")
    events = OutletEventAccessors()
    context = make_context(params={"case": name, "dir": f"file://{tmp_path}/"}, outlet_events=events)
    task.render_template_fields(context)
    result = task.execute(context)
    path = f"file://{tmp_path}/{name}.json"
    assert result == {"case_name": name, "count": result["count"], "path": path, "records": None}
    # The result and the event's extra agree on what they share.
    assert _alias_events(events, alias) == [
        (alias, path, {"case_name": name, "path": path, "count": result["count"], "kind": kind})
    ]
    assert len(json.loads((tmp_path / f"{name}.json").read_text())) == result["count"]


def test_the_event_names_the_asset_without_the_connection_but_keeps_the_path(sim_conn, monkeypatch) -> None:
    """The file is written through the path (connection included); the asset is the bare URI."""
    name = _created_case()
    sim_conn.set_status(name, "Delivered")
    written: list[str] = []

    def export_case_to(self, case_name: str, path: ObjectStoragePath) -> int:
        written.append(str(path))
        return 7

    monkeypatch.setattr(EmedgeneHook, "export_case_to", export_case_to)
    events = OutletEventAccessors()
    with _dag():
        task = EmedgeneExportCaseOperator(
            task_id="export", case_name=name, output_path="s3://aws_lab@bucket/exports/"
        )
    task.execute(make_context(outlet_events=events))
    path = f"s3://aws_lab@bucket/exports/{name}.json"
    assert written == [path]
    ((_, uri, extra),) = _alias_events(events, EXPORTS_ASSET_ALIAS)
    assert uri == f"s3://bucket/exports/{name}.json"
    assert extra["path"] == path


def test_nothing_is_recorded_for_a_result_returned_through_xcom(sim_conn) -> None:
    name = _created_case()
    sim_conn.set_status(name, "Delivered")
    events = OutletEventAccessors()
    with _dag():
        task = EmedgeneExportCaseOperator(task_id="export", case_name=name)
    result = task.execute(make_context(outlet_events=events))
    assert result["path"] is None
    assert isinstance(result["records"], list)
    assert list(events) == []


def test_nothing_is_recorded_with_asset_alias_none(sim_conn, tmp_path: Path) -> None:
    name = _created_case()
    sim_conn.set_status(name, "Delivered")
    events = OutletEventAccessors()
    with _dag():
        task = EmedgeneExportCaseOperator(
            task_id="export", case_name=name, output_path=f"file://{tmp_path}/", asset_alias=None
        )
    task.execute(make_context(outlet_events=events))
    assert (tmp_path / f"{name}.json").exists()
    assert list(events) == []


def test_a_failed_write_records_nothing(sim_conn, tmp_path: Path) -> None:
    name = _created_case()  # not delivered: the export is refused
    events = OutletEventAccessors()
    with _dag():
        task = EmedgeneExportCaseOperator(task_id="export", case_name=name, output_path=f"file://{tmp_path}/")
    with pytest.raises(Exception, match=name):
        task.execute(make_context(outlet_events=events))
    assert list(events) == []


# -- a real Airflow: producer → asset event → scheduler → consumer ----------------------------------

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
