"""Results as Airflow Assets (Datasets on Airflow 2): what the export and candidates operators
declare and what they record when they write.

Outlets at parse time (plain and mapped tasks), the asset URI of a written path, and the events
recorded through Airflow's own ``OutletEventAccessors`` against the simulator. A real Airflow in
which a delivered export starts the consumer DAG is tests/e2e/test_assets_flow.py.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import DAG, Asset, AssetAlias, ObjectStoragePath
from airflow_fixtures import (
    make_context,
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
