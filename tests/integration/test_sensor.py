"""EmedgeneCaseStatusSensor in poke, reschedule and deferrable modes, against the simulator."""

from __future__ import annotations

import re
import sys
import time
from datetime import timedelta

import pytest
from airflow.exceptions import AirflowRescheduleException  # the SDK's own on Airflow 3
from airflow.providers.common.compat.sdk import (
    AirflowException,
    AirflowFailException,
    AirflowSensorTimeout,
    AirflowSkipException,
    BaseSensorOperator,
    PokeReturnValue,
    TaskDeferred,
)
from airflow_fixtures import make_context, status_gets, valid_case

from emedgene_provider.exceptions import EmedgeneCaseFailedError
from emedgene_provider.hooks.emedgene import EmedgeneHook
from emedgene_provider.links.emedgene import XCOM_CASE_STATUS, XCOM_CASE_URL
from emedgene_provider.sensors.emedgene import EmedgeneCaseStatusSensor
from emedgene_provider.testing.fakes import FakeClock, FakeTI
from emedgene_provider.triggers.emedgene import EmedgeneCaseStatusTrigger


@pytest.fixture
def case_in(sim_conn):
    """Create a case and pin it to a status; returns the case name."""

    def make(status: str) -> str:
        name = EmedgeneHook().client.create_case(valid_case())
        sim_conn.set_status(name, status)
        return name

    return make


def _sensor(name: str, **kwargs) -> EmedgeneCaseStatusSensor:
    kwargs.setdefault("poke_interval", 0.1)
    kwargs.setdefault("timeout", 30)
    return EmedgeneCaseStatusSensor(task_id="wait", case_name=name, **kwargs)


@pytest.fixture
def clock(fake_clock: FakeClock) -> FakeClock:
    """Poke mode's waits and its timeout on virtual time: Airflow's sensor loop sleeps and measures
    its run duration through the ``time`` module of the module defining ``BaseSensorOperator``."""
    fake_clock.install(sys.modules[BaseSensorOperator.__module__])
    return fake_clock


@pytest.fixture
def reschedule_without_db(monkeypatch):
    """Airflow 2.11's reschedule mode reads the first try's start date from the metadata DB; these
    unit tests have none (the e2e tests run reschedule mode in a real Airflow). Airflow 3 asks the
    task instance instead, which :class:`FakeTI` answers."""
    try:
        import airflow.sensors.base as sensors_base
    except ImportError:
        return
    if hasattr(sensors_base, "_orig_start_date"):
        monkeypatch.setattr(sensors_base, "_orig_start_date", lambda **_: None)


# -- lifecycle-aware decisions (poke) -------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "targets", "done"),
    [
        ("Delivered", ["Delivered"], True),
        ("Finalized", ["Delivered"], True),
        ("Sign-out review", ["Delivered"], False),  # undeclared: fail closed (test_status_fail_closed)
        ("DELIVERED", ["Delivered"], True),
        ("delivered", ["DELIVERED"], True),
        ("In progress", ["in_progress"], True),
        ("In progress", ["Delivered"], False),
        ("Uploading", ["Delivered"], False),
        ("Pending sequencing", ["Delivered"], False),
        ("Delivered", ["Finalized"], False),
        ("Sign-out review", ["Finalized"], False),
        ("Queued", ["Uploading"], True),
    ],
)
def test_poke_is_lifecycle_aware_and_normalised(case_in, status, targets, done) -> None:
    name = case_in(status)
    poked = _sensor(name, target_statuses=targets).poke(make_context())
    if done:  # done: the status it ended on, as the server wrote it, is the XCom value
        assert isinstance(poked, PokeReturnValue) and poked.is_done and poked.xcom_value == status
    else:
        assert poked is False


def test_target_statuses_may_be_one_string(case_in) -> None:
    name = case_in("Finalized")
    poked = _sensor(name, target_statuses="delivered").poke(make_context())
    assert isinstance(poked, PokeReturnValue) and poked.xcom_value == "Finalized"


