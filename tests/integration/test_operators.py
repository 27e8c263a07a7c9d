"""The Emedgene operators, executed with a fake task context against the in-process simulator."""

from __future__ import annotations

import importlib
import inspect
import json
import re
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from airflow.providers.common.compat.sdk import (
    DAG,
    AirflowException,
    AirflowFailException,
    BaseOperator,
    TaskDeferred,
)
from airflow_fixtures import CASE_NAME_PATTERN, connect, creates, make_context, status_gets, valid_case
from locations import ROOT

import emedgene_provider
from emedgene_provider import waiting
from emedgene_provider.client import sync as client_sync
from emedgene_provider.client.create import CreateRecord
from emedgene_provider.client.errors import EmedgeneInvalidRequestError
from emedgene_provider.exceptions import EmedgeneCaseFailedError
from emedgene_provider.hooks.emedgene import EmedgeneHook
from emedgene_provider.links.emedgene import XCOM_CASE_NAME, XCOM_CASE_STATUS, XCOM_CASE_URL, EmedgeneCaseLink
from emedgene_provider.operators.create import default_idempotency_key
from emedgene_provider.operators.emedgene import (
    EmedgeneCreateCaseOperator,
    EmedgeneExportCaseOperator,
    EmedgeneGetCandidatesOperator,
    EmedgeneGetCaseOperator,
)
from emedgene_provider.sensors.emedgene import EmedgeneCaseStatusSensor
from emedgene_provider.testing.fakes import FakeClock, FakeTI
from emedgene_provider.triggers.emedgene import EmedgeneCaseStatusTrigger

UNIT_KEY = "airflow:unit_dag:manual__unit:unit_task:-1"  # FakeTI's task instance
CASE_FILES = ROOT / "dags_examples" / "cases"


def _dag(**kwargs: object) -> DAG:
    return DAG("unit_dag", schedule=None, start_date=datetime(2026, 1, 1), **kwargs)


def _assert_announced(ti: FakeTI, sim, name: str, reached: str | None = None) -> None:
    """The name, then the URL, each pushed once, then (a wait that ended) the status reached for
    the cases view; never a hand-pushed ``return_value`` (Airflow pushes what ``execute``
    returns, at success only)."""
    expected: list = [(XCOM_CASE_NAME, name), (XCOM_CASE_URL, f"{sim.url}/case/{name}")]
    if reached is not None:
        expected.append((XCOM_CASE_STATUS, {"case_name": name, "status": reached}))
    assert ti.pushed == expected


def _extra_data(name: str) -> dict:
    extra = dict(EmedgeneHook().get_case(name)["test_data"]["extra_data"])
    assert extra.pop("airflow_idempotency_key") == UNIT_KEY
    return extra


def _delivered_case(sim) -> str:
    name = EmedgeneHook().client.create_case(valid_case())
    sim.set_status(name, "Delivered")
    return name


# -- template fields and links --------------------------------------------------------------------


#: The user-facing arguments that are deliberately *not* templated, and why. Every other argument
#: of every operator and sensor of the provider is (a string, a list, a dict: what a DAG takes
#: from ``params``, a macro or an upstream task's XCom).
NOT_TEMPLATED = {
    # Booleans: a template renders to a string, and "False" is true; each also shapes the task.
    "wait_for_completion": "a boolean; it decides whether the task waits at all",
    "deferrable": "a boolean; whether the wait runs in the triggerer",
    "check_before_deferring": "a boolean",
    "durable": "a boolean; whether the create record is kept in the task state store",
    "validate_locally": "a boolean",
    "validate_on_server": "a boolean",
    "skip_if_missing": "a boolean",
    # Numbers: checked when the DAG file is parsed, so a mistake fails the parse, not the run;
    # a template would only be a string at run time.
    "poll_interval": "a number, checked at parse time (PollSchedule)",
    "max_poll_interval": "a number, checked at parse time (PollSchedule)",
    "timeout": "a number; also the deferral's timeout",
    "max_xcom_bytes": "a number",
    # Read by the scheduler from the parsed DAG, before any template is rendered.
    "asset_alias": "declared in the task's outlets when the DAG is parsed",
}


