"""The example DAGs (and one small DAG of our own) in a real Airflow, against the simulator.

Every Airflow process runs in a subprocess with a throwaway AIRFLOW_HOME and SQLite DB (the
``airflow_home`` fixture of ``conftest.py``); the simulator runs in this process and the subprocesses reach
it over HTTP, so its counters show what the DAG runs did.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from airflow_fixtures import (
    CASE_NAME_PATTERN,
    DAGBAG_SCRIPT,
    EXAMPLE_DAGS,
    airflow_run,
    dag_run_summary,
    python_run,
    sim_cases,
)

from emedgene_provider.testing import EmedgeneSimulator

pytestmark = pytest.mark.e2e

LINK = "EmedgeneCaseLink:Emedgene case"


@dataclass
class Run:
    returncode: int
    output: str
    summary: dict[str, Any]
    cases: list[dict[str, Any]]
    counters: dict[str, Any]
    url: str
    data: Path


def _run_dag(
    home,
    tmp_path_factory,
    dag_id: str,
    *,
    dags_folder: Path = EXAMPLE_DAGS,
    conf: dict[str, Any] | None = None,
    **sim_options,
) -> Run:
    data = tmp_path_factory.mktemp(dag_id)
    marker = data / "runs" / "latest" / "CopyComplete.txt"
    marker.parent.mkdir(parents=True)
    marker.write_text("run complete\n")
    sim_options.setdefault("stage_seconds", 0.2)
    with EmedgeneSimulator(**sim_options) as sim:
        env = home.with_env(
            AIRFLOW__CORE__DAGS_FOLDER=str(dags_folder),
            AIRFLOW_CONN_EMEDGENE_DEFAULT=json.dumps(sim.connection_json()),
            EMEDGENE_DATA_DIR=str(data),
            EMEDGENE_POLL_INTERVAL="0.2",
        )
        done = airflow_run(env, "dags", "test", dag_id, *(["-c", json.dumps(conf)] if conf else []))
        return Run(
            returncode=done.returncode,
            output=done.stdout + done.stderr,
            summary=dag_run_summary(env, dag_id),
            cases=sim_cases(sim),
            counters=sim.counters(),
            url=sim.url,
            data=data,
        )


def _explain(run: Run) -> str:
    return f"exit {run.returncode}\n{run.output[-6000:]}"


# -- parsing --------------------------------------------------------------------------------------


def test_example_dags_import_without_errors(airflow_home) -> None:
    parsed = python_run(airflow_home.env, DAGBAG_SCRIPT, str(EXAMPLE_DAGS))
    assert parsed["errors"] == {}
    assert parsed["dags"] == {
        "emedgene_case_pipeline": {
            "wait_for_sequencing": [],
            "create_case": [LINK],
            "wait_for_delivery": [LINK],
            "export_case": [LINK],
            "summarize": [],
        },
        "emedgene_clinical_batch": {
            "read_batch_csv": [],
            "create_case": [LINK],
            "wait_for_delivery": [LINK],
            "export_case": [LINK],
            "batch_summary": [],
            "collect": [],
        },
        "emedgene_results_consumer": {"report_exports": []},
        "emedgene_delivered_results": {"fetch_delivered_results": []},
    }


# -- emedgene_case_pipeline -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def pipeline(airflow_home, tmp_path_factory) -> Run:
    return _run_dag(airflow_home, tmp_path_factory, "emedgene_case_pipeline")


def test_pipeline_succeeds_and_stores_the_export(pipeline: Run) -> None:
    assert pipeline.returncode == 0, _explain(pipeline)
    assert pipeline.summary["state"] == "success"
    assert set(pipeline.summary["tasks"].values()) == {"success"}
    assert pipeline.counters["cases_created"] == 1
    (case,) = pipeline.cases
    name = case["name"]
    assert re.fullmatch(CASE_NAME_PATTERN, name)
    exports = sorted((pipeline.data / "exports").iterdir())
    assert [p.name for p in exports] == [f"{name}.json"]
    variants = json.loads(exports[0].read_text())
    assert isinstance(variants, list)
    assert 5 <= len(variants) <= 40
    xcom = pipeline.summary["xcom"]
    assert xcom["create_case[-1]:return_value"] == name
    # The sensor's return value is the status it ended on (the simulator may be past Delivered).
    assert xcom["wait_for_delivery[-1]:return_value"] in ("Delivered", "Finalized")
    assert xcom["export_case[-1]:return_value"] == {
        "case_name": name,
        "count": len(variants),
        "path": f"file://{exports[0]}",
        "records": None,
    }
    assert xcom["create_case[-1]:emedgene_case_name"] == name  # pushed before any waiting
    assert xcom["summarize[-1]:return_value"]["variants"] == len(variants)


def test_pipeline_case_file_was_rendered_with_the_run_id(pipeline: Run) -> None:
    (case,) = pipeline.cases
    extra = case["test_data"]["extra_data"]
    assert extra["airflow_run_id"] == pipeline.summary["run_id"]
    assert extra["lims_id"] == "LIMS-2026-0042"


def test_pipeline_case_link_resolves_to_the_case_page(pipeline: Run) -> None:
    (case,) = pipeline.cases
    expected = f"{pipeline.url}/case/{case['name']}"
    assert pipeline.summary["xcom"]["create_case[-1]:emedgene_case_url"] == expected
    assert pipeline.summary["links"] == {
        "create_case[-1]": expected,
        "wait_for_delivery[-1]": expected,
        "export_case[-1]": expected,
    }


# -- a case that ends "Issue reported" --------------------------------------------------------------


@pytest.fixture(scope="module")
def failing_pipeline(airflow_home, tmp_path_factory) -> Run:
    return _run_dag(airflow_home, tmp_path_factory, "emedgene_case_pipeline", outcome="Issue reported")


def test_issue_reported_fails_the_run_naming_case_and_status(failing_pipeline: Run) -> None:
    run = failing_pipeline
    assert run.returncode != 0, _explain(run)
    (case,) = run.cases
    name = case["name"]
    assert case["status"] == "Issue reported"
    assert f"Emedgene case {name} is in failure status 'Issue reported'" in run.output
    assert run.summary["state"] == "failed"
    tasks = run.summary["tasks"]
    assert tasks["create_case[-1]"] == "success"
    assert tasks["wait_for_delivery[-1]"] == "failed"
    assert tasks["export_case[-1]"] == "upstream_failed"
    assert tasks["summarize[-1]"] == "upstream_failed"
    assert not (run.data / "exports").exists()
    assert "GET /api/test/{name}/export" not in run.counters["requests"]


def test_issue_reported_run_still_links_to_the_case(failing_pipeline: Run) -> None:
    (case,) = failing_pipeline.cases
    expected = f"{failing_pipeline.url}/case/{case['name']}"
    assert failing_pipeline.summary["links"]["create_case[-1]"] == expected
    assert failing_pipeline.summary["links"]["wait_for_delivery[-1]"] == expected


# -- emedgene_clinical_batch ------------------------------------------------------------------------


FAMILIES = ["TRIO-2026-0007", "SOLO-2026-0311", "SOLO-2026-0312"]  # manifests/example-batch.csv

#: ``rendered_map_index`` (the label the UI shows) of every task instance of a DAG's latest run.
LABELS_SCRIPT = """
import json, sys
from airflow.models import DagRun, TaskInstance
from airflow.utils.session import create_session
with create_session() as session:
    run = session.query(DagRun).filter(DagRun.dag_id == sys.argv[1]).order_by(DagRun.id.desc()).first()
    tis = session.query(TaskInstance).filter(
        TaskInstance.dag_id == sys.argv[1], TaskInstance.run_id == run.run_id
    ).all()
    print(json.dumps({f"{ti.task_id}[{ti.map_index}]": ti.rendered_map_index for ti in tis}))