@pytest.mark.parametrize("status", ["Issue reported", "Trash bin", "Move to trash", "ISSUE_REPORTED"])
def test_failure_status_fails_at_once_naming_case_and_status(case_in, status) -> None:
    name = case_in(status)
    with pytest.raises(EmedgeneCaseFailedError) as raised:
        _sensor(name).poke(make_context())
    assert str(raised.value) == f"Emedgene case {name} is in failure status {status!r}"
    assert isinstance(raised.value, AirflowFailException)
    assert (raised.value.case_name, raised.value.case_status) == (name, status)


def test_custom_failure_statuses_replace_the_defaults(case_in) -> None:
    on_hold = case_in("On hold")
    with pytest.raises(EmedgeneCaseFailedError, match=re.escape(f"{on_hold} is in failure status 'On hold'")):
        _sensor(on_hold, failure_statuses=["on_hold"]).poke(make_context())
    issue = case_in("Issue reported")
    assert _sensor(issue, failure_statuses=["On hold"]).poke(make_context()) is False


# Every mode returns the status the wait ended on (its XCom return_value): poke and reschedule through
# PokeReturnValue, deferrable from execute_complete or, when the case is already there, from execute.


# -- poke mode ------------------------------------------------------------------------------------


def test_poke_mode_waits_through_the_lifecycle(case_in, sim_conn, clock) -> None:
    name = case_in("Uploading")  # then In progress after the first wait, Delivered after the second
    clock.on_sleep(1, lambda: sim_conn.set_status(name, "In progress"))
    clock.on_sleep(2, lambda: sim_conn.set_status(name, "Delivered"))
    ti = FakeTI()
    sensor = _sensor(name, mode="poke")
    assert sensor.execute(make_context(ti)) == "Delivered"
    assert ti.pushed == [
        (XCOM_CASE_URL, f"{sim_conn.url}/case/{name}"),
        (XCOM_CASE_STATUS, {"case_name": name, "status": "Delivered"}),  # for the cases view
    ]
    assert status_gets(sim_conn) == 3  # Uploading, In progress, Delivered
    assert clock.sleeps == [0.1, 0.1]  # one poke interval between polls


def test_poke_mode_fails_fast_on_a_failed_case(case_in, sim_conn, clock) -> None:
    name = case_in("Issue reported")
    with pytest.raises(
        EmedgeneCaseFailedError, match=re.escape(f"{name} is in failure status 'Issue reported'")
    ):
        _sensor(name, mode="poke", poke_interval=5, timeout=60).execute(make_context())
    assert clock.sleeps == []  # never slept: failed on the first poke
    assert status_gets(sim_conn) == 1


def test_poke_mode_soft_fail_skips_on_a_failed_case(case_in) -> None:
    name = case_in("Trash bin")
    with pytest.raises(AirflowSkipException) as raised:
        _sensor(name, mode="poke", soft_fail=True).execute(make_context())
    assert f"Emedgene case {name} is in failure status 'Trash bin'" in str(raised.value)


def test_poke_mode_times_out_on_a_case_that_stays_in_progress(case_in, sim_conn, clock) -> None:
    name = case_in("In progress")
    with pytest.raises(AirflowSensorTimeout):
        _sensor(name, mode="poke", poke_interval=0.25, timeout=1.0).execute(make_context())
    # Pokes at t = 0, 0.25, 0.5, 0.75, 1.0 (not yet over the timeout) and 1.25 (over it).
    assert status_gets(sim_conn) == 6
    assert clock.sleeps == [0.25] * 5


def test_poke_mode_rides_out_a_tenant_outage(sim_conn, monkeypatch, clock) -> None:
    """Retries spent on 503s make the poke answer "not yet", not fail the task."""
    from airflow_fixtures import connect

    conn = sim_conn.connection_json()
    conn["extra"]["max_retries"] = 0
    connect(monkeypatch, sim_conn, conn)
    name = EmedgeneHook().client.create_case(valid_case())
    sim_conn.set_status(name, "Delivered")
    sim_conn.inject("503", times=2, method="GET", path=f"/api/test/{name}")
    assert _sensor(name, mode="poke").execute(make_context()) == "Delivered"
    assert sim_conn.counters()["faults_injected"] == 2
    assert status_gets(sim_conn) == 3
    assert clock.sleeps == [0.1, 0.1]  # two "not yet" pokes, each followed by one interval