def _provider_operators() -> list[type]:
    """Every public operator and sensor class the provider's modules define or list in ``__all__``
    (a new one is covered without editing this test)."""
    found: list[type] = []
    for entry in ("operators", "sensors"):
        for group in emedgene_provider.get_provider_info()[entry]:
            for module_name in group["python-modules"]:
                module = importlib.import_module(module_name)
                for name, value in vars(module).items():
                    if (
                        isinstance(value, type)
                        and issubclass(value, BaseOperator)
                        and (name in getattr(module, "__all__", ()) or value.__module__ == module_name)
                        and not name.startswith("_")
                    ):
                        found.append(value)
    return found


def _user_facing_arguments(operator: type) -> set[str]:
    """The keyword arguments of the operator's ``__init__`` and of each class it inherits one from,
    down to (not including) Airflow's ``BaseOperator``/``BaseSensorOperator``, whose own arguments
    (``retries``, ``poke_interval``, ...) are Airflow's business."""
    names: set[str] = set()
    for klass in operator.__mro__:
        if klass is object or (klass.__module__.startswith("airflow.") and issubclass(klass, BaseOperator)):
            break
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        for param in inspect.signature(inspect.unwrap(init)).parameters.values():
            if param.kind is inspect.Parameter.KEYWORD_ONLY or (
                param.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD and param.name != "self"
            ):
                names.add(param.name)
    return names


def test_every_provider_operator_is_checked() -> None:
    names = {operator.__name__ for operator in _provider_operators()}
    assert {
        "EmedgeneCreateCaseOperator",
        "EmedgeneGetCaseOperator",
        "EmedgeneGetCandidatesOperator",
        "EmedgeneExportCaseOperator",
        "EmedgeneCaseStatusSensor",
        "EmedgeneBatchCsvOperator",
        "EmedgeneBatchSummaryOperator",
    } <= names


@pytest.mark.parametrize("operator", _provider_operators(), ids=lambda op: op.__name__)
def test_template_fields_cover_every_user_facing_argument(operator) -> None:
    """Derived from the signature: a new argument is templated, or listed in NOT_TEMPLATED with
    its reason."""
    arguments = _user_facing_arguments(operator)
    assert "emedgene_conn_id" in arguments
    assert set(operator.template_fields) == arguments - set(NOT_TEMPLATED)


def test_every_exception_to_templating_is_a_real_argument() -> None:
    """No stale entry: each exception is an argument of some operator (and so still needs its reason)."""
    every = set().union(*(_user_facing_arguments(op) for op in _provider_operators()))
    assert set(NOT_TEMPLATED) <= every


def test_create_case_templates_json_files() -> None:
    assert tuple(EmedgeneCreateCaseOperator.template_ext) == (".json",)


@pytest.mark.parametrize(
    "operator",
    [
        EmedgeneCreateCaseOperator,
        EmedgeneGetCaseOperator,
        EmedgeneGetCandidatesOperator,
        EmedgeneExportCaseOperator,
        EmedgeneCaseStatusSensor,
    ],
)
def test_every_task_carries_the_emedgene_case_link(operator) -> None:
    links = [link for link in operator.operator_extra_links if isinstance(link, EmedgeneCaseLink)]
    assert len(links) == 1
    assert links[0].name == "Emedgene case"


def test_provider_info_lists_the_extra_link() -> None:
    """Airflow registers a provider's operator links from ``extra-links``; without the entry
    Airflow 2's webserver cannot deserialize the link of a serialized DAG."""
    info = emedgene_provider.get_provider_info()
    assert "emedgene_provider.links.emedgene.EmedgeneCaseLink" in info.get("extra-links", [])


# -- create: payload sources --------------------------------------------------------------------