"""


@dataclass
class BatchRun:
    run: Run
    labels: dict[str, str | None]


def _run_batch(home, tmp_path_factory, **options) -> BatchRun:
    run = _run_dag(home, tmp_path_factory, "emedgene_clinical_batch", **options)
    env = home.with_env(AIRFLOW__CORE__DAGS_FOLDER=str(EXAMPLE_DAGS))
    return BatchRun(run, python_run(env, LABELS_SCRIPT, "emedgene_clinical_batch"))


@pytest.fixture(scope="module")
def batch(airflow_home, tmp_path_factory) -> BatchRun:
    return _run_batch(airflow_home, tmp_path_factory)


def test_batch_dry_runs_then_creates_one_case_per_family_and_collects_the_exports(batch: BatchRun) -> None:
    run = batch.run
    assert run.returncode == 0, _explain(run)
    assert run.summary["state"] == "success"
    assert set(run.summary["tasks"].values()) == {"success"}
    assert run.counters["cases_created"] == 3
    assert run.counters["requests"]["POST /api/cases/v2/cases"] == 6  # 3 dry runs, then 3 creates
    assert sorted(c["test_data"]["extra_data"]["family_id"] for c in run.cases) == sorted(FAMILIES)
    trio = next(c for c in run.cases if c["test_data"]["extra_data"]["family_id"] == FAMILIES[0])
    assert set(trio["test_data"]["patients"]) == {"proband", "mother", "father", "other"}
    assert trio["test_data"]["extra_data"]["LIMS Order"] == "ORD-88101"
    by_family = {c["test_data"]["extra_data"]["family_id"]: c["test_data"] for c in run.cases}
    # the manifest's auto row: its FASTQs found in the BaseSpace project on the tenant (two datasets)
    auto_files = by_family["SOLO-2026-0311"]["samples"][0]["sampleFiles"]
    assert [f["filename"] for f in auto_files] == [
        f"LAB-3050_S1_L00{lane}_R{read}_001.fastq.gz" for lane in (1, 2) for read in (1, 2)
    ]
    assert all(f["path"].startswith("/projects/") and f["storage_id"] == 3 for f in auto_files)
    # its obsolete HPO id, sent as the HPO's replacement (the simulator refuses the obsolete one)
    assert by_family["SOLO-2026-0312"]["patients"]["proband"]["phenotypes"] == [
        {"id": "phenotypes/EMG_PHENOTYPE_0001249"},
        {"id": "phenotypes/EMG_PHENOTYPE_0001252"},
    ]
    names = sorted(c["name"] for c in run.cases)
    files = sorted((run.data / "batch-exports").iterdir())
    assert [p.name for p in files] == [f"{name}.json" for name in names]
    counts = []
    for path in files:
        variants = json.loads(path.read_text())
        assert isinstance(variants, list)
        assert variants
        counts.append(len(variants))
    report = run.summary["xcom"]["collect[-1]:return_value"]
    assert report["cases"] == 3
    assert report["variants"] == sum(counts)
    assert sorted(f["path"] for f in report["files"]) == [f"file://{p}" for p in files]


def test_batch_run_logs_no_error_for_reading_mapped_output(batch: BatchRun) -> None:
    """The summary and the report read the mapped tasks' output in one request: iterating a lazy
    XCom sequence asks for one item past the end, which Airflow 3 logs as ``[error] XCom not
    found ... offset=3`` in a green run."""
    assert batch.run.returncode == 0, _explain(batch.run)
    assert "XCom not found" not in batch.run.output, _explain(batch.run)


def test_batch_summary_maps_each_family_to_its_delivered_case(batch: BatchRun) -> None:
    run = batch.run
    family_of = {c["name"]: c["test_data"]["extra_data"]["family_id"] for c in run.cases}
    summary = run.summary["xcom"]["batch_summary[-1]:return_value"]
    assert list(summary) == FAMILIES  # the manifest's order
    assert {family_of[entry["case_name"]]: entry["status"] for entry in summary.values()} == {
        family: "Delivered" for family in FAMILIES
    }
    assert all(family_of[entry["case_name"]] == family for family, entry in summary.items())


def test_batch_mapped_tasks_are_labelled_with_family_and_case(batch: BatchRun) -> None:
    xcom, labels = batch.run.summary["xcom"], batch.labels
    family_of = {c["name"]: c["test_data"]["extra_data"]["family_id"] for c in batch.run.cases}
    for index in range(3):
        name = xcom[f"create_case[{index}]:return_value"]
        assert labels[f"create_case[{index}]"] == family_of[name]
        assert labels[f"wait_for_delivery[{index}]"] == name
        assert labels[f"export_case[{index}]"] == name
    assert sorted(labels[f"create_case[{i}]"] for i in range(3)) == sorted(FAMILIES)


def test_batch_links_each_mapped_task_to_its_own_case(batch: BatchRun) -> None:
    links = batch.run.summary["links"]
    xcom = batch.run.summary["xcom"]
    for index in range(3):
        name = xcom[f"create_case[{index}]:return_value"]
        expected = f"{batch.run.url}/case/{name}"
        assert links[f"create_case[{index}]"] == expected
        assert links[f"wait_for_delivery[{index}]"] == expected
        assert links[f"export_case[{index}]"] == expected
    assert len({xcom[f"create_case[{i}]:return_value"] for i in range(3)}) == 3


def test_a_batch_the_tenant_refuses_creates_no_case(airflow_home, tmp_path_factory) -> None:
    manifests = tmp_path_factory.mktemp("refused_manifest")
    text = (EXAMPLE_DAGS / "manifests" / "example-batch.csv").read_text()
    (manifests / "refused.csv").write_text(text.replace("SOLO-2026-0312,Exome,", "SOLO-2026-0312,Exome v9,"))
    refused = _run_batch(airflow_home, tmp_path_factory, conf={"manifest": str(manifests / "refused.csv")})
    run = refused.run
    assert run.returncode != 0, _explain(run)
    assert run.summary["state"] == "failed"
    assert run.summary["tasks"] == {
        "read_batch_csv[-1]": "failed",
        "create_case[-1]": "upstream_failed",
        "wait_for_delivery[-1]": "upstream_failed",
        "export_case[-1]": "upstream_failed",
        "batch_summary[-1]": "success",  # trigger_rule all_done: an empty summary, not an error
        "collect[-1]": "upstream_failed",
    }
    assert run.summary["xcom"]["batch_summary[-1]:return_value"] == {}
    assert run.counters["requests"]["POST /api/cases/v2/cases"] == 3  # three dry runs, no create
    assert run.counters["cases_created"] == 0
    assert run.cases == []
    assert (
        "family SOLO-2026-0312 (data row(s) 5): test_data.type 'Exome v9' is not a known case type"
    ) in run.output


# -- the sensor in reschedule mode, in a real Airflow ----------------------------------------------

SENSOR_DAG = """
from datetime import datetime