# -- reschedule mode --------------------------------------------------------------------------------


def test_reschedule_mode_reschedules_while_waiting(case_in, reschedule_without_db) -> None:
    name = case_in("In progress")
    ti = FakeTI()
    with pytest.raises(AirflowRescheduleException):
        _sensor(name, mode="reschedule", poke_interval=0.5).execute(make_context(ti))
    assert ti.pushed[0][0] == XCOM_CASE_URL


def test_reschedule_mode_finishes_when_delivered(case_in, reschedule_without_db) -> None:
    name = case_in("Finalized")
    assert _sensor(name, mode="reschedule", poke_interval=0.5).execute(make_context()) == "Finalized"


def test_reschedule_mode_returns_the_status_on_the_try_that_sees_it(
    case_in, sim_conn, reschedule_without_db
) -> None:
    """Each reschedule is a new execution of the task: the one that sees a target returns it."""
    name = case_in("In progress")
    sensor = _sensor(name, mode="reschedule", poke_interval=0.5, target_statuses=["Delivered"])
    with pytest.raises(AirflowRescheduleException):
        sensor.execute(make_context(FakeTI(try_number=1)))
    sim_conn.set_status(name, "Sign-out review")  # undeclared: still not yet
    with pytest.raises(AirflowRescheduleException):
        sensor.execute(make_context(FakeTI(try_number=1)))
    sim_conn.set_status(name, "Delivered")
    assert sensor.execute(make_context(FakeTI(try_number=1))) == "Delivered"


def test_reschedule_mode_fails_on_a_failed_case(case_in, reschedule_without_db) -> None:
    name = case_in("Issue reported")
    with pytest.raises(
        EmedgeneCaseFailedError, match=re.escape(f"{name} is in failure status 'Issue reported'")
    ):
        _sensor(name, mode="reschedule", poke_interval=0.5).execute(make_context())


# -- deferrable -------------------------------------------------------------------------------------


def test_deferrable_defers_with_the_right_trigger(case_in, sim_conn) -> None:
    name = case_in("In progress")
    ti = FakeTI()
    sensor = _sensor(
        name,
        deferrable=True,
        poke_interval=0.25,
        timeout=600,
        target_statuses=["Finalized"],
        failure_statuses="On hold",
        emedgene_conn_id="emedgene_default",
    )
    before = time.time()
    with pytest.raises(TaskDeferred) as raised:
        sensor.execute(make_context(ti))
    after = time.time()
    assert ti.pushed == [(XCOM_CASE_URL, f"{sim_conn.url}/case/{name}")]
    deferred = raised.value
    assert deferred.method_name == "execute_complete"
    assert deferred.timeout == timedelta(seconds=600)
    trigger = deferred.trigger
    assert isinstance(trigger, EmedgeneCaseStatusTrigger)
    assert trigger.case_name == name
    assert trigger.emedgene_conn_id == "emedgene_default"
    assert trigger.target_statuses == ["Finalized"]
    assert trigger.failure_statuses == ["On hold"]
    assert trigger.poll_interval == 0.25
    assert before + 600 <= trigger.end_time <= after + 600
    assert status_gets(sim_conn) == 1


def test_deferrable_defaults_in_the_trigger(case_in) -> None:
    name = case_in("Uploading")
    with pytest.raises(TaskDeferred) as raised:
        _sensor(name, deferrable=True).execute(make_context())
    trigger = raised.value.trigger
    assert trigger.target_statuses == ["Delivered"]
    assert trigger.failure_statuses is None