def test_create_from_dict_returns_name_and_pushes_url_first(sim_conn) -> None:
    ti = FakeTI()
    op = EmedgeneCreateCaseOperator(task_id="create", case=valid_case(), wait_for_completion=False)
    name = op.execute(make_context(ti))
    assert re.fullmatch(CASE_NAME_PATTERN, name)
    _assert_announced(ti, sim_conn, name)
    assert sim_conn.counters()["cases_created"] == 1
    assert status_gets(sim_conn) == 0  # no wait asked for, so no status read
    assert _extra_data(name) == {"lims_id": "LIMS-UNIT-1"}


def test_create_dict_is_jinja_rendered(sim_conn) -> None:
    case = valid_case(airflow_run_id="{{ run_id }}", lims_id="{{ params.lims }}")
    with _dag():
        op = EmedgeneCreateCaseOperator(task_id="create", case=case, wait_for_completion=False)
    context = make_context(run_id="manual__dict", params={"lims": "LIMS-42"})
    op.render_template_fields(context)
    name = op.execute(context)
    assert _extra_data(name) == {"airflow_run_id": "manual__dict", "lims_id": "LIMS-42"}


def test_create_from_json_file_relative_to_search_path_is_rendered(sim_conn, tmp_path: Path) -> None:
    (tmp_path / "trio.json").write_text((CASE_FILES / "trio-exome-vcf.json").read_text())
    with _dag(template_searchpath=[str(tmp_path)]):
        op = EmedgeneCreateCaseOperator(task_id="create", case="trio.json", wait_for_completion=False)
    context = make_context(run_id="manual__file")
    op.render_template_fields(context)
    name = op.execute(context)
    created = EmedgeneHook().get_case(name)
    assert _extra_data(name) == {"lims_id": "LIMS-2026-0042", "airflow_run_id": "manual__file"}
    assert [s["fastq"] for s in created["test_data"]["samples"]] == ["NA12878", "NA12892", "NA12891"]


def test_create_from_templated_path_reads_and_renders_the_file(sim_conn, tmp_path: Path) -> None:
    """``"{{ params.case_file }}"`` only becomes a path when rendered: the operator reads it then."""
    (tmp_path / "trio.json").write_text((CASE_FILES / "trio-exome-vcf.json").read_text())
    with _dag():
        op = EmedgeneCreateCaseOperator(
            task_id="create", case="{{ params.case_file }}", wait_for_completion=False
        )
    context = make_context(run_id="manual__param", params={"case_file": str(tmp_path / "trio.json")})
    op.render_template_fields(context)
    assert op.case == str(tmp_path / "trio.json")
    name = op.execute(context)
    extra = EmedgeneHook().get_case(name)["test_data"]["extra_data"]
    assert extra["airflow_run_id"] == "manual__param"