from airflow.providers.common.compat.sdk import DAG

from emedgene_provider.operators.emedgene import EmedgeneCreateCaseOperator, EmedgeneGetCandidatesOperator
from emedgene_provider.sensors.emedgene import EmedgeneCaseStatusSensor

with DAG("emedgene_sensor_reschedule", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
    create = EmedgeneCreateCaseOperator(task_id="create_case", case="case.json", wait_for_completion=False)
    wait = EmedgeneCaseStatusSensor(
        task_id="wait", case_name=create.output, mode="reschedule", poke_interval=0.2, timeout=120
    )
    candidates = EmedgeneGetCandidatesOperator(task_id="candidates", case_name=create.output)
    create >> wait >> candidates
"""


def test_sensor_in_reschedule_mode_reschedules_then_succeeds(airflow_home, tmp_path_factory) -> None:
    dags = tmp_path_factory.mktemp("sensor_dags")
    (dags / "sensor_dag.py").write_text(SENSOR_DAG)
    case = json.loads((EXAMPLE_DAGS / "cases" / "trio-exome-vcf.json").read_text())
    # The first poke reads "Uploading" and reschedules; the second reads "Delivered". Driven by the
    # reads themselves (docs/simulator.md), so no timer races Airflow's reschedule.
    case["test_data"]["extra_data"]["simulator_statuses"] = ["Uploading", "Delivered"]
    (dags / "case.json").write_text(json.dumps(case))
    with EmedgeneSimulator(stage_seconds=600) as sim:  # time never moves the case
        env = airflow_home.with_env(
            AIRFLOW__CORE__DAGS_FOLDER=str(dags),
            AIRFLOW_CONN_EMEDGENE_DEFAULT=json.dumps(sim.connection_json()),
        )
        done = airflow_run(env, "dags", "test", "emedgene_sensor_reschedule")
        counters = sim.counters()
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    assert "UP_FOR_RESCHEDULE" in output
    assert counters["cases_created"] == 1
    assert counters["requests"]["GET /api/test/{name}"] == 2  # "Uploading" (reschedule), "Delivered"
    summary = dag_run_summary(env, "emedgene_sensor_reschedule")
    assert summary["tasks"] == {
        "create_case[-1]": "success",
        "wait[-1]": "success",
        "candidates[-1]": "success",
    }
    candidates = summary["xcom"]["candidates[-1]:return_value"]["records"]
    assert isinstance(candidates, list)
    assert candidates