@pytest.mark.parametrize("status", ["Delivered", "Finalized"])
def test_deferrable_does_not_defer_when_already_there(case_in, sim_conn, status) -> None:
    name = case_in(status)
    ti = FakeTI()
    assert _sensor(name, deferrable=True).execute(make_context(ti)) == status
    assert ti.pushed == [
        (XCOM_CASE_URL, f"{sim_conn.url}/case/{name}"),
        (XCOM_CASE_STATUS, {"case_name": name, "status": status}),
    ]
    assert status_gets(sim_conn) == 1


def test_deferrable_without_a_check_defers_at_once(case_in, sim_conn) -> None:
    """check_before_deferring=False: no read in the worker, even of a case already there (the
    trigger finds it at its first poll), so the task process needs no token."""
    name = case_in("Delivered")
    ti = FakeTI()
    with pytest.raises(TaskDeferred) as raised:
        _sensor(name, deferrable=True, check_before_deferring=False).execute(make_context(ti))
    assert raised.value.trigger.case_name == name
    assert ti.pushed == [(XCOM_CASE_URL, f"{sim_conn.url}/case/{name}")]
    assert status_gets(sim_conn) == 0


def test_deferrable_fails_without_deferring_on_a_failed_case(case_in) -> None:
    name = case_in("Issue reported")
    with pytest.raises(
        EmedgeneCaseFailedError, match=re.escape(f"{name} is in failure status 'Issue reported'")
    ):
        _sensor(name, deferrable=True).execute(make_context())


def test_deferrable_soft_fail_skips_a_failed_case(case_in) -> None:
    name = case_in("Issue reported")
    with pytest.raises(
        AirflowSkipException, match=re.escape(f"{name} is in failure status 'Issue reported'")
    ):
        _sensor(name, deferrable=True, soft_fail=True).execute(make_context())


async def test_deferrable_returns_the_status_the_trigger_saw(case_in, sim_conn) -> None:
    """The whole deferrable path: defer, the trigger's run against the simulator, then resume."""
    name = case_in("In progress")
    sensor = _sensor(name, deferrable=True)
    with pytest.raises(TaskDeferred) as raised:
        sensor.execute(make_context())
    sim_conn.set_status(name, "Finalized")  # past the target: the status it ended on, not the target
    (event,) = [event.payload async for event in raised.value.trigger.run()]
    assert sensor.execute_complete(make_context(), event) == "Finalized"


# -- execute_complete -------------------------------------------------------------------------------

CASE = "EMG000000123"


def _event(status: str, case_status: str | None = None, message: str = "") -> dict:
    return {"status": status, "case_name": CASE, "case_status": case_status, "message": message}


def test_execute_complete_success_returns_the_status() -> None:
    sensor = _sensor(CASE, deferrable=True)
    assert sensor.execute_complete(make_context(), _event("success", "Finalized", "ok")) == "Finalized"


@pytest.mark.parametrize(
    ("soft_fail", "event", "error", "message"),
    [
        (
            False,
            _event("failed", "Issue reported", "x"),
            EmedgeneCaseFailedError,
            f"Emedgene case {CASE} is in failure status 'Issue reported'",
        ),
        (
            True,
            _event("failed", "Issue reported", "x"),
            AirflowSkipException,
            f"Emedgene case {CASE} is in failure status 'Issue reported'",
        ),
        (
            False,
            _event("timeout", "In progress", "timed out waiting for Delivered"),
            AirflowSensorTimeout,
            "timed out waiting for Delivered",
        ),
        (
            True,
            _event("timeout", "In progress", "timed out waiting for Delivered"),
            AirflowSkipException,
            "timed out waiting for Delivered",
        ),
        (
            False,
            _event("error", None, f"Emedgene case {CASE} not found"),
            AirflowException,
            f"Emedgene case {CASE} not found",
        ),
        (False, None, AirflowException, "Emedgene trigger ended without an event"),
    ],
)
def test_execute_complete_raises_for_every_other_event(soft_fail, event, error, message) -> None:
    sensor = _sensor(CASE, deferrable=True, soft_fail=soft_fail)
    with pytest.raises(error) as raised:
        sensor.execute_complete(make_context(), event)
    assert type(raised.value) is error
    assert str(raised.value) == message
