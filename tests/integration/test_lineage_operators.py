"""The operators' OpenLineage methods against the simulator: what a create, an export and the
candidates report at start and at completion, and that without OpenLineage nothing changes. The
events a real Airflow emits are tests/e2e/test_lineage_events.py."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from airflow_fixtures import make_context, valid_case

from emedgene_provider import lineage
from emedgene_provider.case_events import tenant_asset_uri
from emedgene_provider.hooks.emedgene import EmedgeneHook
from emedgene_provider.operators.emedgene import (
    EmedgeneCreateCaseOperator,
    EmedgeneExportCaseOperator,
    EmedgeneGetCandidatesOperator,
    EmedgeneGetCaseOperator,
)

PATH = "/runs/unit/S-UNIT-1.vcf.gz"


def _sha(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def _pairs(datasets: list[Any]) -> list[tuple[str, str]]:
    return [(d.namespace, d.name) for d in datasets]


def _delivered(sim: Any) -> str:
    name = EmedgeneHook().client.create_case(valid_case())
    sim.set_status(name, "Delivered")
    return name


@pytest.fixture(autouse=True)
def _hashed_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("airflow.providers.openlineage")  # the venvs install the extra
    monkeypatch.delenv("AIRFLOW__EMEDGENE__LINEAGE_PLAIN_PATHS", raising=False)


def test_a_create_reports_its_sample_files_in_and_its_case_out(sim_conn: Any) -> None:
    op = EmedgeneCreateCaseOperator(task_id="create", case=valid_case(), wait_for_completion=False)
    tenant = tenant_asset_uri(sim_conn.url)
    start = op.get_openlineage_facets_on_start()
    assert (_pairs(start.inputs), start.outputs) == ([(f"{tenant}/storage/7", _sha(PATH))], [])
    name = op.execute(make_context())
    done = op.get_openlineage_facets_on_complete(None)
    assert _pairs(done.inputs) == [(f"{tenant}/storage/7", _sha(PATH))]
    assert _pairs(done.outputs) == [(tenant, f"cases/{name}")]
    password = sim_conn.connection_json()["password"]
    assert password not in json.dumps([_pairs(done.inputs), _pairs(done.outputs)])


def test_a_create_resumed_after_its_wait_still_reports_its_files(sim_conn: Any) -> None:
    """A deferred create ends in ``execute_complete``, in a task object that never ran ``execute``."""
    name = _delivered(sim_conn)
    op = EmedgeneCreateCaseOperator(task_id="create", case=json.dumps(valid_case()), deferrable=True)
    event = {"status": "success", "case_name": name, "case_status": "Delivered"}
    assert op.execute_complete(make_context(), event) == name
    done = op.get_openlineage_facets_on_complete(None)
    tenant = tenant_asset_uri(sim_conn.url)
    assert _pairs(done.inputs) == [(f"{tenant}/storage/7", _sha(PATH))]
    assert _pairs(done.outputs) == [(tenant, f"cases/{name}")]


def test_a_create_refused_locally_reports_nothing(sim_conn: Any) -> None:
    case = valid_case()
    case["test_data"]["samples"][0]["sampleFiles"][0]["filename"] = "S-UNIT-1.bam"  # not a vcf
    op = EmedgeneCreateCaseOperator(task_id="create", case=case, wait_for_completion=False)
    with pytest.raises(Exception, match="nothing was sent"):
        op.execute(make_context())
    assert op.get_openlineage_facets_on_complete(None) is None  # also what a failure asks


@pytest.mark.parametrize("operator", [EmedgeneExportCaseOperator, EmedgeneGetCandidatesOperator])
def test_a_result_written_to_a_file_reports_the_case_in_and_the_file_out(
    sim_conn: Any, tmp_path: Path, operator: type, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = _delivered(sim_conn)
    op = operator(task_id="fetch", case_name=name, output_path=f"file://{tmp_path}/", asset_alias=None)
    tenant = tenant_asset_uri(sim_conn.url)
    start = op.get_openlineage_facets_on_start()
    assert (_pairs(start.inputs), start.outputs) == ([(tenant, f"cases/{name}")], [])
    result = op.execute(make_context())
    written = f"{tmp_path}/{name}.json"
    assert result["path"] == f"file://{written}"
    done = op.get_openlineage_facets_on_complete(None)
    assert _pairs(done.inputs) == [(tenant, f"cases/{name}")]
    assert _pairs(done.outputs) == [("file", _sha(written))]
    monkeypatch.setenv("AIRFLOW__EMEDGENE__LINEAGE_PLAIN_PATHS", "true")
    assert _pairs(op.get_openlineage_facets_on_complete(None).outputs) == [("file", written)]


def test_a_result_through_xcom_and_a_read_case_report_the_case_in_only(sim_conn: Any) -> None:
    name = _delivered(sim_conn)
    tenant = tenant_asset_uri(sim_conn.url)
    for op in (
        EmedgeneGetCandidatesOperator(task_id="candidates", case_name=name),
        EmedgeneGetCaseOperator(task_id="case", case_name=name),
    ):
        op.execute(make_context())
        done = op.get_openlineage_facets_on_complete(None)
        assert (_pairs(done.inputs), done.outputs) == ([(tenant, f"cases/{name}")], [])


def test_without_openlineage_the_operators_run_as_before(
    sim_conn: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No ``apache-airflow-providers-openlineage`` (nor openlineage-python): every import of it
    fails, the operators run and record what they did; only the OpenLineage methods, which nothing
    but that provider calls, would need it."""
    for module in list(sys.modules):
        if module.startswith(
            ("openlineage", "airflow.providers.openlineage", "airflow.providers.common.compat.openlineage")
        ):
            monkeypatch.setitem(sys.modules, module, None)
    for root in (
        "openlineage",
        "airflow.providers.openlineage",
        "airflow.providers.common.compat.openlineage",
    ):
        monkeypatch.setitem(sys.modules, root, None)
    create = EmedgeneCreateCaseOperator(task_id="create", case=valid_case(), wait_for_completion=False)
    name = create.execute(make_context())
    sim_conn.set_status(name, "Delivered")
    export = EmedgeneExportCaseOperator(
        task_id="export", case_name=name, output_path=f"file://{tmp_path}/", asset_alias=None
    )
    assert export.execute(make_context())["count"] > 0
    assert export._lineage is not None
    assert export._lineage.datasets(plain=True)[1] == [("file", f"{tmp_path}/{name}.json")]
    with pytest.raises(ImportError):
        lineage.operator_lineage(export._lineage)