def test_create_from_unreadable_templated_path_fails_before_sending(sim_conn, tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    op = EmedgeneCreateCaseOperator(task_id="create", case=str(missing), wait_for_completion=False)
    with pytest.raises(AirflowFailException, match=re.escape(f"Emedgene case file {str(missing)!r} cannot")):
        op.execute(make_context())
    assert sim_conn.counters()["requests"] == {}


def test_create_from_text_that_is_not_json_fails_before_sending(sim_conn) -> None:
    op = EmedgeneCreateCaseOperator(task_id="create", case="{not json", wait_for_completion=False)
    with pytest.raises(AirflowFailException, match="is not valid JSON"):
        op.execute(make_context())
    assert sim_conn.counters()["requests"] == {}


def test_local_validation_lists_every_problem_and_sends_nothing(sim_conn) -> None:
    case = valid_case()
    case["sharing_level"] = 7
    case["test_data"]["type"] = "Genome"
    proband = case["test_data"]["patients"]["proband"]
    proband["gender"] = "F"
    proband["phenotypes"] = [{"id": "HP:0001250"}]
    case["test_data"]["samples"][0]["sampleFiles"][0]["filename"] = "S-UNIT-1.bam"
    ti = FakeTI()
    op = EmedgeneCreateCaseOperator(task_id="create", case=case, wait_for_completion=False)
    with pytest.raises(AirflowFailException) as raised:
        op.execute(make_context(ti))
    message = str(raised.value)
    assert "has 4 problem(s); nothing was sent" in message
    assert "test_data.type" not in message  # a case type we do not know is the server's call
    for expected in (
        "sharing_level must be 0 or 1 (got 7)",
        "test_data.patients.proband.gender must be one of Male, Female, Unknown (got 'F')",
        "test_data.patients.proband.phenotypes[0] must be",
        "test_data.samples[0].sampleFiles[0].filename 'S-UNIT-1.bam' is not a vcf file",
    ):
        assert expected in message
    assert creates(sim_conn) == 0
    assert sim_conn.counters()["cases_created"] == 0
    assert ti.pushed == []


# -- create: waiting ----------------------------------------------------------------------------


@pytest.fixture
def clock(fake_clock: FakeClock) -> FakeClock:
    """The blocking wait's sleeps and deadline on virtual time."""
    fake_clock.install(waiting)
    return fake_clock


def test_create_waits_blocking_until_delivered(emedgene_simulator_factory, monkeypatch, clock) -> None:
    sim = emedgene_simulator_factory(stage_seconds=600)  # Uploading until the test says otherwise
    connect(monkeypatch, sim)
    ti = FakeTI()
    # The case name is announced before the wait: deliver the case during the first wait.
    clock.on_sleep(1, lambda: sim.set_status(next(iter(ti.values(XCOM_CASE_NAME))), "Delivered"))
    op = EmedgeneCreateCaseOperator(
        task_id="create", case=valid_case(), wait_for_completion=True, deferrable=False, poll_interval=0.1
    )
    name = op.execute(make_context(ti))
    _assert_announced(ti, sim, name, reached="Delivered")
    assert status_gets(sim) == 2  # Uploading, then Delivered
    assert clock.sleeps == [0.2]  # Uploading is two stages before Delivered: twice poll_interval


def test_create_blocking_wait_fails_on_issue_reported_after_pushing(sim_conn) -> None:
    ti = FakeTI()
    op = EmedgeneCreateCaseOperator(
        task_id="create",
        case=valid_case(simulator_outcome="Issue reported"),
        wait_for_completion=True,
        deferrable=False,
        poll_interval=0.1,
        timeout=30,
    )
    with pytest.raises(EmedgeneCaseFailedError) as raised:
        op.execute(make_context(ti))
    (name,) = ti.values(XCOM_CASE_NAME)
    assert str(raised.value) == f"Emedgene case {name} is in failure status 'Issue reported'"
    _assert_announced(ti, sim_conn, name)
    assert isinstance(raised.value, AirflowFailException)


def test_create_blocking_wait_times_out(emedgene_simulator_factory, monkeypatch, clock) -> None:
    sim = emedgene_simulator_factory(stage_seconds=600)
    connect(monkeypatch, sim)
    op = EmedgeneCreateCaseOperator(
        task_id="create",
        case=valid_case(),
        wait_for_completion=True,
        deferrable=False,
        poll_interval=0.25,
        max_poll_interval=0.25,  # a fixed interval, though the case stays two stages away
        timeout=1.0,
    )
    with pytest.raises(AirflowException, match=r"EMG\d{9}: timed out after 1 s waiting for Delivered"):
        op.execute(make_context())
    assert status_gets(sim) == 5  # t = 0, 0.25, 0.5, 0.75 and the deadline 1.0
    assert clock.sleeps == [0.25] * 4


def test_create_deferrable_defers_with_the_right_trigger(emedgene_simulator_factory, monkeypatch) -> None:
    sim = emedgene_simulator_factory(stage_seconds=600)
    connect(monkeypatch, sim)
    ti = FakeTI()
    op = EmedgeneCreateCaseOperator(
        task_id="create",
        case=valid_case(),
        wait_for_completion=True,
        deferrable=True,
        target_statuses="Finalized",
        failure_statuses=["Issue reported", "On hold"],
        poll_interval=0.5,
        max_poll_interval=30,
        timeout=120,
    )
    before = time.time()
    with pytest.raises(TaskDeferred) as raised:
        op.execute(make_context(ti))
    after = time.time()
    (name,) = ti.values(XCOM_CASE_NAME)
    _assert_announced(ti, sim, name)
    deferred = raised.value
    assert deferred.method_name == "execute_complete"
    assert deferred.timeout == timedelta(seconds=120)
    trigger = deferred.trigger
    assert isinstance(trigger, EmedgeneCaseStatusTrigger)
    classpath, kwargs = trigger.serialize()
    assert classpath == "emedgene_provider.triggers.emedgene.EmedgeneCaseStatusTrigger"
    end_time = kwargs.pop("end_time")
    assert before + 120 <= end_time <= after + 120
    # A 404 is the tenant lagging for a reconcile window after the create answered.
    lag_until = kwargs.pop("not_found_until")
    window = EmedgeneHook().config.reconcile_window
    assert before + window <= lag_until <= after + window
    assert kwargs == {
        "case_name": name,
        "emedgene_conn_id": "emedgene_default",
        "target_statuses": ["Finalized"],
        "failure_statuses": ["Issue reported", "On hold"],
        "poll_interval": 0.5,
        "max_poll_interval": 30.0,
    }
    assert status_gets(sim) == 1  # one check before deferring


def test_create_deferrable_does_not_defer_when_already_delivered(
    emedgene_simulator_factory, monkeypatch
) -> None:
    sim = emedgene_simulator_factory(stage_seconds=0)  # cases are at their final status at once
    connect(monkeypatch, sim)
    op = EmedgeneCreateCaseOperator(
        task_id="create", case=valid_case(), wait_for_completion=True, deferrable=True
    )
    name = op.execute(make_context())
    assert re.fullmatch(CASE_NAME_PATTERN, name)
    assert status_gets(sim) == 1


def test_create_deferrable_fails_at_once_on_a_failed_case(emedgene_simulator_factory, monkeypatch) -> None:
    sim = emedgene_simulator_factory(stage_seconds=0, outcome="Issue reported")
    connect(monkeypatch, sim)
    op = EmedgeneCreateCaseOperator(
        task_id="create", case=valid_case(), wait_for_completion=True, deferrable=True
    )
    with pytest.raises(
        EmedgeneCaseFailedError, match=r"Emedgene case EMG\d{9} is in failure status 'Issue reported'"
    ):
        op.execute(make_context())


@pytest.mark.parametrize(
    ("event", "error", "message"),
    [
        (
            {"status": "failed", "case_name": "EMG000000001", "case_status": "Trash bin"},
            EmedgeneCaseFailedError,
            "Emedgene case EMG000000001 is in failure status 'Trash bin'",
        ),
        (
            {
                "status": "timeout",
                "case_name": "EMG000000001",
                "case_status": "In progress",
                "message": "too slow",
            },
            AirflowException,
            "too slow",
        ),
        (
            {"status": "error", "case_name": "EMG000000001", "message": "HTTP 404: not found"},
            AirflowException,
            "HTTP 404: not found",
        ),
        (None, AirflowException, "Emedgene trigger ended without an event"),
    ],
)
def test_create_execute_complete_raises_on_anything_but_success(event, error, message) -> None:
    op = EmedgeneCreateCaseOperator(
        task_id="create", case=valid_case(), wait_for_completion=True, deferrable=True
    )
    with pytest.raises(error) as raised:
        op.execute_complete(make_context(), event)
    assert str(raised.value) == message


def test_create_execute_complete_returns_the_case_name() -> None:
    op = EmedgeneCreateCaseOperator(
        task_id="create", case=valid_case(), wait_for_completion=True, deferrable=True
    )
    event = {"status": "success", "case_name": "EMG000000002", "case_status": "Delivered", "message": "ok"}
    assert op.execute_complete(make_context(), event) == "EMG000000002"


def test_create_waits_for_delivery_by_default(emedgene_simulator_factory, monkeypatch, clock) -> None:
    """As dbt Cloud's and Databricks' operators do: ``create >> export`` needs no extra argument."""
    sim = emedgene_simulator_factory(stage_seconds=600)
    connect(monkeypatch, sim)
    ti = FakeTI()
    clock.on_sleep(1, lambda: sim.set_status(next(iter(ti.values(XCOM_CASE_NAME))), "Delivered"))
    op = EmedgeneCreateCaseOperator(task_id="create", case=valid_case(), deferrable=False)
    assert op.wait_for_completion is True
    name = op.execute(make_context(ti))
    assert status_gets(sim) == 2  # Uploading, then Delivered: it waited
    _assert_announced(ti, sim, name, reached="Delivered")


def test_create_reconnecting_to_a_running_case_returns_its_name(
    emedgene_simulator_factory, monkeypatch, clock
) -> None:
    """A retry whose durable record names a running case reconnects to it, waits, and returns its
    name."""
    sim = emedgene_simulator_factory(stage_seconds=600)
    connect(monkeypatch, sim)
    name = EmedgeneHook().client.create_case(valid_case())
    probe = EmedgeneCreateCaseOperator(task_id="probe", case=valid_case())
    if not probe.durable:
        pytest.skip("no durable task state before Airflow 3.3: nothing to reconnect from")
    ti = FakeTI(try_number=2)
    key = default_idempotency_key(make_context(ti))
    store = _TaskStateStore({"emedgene_create_attempt": CreateRecord(key, case_name=name).to_json()})
    clock.on_sleep(1, lambda: sim.set_status(name, "Delivered"))
    op = EmedgeneCreateCaseOperator(task_id="create", case=valid_case(), deferrable=False, poll_interval=1)
    assert op.execute(make_context(ti, task_state_store=store)) == name
    assert sim.counters()["cases_created"] == 1  # reconnected, not created
    _assert_announced(ti, sim, name, reached="Delivered")


class _TaskStateStore(dict):
    """Airflow 3.3's durable task state, as the operator sees it: get and set."""

    def set(self, key: str, value: object) -> None:
        self[key] = value


# -- get case -----------------------------------------------------------------------------------


def test_get_case_returns_the_case_json(sim_conn) -> None:
    name = _delivered_case(sim_conn)
    ti = FakeTI()
    case = EmedgeneGetCaseOperator(task_id="get", case_name=name).execute(make_context(ti))
    assert case["name"] == name
    assert case["status"] == "Delivered"
    assert case["test_data"]["extra_data"] == {"lims_id": "LIMS-UNIT-1"}
    json.dumps(case)  # an XCom value: JSON all the way down
    assert ti.pushed == [(XCOM_CASE_URL, f"{sim_conn.url}/case/{name}")]


def test_get_case_with_test_fields_returns_only_those(sim_conn) -> None:
    name = _delivered_case(sim_conn)
    case = EmedgeneGetCaseOperator(task_id="get", case_name=name, test_fields=["status"]).execute(
        make_context()
    )
    assert case == {"name": name, "status": "Delivered"}


# -- candidates and export ----------------------------------------------------------------------


@pytest.mark.parametrize("operator", [EmedgeneGetCandidatesOperator, EmedgeneExportCaseOperator])
def test_result_without_output_path_returns_the_records_in_the_one_shape(sim_conn, operator) -> None:
    name = _delivered_case(sim_conn)
    ti = FakeTI()
    result = operator(task_id="fetch", case_name=name).execute(make_context(ti))
    assert list(result) == ["case_name", "count", "path", "records"]
    records = result["records"]
    assert isinstance(records, list)
    assert result == {"case_name": name, "count": len(records), "path": None, "records": records}
    assert 5 <= len(records) <= 40
    assert all(isinstance(r, dict) and "gene" in r for r in records)
    json.dumps(result)  # an XCom value: JSON all the way down
    assert ti.pushed == [(XCOM_CASE_URL, f"{sim_conn.url}/case/{name}")]


@pytest.mark.parametrize("operator", [EmedgeneGetCandidatesOperator, EmedgeneExportCaseOperator])
def test_result_to_folder_writes_case_named_file(sim_conn, operator, tmp_path: Path) -> None:
    name = _delivered_case(sim_conn)
    expected = operator(task_id="fetch", case_name=name).execute(make_context())["records"]
    folder = tmp_path / "out" / "nested"
    result = operator(task_id="fetch", case_name=name, output_path=f"file://{folder}/").execute(
        make_context()
    )
    assert list(result) == ["case_name", "count", "path", "records"]  # the same keys as without a path
    assert result == {
        "case_name": name,
        "count": len(expected),
        "path": f"file://{folder}/{name}.json",
        "records": None,
    }
    written = json.loads((folder / f"{name}.json").read_text())
    assert written == expected


def test_result_to_file_path_writes_exactly_there(sim_conn, tmp_path: Path) -> None:
    name = _delivered_case(sim_conn)
    target = tmp_path / "export.json"
    result = EmedgeneExportCaseOperator(
        task_id="export", case_name=name, output_path=f"file://{target}"
    ).execute(make_context())
    written = json.loads(target.read_text())
    assert isinstance(written, list)
    assert result == {"case_name": name, "count": len(written), "path": f"file://{target}", "records": None}
    assert [p.name for p in tmp_path.iterdir()] == ["export.json"]


def test_output_path_is_templated(sim_conn, tmp_path: Path) -> None:
    name = _delivered_case(sim_conn)
    with _dag():
        op = EmedgeneExportCaseOperator(
            task_id="export", case_name="{{ params.case }}", output_path="{{ params.dir }}"
        )
    context = make_context(params={"case": name, "dir": f"file://{tmp_path}/"})
    op.render_template_fields(context)
    result = op.execute(context)
    assert result["path"] == f"file://{tmp_path}/{name}.json"
    assert (tmp_path / f"{name}.json").exists()


@pytest.mark.parametrize("operator", [EmedgeneGetCandidatesOperator, EmedgeneExportCaseOperator])
def test_result_above_max_xcom_bytes_is_refused_with_advice(sim_conn, operator) -> None:
    name = _delivered_case(sim_conn)
    with pytest.raises(AirflowFailException) as raised:
        operator(task_id="fetch", case_name=name, max_xcom_bytes=100).execute(make_context())
    message = str(raised.value)
    assert message.startswith(f"Emedgene case {name}: ")
    assert "max_xcom_bytes=100" in message
    assert "set output_path" in message


def test_result_at_max_xcom_bytes_is_returned(sim_conn) -> None:
    name = _delivered_case(sim_conn)
    records = EmedgeneExportCaseOperator(task_id="export", case_name=name).execute(make_context())["records"]
    size = len(json.dumps(records, sort_keys=True).encode())
    exact = EmedgeneExportCaseOperator(task_id="export", case_name=name, max_xcom_bytes=size).execute(
        make_context()
    )
    assert exact["records"] == records
    with pytest.raises(AirflowFailException, match=f"max_xcom_bytes={size - 1} allows"):
        EmedgeneExportCaseOperator(task_id="export", case_name=name, max_xcom_bytes=size - 1).execute(
            make_context()
        )


def test_candidates_before_delivery_fail_with_the_status(sim_conn) -> None:
    name = EmedgeneHook().client.create_case(valid_case())
    sim_conn.set_status(name, "In progress")
    with pytest.raises(EmedgeneInvalidRequestError, match="not delivered yet"):
        EmedgeneGetCandidatesOperator(task_id="candidates", case_name=name).execute(make_context())


def test_templated_relative_path_is_relative_to_the_dag_folder(sim_conn, tmp_path: Path) -> None:
    (tmp_path / "cases").mkdir()
    (tmp_path / "cases" / "trio.json").write_text((CASE_FILES / "trio-exome-vcf.json").read_text())
    with _dag() as dag:
        op = EmedgeneCreateCaseOperator(
            task_id="create", case="{{ params.case_file }}", wait_for_completion=False
        )
    dag.fileloc = str(tmp_path / "my_dag.py")
    context = make_context(run_id="manual__rel", params={"case_file": "cases/trio.json"})
    op.render_template_fields(context)
    name = op.execute(context)
    assert EmedgeneHook().get_case(name)["test_data"]["extra_data"]["airflow_run_id"] == "manual__rel"


def test_templated_relative_path_is_looked_up_in_template_searchpath(sim_conn, tmp_path: Path) -> None:
    """The ``case`` docstring: a path is "relative to the DAG folder or ``template_searchpath``"."""
    (tmp_path / "trio.json").write_text((CASE_FILES / "trio-exome-vcf.json").read_text())
    with _dag(template_searchpath=[str(tmp_path)]):
        op = EmedgeneCreateCaseOperator(
            task_id="create", case="{{ params.case_file }}", wait_for_completion=False
        )
    context = make_context(run_id="manual__search", params={"case_file": "trio.json"})
    op.render_template_fields(context)
    name = op.execute(context)
    assert EmedgeneHook().get_case(name)["test_data"]["extra_data"]["airflow_run_id"] == "manual__search"


# -- create: at most once per task instance ----------------------------------------------------------


def test_a_retry_reattaches_to_the_case_of_an_earlier_try(sim_conn) -> None:
    first = EmedgeneCreateCaseOperator(
        task_id="create", case=valid_case(), wait_for_completion=False
    ).execute(make_context(FakeTI()))
    ti = FakeTI(try_number=2)
    again = EmedgeneCreateCaseOperator(
        task_id="create", case=valid_case(), wait_for_completion=False
    ).execute(make_context(ti))
    assert again == first
    assert sim_conn.counters()["cases_created"] == 1
    _assert_announced(ti, sim_conn, first)


def test_a_retry_creates_anew_when_the_earlier_case_failed(sim_conn) -> None:
    first = EmedgeneCreateCaseOperator(
        task_id="create", case=valid_case(), wait_for_completion=False
    ).execute(make_context(FakeTI()))
    sim_conn.set_status(first, "Issue reported")
    again = EmedgeneCreateCaseOperator(
        task_id="create", case=valid_case(), wait_for_completion=False
    ).execute(make_context(FakeTI(2)))
    assert again != first
    assert sim_conn.counters()["cases_created"] == 2
    assert _extra_data(again) == {"lims_id": "LIMS-UNIT-1"}  # same key as the failed one


def test_other_task_instances_never_share_a_case(sim_conn, fake_clock: FakeClock) -> None:
    fake_clock.install(client_sync)  # a retry with no durable record waits out a reconcile window
    first = EmedgeneCreateCaseOperator(
        task_id="create", case=valid_case(), wait_for_completion=False
    ).execute(make_context(FakeTI()))
    other = EmedgeneCreateCaseOperator(
        task_id="create", case=valid_case(), idempotency_key="lab:{{ run_id }}", wait_for_completion=False
    )
    context = make_context(FakeTI(try_number=2), run_id="manual__other")
    other.render_template_fields(context)
    assert other.idempotency_key == "lab:manual__other"
    second = other.execute(context)
    assert second != first
    assert sim_conn.counters()["cases_created"] == 2
    stamped = EmedgeneHook().get_case(second)["test_data"]["extra_data"]["airflow_idempotency_key"]
    assert stamped == "lab:manual__other"
    # Nothing durable said when the earlier try's create happened, so the retry waited a whole
    # reconcile window (default 600 s, on the virtual clock) for its key before creating.
    assert sum(fake_clock.sleeps) >= 600
