"""Statuses fail closed: only a status known to be at or past the target ends a wait.

An unknown status ("Failed", "Cancelled", "Delivered.", a lab's undeclared custom status) keeps the
sensor, the trigger and the create operator waiting, with one warning per wait that says how to
declare it; a blank status is an unexpected answer naming the case and the call; a lab's custom
statuses, declared in the connection extra ``custom_statuses``, count as past Delivered. Everything
below runs against the simulator over real HTTP, except the exact answer shapes the simulator
cannot give (a missing or null ``status``), which use ``requests_mock``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Any

import pytest
import requests
from airflow.providers.common.compat.sdk import TaskDeferred
from airflow_fixtures import connect, creates, make_context, status_gets, valid_case

from emedgene_provider.client import status as lifecycle
from emedgene_provider.client.aio import AsyncEmedgeneClient
from emedgene_provider.client.config import KNOWN_EXTRAS, config_from_connection, parse_custom_statuses
from emedgene_provider.client.create import CreateOnce, CreateRecord, Done, Post, Status, failure_rule
from emedgene_provider.client.endpoints import LOGIN_PATH
from emedgene_provider.client.errors import (
    EmedgeneConfigError,
    EmedgeneInvalidRequestError,
    EmedgeneUnexpectedResponseError,
)
from emedgene_provider.client.status import WaitOutcome
from emedgene_provider.client.sync import EmedgeneClient
from emedgene_provider.hooks.emedgene import EmedgeneHook
from emedgene_provider.operators.emedgene import EmedgeneCreateCaseOperator
from emedgene_provider.sensors.emedgene import EmedgeneCaseStatusSensor
from emedgene_provider.testing import EmedgeneSimulator
from emedgene_provider.testing.fakes import FakeTI
from emedgene_provider.testing.simulator import build_parser
from emedgene_provider.testing.simulator import main as simulator_main
from emedgene_provider.testing.state import lifecycle as lifecycle_of
from emedgene_provider.triggers import emedgene as trigger_module
from emedgene_provider.triggers.emedgene import EmedgeneCaseStatusTrigger

#: Statuses a real tenant might answer that the lifecycle does not know: none of them is delivery.
UNKNOWN = ["Failed", "Delivered.", "Cancelled", "Analysis failed", "Sign-out review"]
#: The words every "unknown status" warning carries.
UNRECOGNISED = "neither in the Emedgene lifecycle nor a declared custom status"
CUSTOM = "Sign-out review"


@pytest.fixture
def warnings_for(caplog, capsys):
    """How many "unknown status" warnings were logged for a status. Loggers reach ``logging`` (caplog)
    or, for a trigger's logger on Airflow 3, only structlog's console (stdout); a record may show in
    both, so each is counted and the larger count is the number of warnings."""
    caplog.set_level(logging.INFO)
    printed: list[str] = []

    def count(status: str) -> int:
        printed.append(capsys.readouterr().out)
        needle = repr(status)
        in_records = sum(
            1
            for record in caplog.records
            if record.levelno == logging.WARNING
            and UNRECOGNISED in record.getMessage()
            and needle in record.getMessage()
        )
        in_stdout = sum(
            1 for line in "".join(printed).splitlines() if UNRECOGNISED in line and needle in line
        )
        return max(in_records, in_stdout)

    return count


def _case(sim: EmedgeneSimulator, status: str | None = None) -> str:
    name = EmedgeneHook().client.create_case(valid_case())
    if status is not None:
        sim.set_status(name, status)
    return name


def _sensor(name: str, **kwargs: Any) -> EmedgeneCaseStatusSensor:
    kwargs.setdefault("poke_interval", 0.01)
    kwargs.setdefault("timeout", 600)
    return EmedgeneCaseStatusSensor(task_id="wait", case_name=name, **kwargs)


@pytest.fixture
def delivered_after(monkeypatch):
    """Script a case from the test, not a timer: once the hook has read its status ``reads`` times,
    the simulator delivers it. Returns the statuses read, in order."""

    def script(sim: EmedgeneSimulator, name: str, reads: int) -> list[str]:
        seen: list[str] = []
        original = EmedgeneHook.get_case_status

        def get_case_status(self: EmedgeneHook, case_name: str) -> str:
            status = original(self, case_name)
            if case_name == name:
                seen.append(status)
                if len(seen) == reads:
                    sim.set_status(name, lifecycle.DELIVERED)
            return status

        monkeypatch.setattr(EmedgeneHook, "get_case_status", get_case_status)
        return seen

    return script


# -- the decision ----------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [*UNKNOWN, ""])
def test_an_unknown_status_is_not_yet_delivered(status) -> None:
    assert lifecycle.evaluate(status, ["Delivered"], None) is WaitOutcome.WAITING
    assert lifecycle.is_unrecognised(status)
    assert not lifecycle.is_delivered(status)


def test_re_analysis_is_known_and_not_delivered() -> None:
    assert lifecycle.evaluate("Re-Analysis", ["Delivered"], None) is WaitOutcome.WAITING
    assert lifecycle.evaluate("re_analysis", ["In progress"], None) is WaitOutcome.SUCCESS
    assert not lifecycle.is_unrecognised("RE-ANALYSIS")  # known: nothing to warn about


def test_declared_custom_statuses_rank_between_delivered_and_finalized() -> None:
    custom = ["sign_out review", "Awaiting billing"]
    assert lifecycle.evaluate("Sign-out review", ["Delivered"], None, custom) is WaitOutcome.SUCCESS
    assert lifecycle.evaluate("Sign-out review", ["Finalized"], None, custom) is WaitOutcome.WAITING
    assert lifecycle.evaluate("Finalized", ["Sign-out review"], None, custom) is WaitOutcome.SUCCESS
    assert lifecycle.evaluate("Delivered", ["Sign-out review"], None, custom) is WaitOutcome.WAITING
    # Two custom statuses are unordered: neither reaches the other.
    assert lifecycle.evaluate("Awaiting billing", ["Sign-out review"], None, custom) is WaitOutcome.WAITING
    assert not lifecycle.is_unrecognised("SIGN-OUT REVIEW", custom)


def test_a_target_named_exactly_always_ends_the_wait() -> None:
    """A lab waiting for its own status by name needs no declaration."""
    assert lifecycle.evaluate("sign-out review", ["Sign-out review"], None) is WaitOutcome.SUCCESS
    assert lifecycle.evaluate("Delivered.", ["Delivered"], None) is WaitOutcome.WAITING


def test_failures_are_checked_before_targets_and_custom_statuses() -> None:
    assert lifecycle.evaluate("On hold", ["On hold"], ["on_hold"], ["On hold"]) is WaitOutcome.FAILED
    assert lifecycle.evaluate("Issue reported", ["Delivered"], None, ["x"]) is WaitOutcome.FAILED


def test_the_notice_warns_once_per_status_and_never_for_a_known_one() -> None:
    notice = lifecycle.UnrecognisedStatusNotice()
    first = notice.check("EMG000000001", "Cancelled", ["Delivered"])
    assert first is not None
    assert "EMG000000001" in first and "'Cancelled'" in first and "'custom_statuses'" in first
    assert "failure_statuses" in first
    assert notice.check("EMG000000001", "CANCELLED", ["Delivered"]) is None  # the same status, again
    assert notice.check("EMG000000001", "Uploading", ["Delivered"]) is None
    assert notice.check("EMG000000001", CUSTOM, ["Delivered"], [CUSTOM]) is None
    assert notice.check("EMG000000001", "Analysis failed", ["Delivered"]) is not None  # a new one


# -- the connection extra ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "declared"),
    [
        (["Sign-out review", " Awaiting billing "], ("Sign-out review", "Awaiting billing")),
        ('["Sign-out review", "Awaiting billing"]', ("Sign-out review", "Awaiting billing")),
        ("Sign-out review, Awaiting billing,", ("Sign-out review", "Awaiting billing")),
        ("Sign-out review", ("Sign-out review",)),
        ([], ()),
        (None, ()),
    ],
)
def test_custom_statuses_extra_forms(value, declared) -> None:
    assert parse_custom_statuses(value) == declared


NOT_A_LIST = "must be a list of status names (or a comma-separated string), not"
ALREADY_DEFINED = "which the Emedgene lifecycle already defines; list only the lab's own statuses"


@pytest.mark.parametrize(
    ("value", "complaint"),
    [
        (5, f"{NOT_A_LIST} 5."),
        ({"a": 1}, f"{NOT_A_LIST} {{'a': 1}}."),
        (["ok", 3], f"{NOT_A_LIST} ['ok', 3]."),
        ('{"a": 1}', f"""{NOT_A_LIST} '{{"a": 1}}'."""),
        ('["unclosed"', """is not a valid JSON list: '["unclosed"'."""),
        (["Sign-out review", "delivered"], f"lists 'delivered', {ALREADY_DEFINED}."),
        ("Trash bin, Move to trash", f"lists 'Trash bin', 'Move to trash', {ALREADY_DEFINED}."),
    ],
)
def test_custom_statuses_extra_rejects_what_it_cannot_read(value, complaint) -> None:
    with pytest.raises(EmedgeneConfigError) as raised:
        config_from_connection(
            host="https://lab.emedgene.com", login="u", password="p", extra={"custom_statuses": value}
        )
    assert str(raised.value) == f"Emedgene connection extra 'custom_statuses' {complaint}"


def test_custom_statuses_is_a_known_extra_and_reaches_the_config() -> None:
    assert "custom_statuses" in KNOWN_EXTRAS
    config = config_from_connection(
        host="https://lab.emedgene.com",
        login="u",
        password="p",
        extra=json.dumps({"extra__emedgene__custom_statuses": "Sign-out review"}),  # a UI form's save
    )
    assert config.custom_statuses == ("Sign-out review",)


# -- a blank or missing status is an unexpected answer ---------------------------------------------


def test_blank_status_is_an_error_naming_the_case_and_the_call(sim_conn) -> None:
    name = _case(sim_conn, "")
    with pytest.raises(EmedgeneUnexpectedResponseError) as raised:
        EmedgeneHook().get_case_status(name)
    message = str(raised.value)
    assert f"get_case_status({name})" in message
    assert f"GET /api/test/{name}" in message
    assert "no usable 'status'" in message
    assert raised.value.case_name == name


async def test_blank_status_is_an_error_for_the_async_client_too(sim_conn) -> None:
    name = _case(sim_conn, "   ")
    async with AsyncEmedgeneClient(EmedgeneHook().config) as client:
        with pytest.raises(EmedgeneUnexpectedResponseError, match=rf"get_case_status\({name}\).*'status'"):
            await client.get_case_status(name)


def test_a_sensor_never_succeeds_on_a_blank_status(sim_conn) -> None:
    name = _case(sim_conn, "")
    with pytest.raises(EmedgeneUnexpectedResponseError, match=rf"get_case_status\({name}\)"):
        _sensor(name).poke(make_context())


async def test_the_trigger_reports_a_blank_status_as_an_error(sim_conn) -> None:
    name = _case(sim_conn, "")
    trigger = EmedgeneCaseStatusTrigger(
        name, "emedgene_default", ["Delivered"], None, 0.01, time.time() + 600
    )
    events = [event.payload async for event in trigger.run()]
    assert [(e["status"], e["case_name"]) for e in events] == [("error", name)]
    assert f"get_case_status({name})" in events[0]["message"]


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        ({"name": "EMG000000001"}, "has no 'status' (keys: name)"),
        ({"name": "EMG000000001", "status": None}, "has no usable 'status' (got null)"),
        ({"name": "EMG000000001", "status": 3}, "has no usable 'status' (got 3)"),
        ({"name": "EMG000000001", "status": " "}, """has no usable 'status' (got " ")"""),
        (["Delivered"], "has no 'status' (keys: a JSON list)"),
    ],
)
def test_missing_or_non_string_status_is_an_error(requests_mock, answer, words) -> None:
    base = "https://lab.emedgene.com"
    requests_mock.post(base + LOGIN_PATH, json={"access_token": "tok-1", "token_type": "bearer"})
    requests_mock.get(base + "/api/test/EMG000000001", json=answer)
    client = EmedgeneClient(config_from_connection(host=base, login="u", password="p", extra=None))
    with pytest.raises(EmedgeneUnexpectedResponseError) as raised:
        client.get_case_status("EMG000000001")
    assert str(raised.value) == (
        f"Emedgene get_case_status(EMG000000001): the answer to GET /api/test/EMG000000001 {words}"
    )


# -- the sensor ------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", UNKNOWN)
def test_sensor_waits_on_an_unknown_status_and_warns_once(sim_conn, warnings_for, status) -> None:
    name = _case(sim_conn, status)
    sensor = _sensor(name)
    assert [sensor.poke(make_context()) for _ in range(3)] == [False, False, False]
    assert warnings_for(status) == 1
    assert status_gets(sim_conn) == 3


def test_sensor_waits_on_re_analysis_without_a_warning(sim_conn, caplog) -> None:
    caplog.set_level(logging.INFO)
    name = _case(sim_conn, "Re-Analysis")
    assert _sensor(name).poke(make_context()) is False
    assert UNRECOGNISED not in caplog.text


def test_poke_mode_warns_once_per_execution_and_ends_on_delivery(
    sim_conn, warnings_for, delivered_after
) -> None:
    name = _case(sim_conn, "Analysis failed")
    reads = delivered_after(sim_conn, name, 4)
    sensor = _sensor(name, mode="poke")
    assert sensor.execute(make_context()) == "Delivered"
    assert reads == ["Analysis failed"] * 4 + ["Delivered"]
    assert warnings_for("Analysis failed") == 1
    # A new execution (a retry, a reschedule) warns again, once.
    sim_conn.set_status(name, "Analysis failed")
    reads = delivered_after(sim_conn, name, 2)
    assert sensor.execute(make_context()) == "Delivered"
    assert reads == ["Analysis failed"] * 2 + ["Delivered"]
    assert warnings_for("Analysis failed") == 2


def test_declared_custom_status_counts_as_delivered(emedgene_simulator_factory, monkeypatch, caplog) -> None:
    caplog.set_level(logging.INFO)
    sim = emedgene_simulator_factory(custom_statuses=[CUSTOM])
    assert sim.connection_json()["extra"]["custom_statuses"] == [CUSTOM]
    connect(monkeypatch, sim)
    name = _case(sim, "SIGN_OUT REVIEW")
    assert _sensor(name).poke(make_context()).xcom_value == "SIGN_OUT REVIEW"  # as the server wrote it
    assert _sensor(name, target_statuses=["Finalized"]).poke(make_context()) is False
    assert UNRECOGNISED not in caplog.text
    # The same connection without the declaration: the status is unknown, so not delivered.
    undeclared = sim.connection_json()
    del undeclared["extra"]["custom_statuses"]
    connect(monkeypatch, sim, undeclared)
    assert _sensor(name).poke(make_context()) is False


def test_custom_statuses_from_a_ui_form_string(sim_conn, monkeypatch) -> None:
    conn = sim_conn.connection_json()
    conn["extra"]["extra__emedgene__custom_statuses"] = f"Awaiting billing, {CUSTOM}"
    connect(monkeypatch, sim_conn, conn)
    name = _case(sim_conn, CUSTOM)
    assert _sensor(name).poke(make_context()).xcom_value == CUSTOM


def test_deferrable_sensor_defers_on_an_unknown_status(sim_conn) -> None:
    name = _case(sim_conn, "Cancelled")
    with pytest.raises(TaskDeferred):
        _sensor(name, deferrable=True).execute(make_context())


def test_deferrable_sensor_does_not_defer_on_a_declared_custom_status(
    emedgene_simulator_factory, monkeypatch
) -> None:
    sim = emedgene_simulator_factory(custom_statuses=[CUSTOM])
    connect(monkeypatch, sim)
    name = _case(sim, CUSTOM)
    assert _sensor(name, deferrable=True).execute(make_context()) == CUSTOM
    assert status_gets(sim) == 1


# -- the trigger -----------------------------------------------------------------------------------


def _trigger(name: str, **kwargs: Any) -> EmedgeneCaseStatusTrigger:
    return EmedgeneCaseStatusTrigger(
        case_name=name,
        emedgene_conn_id="emedgene_default",
        target_statuses=kwargs.pop("target_statuses", ["Delivered"]),
        failure_statuses=None,
        poll_interval=0.125,
        end_time=trigger_module.time.time() + 600,
    )


async def _events(trigger: EmedgeneCaseStatusTrigger) -> list[dict[str, Any]]:
    async def collect() -> list[dict[str, Any]]:
        return [event.payload async for event in trigger.run()]

    return await asyncio.wait_for(collect(), timeout=120)  # a guard against a hang, not a measure


async def test_trigger_keeps_waiting_on_an_unknown_status_and_warns_once(
    sim_conn, warnings_for, fake_clock
) -> None:
    fake_clock.install(trigger_module)  # its sleeps and deadline run on virtual time
    name = _case(sim_conn, "Cancelled")
    fake_clock.on_sleep(5, lambda: sim_conn.set_status(name, lifecycle.DELIVERED))
    events = await _events(_trigger(name))
    assert [(e["status"], e["case_status"]) for e in events] == [("success", "Delivered")]
    assert fake_clock.sleeps == [0.125] * 5  # five polls saw "Cancelled" and went on waiting
    assert status_gets(sim_conn) == 6
    assert warnings_for("Cancelled") == 1


async def test_trigger_succeeds_on_a_declared_custom_status(emedgene_simulator_factory, monkeypatch) -> None:
    sim = emedgene_simulator_factory(custom_statuses=[CUSTOM])
    connect(monkeypatch, sim)
    name = _case(sim, CUSTOM)
    events = await _events(_trigger(name))
    assert [(e["status"], e["case_status"]) for e in events] == [("success", CUSTOM)]
    assert status_gets(sim) == 1


# -- the create operator ---------------------------------------------------------------------------


def test_create_and_wait_waits_on_an_unknown_outcome(
    emedgene_simulator_factory, monkeypatch, warnings_for
) -> None:
    sim = emedgene_simulator_factory(stage_seconds=0, outcome="Analysis failed")
    connect(monkeypatch, sim)
    seen: list[str] = []  # the case name is not known before the create: deliver whichever is read
    original = EmedgeneHook.get_case_status

    def deliver_on_third_read(self: Any, case_name: str) -> str:
        status = original(self, case_name)
        seen.append(status)
        if len(seen) == 3:
            sim.set_status(case_name, lifecycle.DELIVERED)
        return status

    monkeypatch.setattr(EmedgeneHook, "get_case_status", deliver_on_third_read)
    op = EmedgeneCreateCaseOperator(
        task_id="create", case=valid_case(), wait_for_completion=True, poll_interval=0.01, timeout=600
    )
    name = op.execute(_durable_context())
    assert seen == ["Analysis failed"] * 3 + ["Delivered"]
    assert warnings_for("Analysis failed") == 1
    assert creates(sim) == 1
    assert EmedgeneHook().get_case_status(name) == "Delivered"


class _Store(dict):  # type: ignore[type-arg]
    """Airflow 3.3's durable task state, as the operator sees it."""

    def set(self, key: str, value: Any) -> None:
        self[key] = value


def _durable_context(try_number: int = 1, store: _Store | None = None) -> dict[str, Any]:
    return make_context(
        FakeTI(try_number=try_number),
        task_state_store=_Store() if store is None else store,
        dag_run=SimpleNamespace(start_date=datetime.now(timezone.utc)),
    )


def test_a_retry_never_takes_an_unknown_status_for_success(sim_conn, delivered_after) -> None:
    """The earlier try's case is reused (never a second case) and waited on, not returned as done:
    on Airflow 3.3 through the durable task state, on 2.11 through the idempotency key."""
    store = _Store()
    first = EmedgeneCreateCaseOperator(
        task_id="create", case=valid_case(), wait_for_completion=False
    ).execute(_durable_context(1, store))
    sim_conn.set_status(first, "Analysis failed")
    reads = delivered_after(sim_conn, first, 2)
    op = EmedgeneCreateCaseOperator(
        task_id="create", case=valid_case(), wait_for_completion=True, poll_interval=0.01, timeout=600
    )
    assert op.execute(_durable_context(2, store)) == first
    assert reads[-1] == "Delivered"
    assert reads.count("Analysis failed") >= 2
    assert creates(sim_conn) == 1


def test_outcome_of_an_earlier_case(emedgene_simulator_factory, monkeypatch) -> None:
    """What the durable path decides from an earlier try's status: reattach (and let the wait
    decide: wait on, or done) for every status but a failure one, which creates anew."""
    sim = emedgene_simulator_factory(custom_statuses=[CUSTOM])
    connect(monkeypatch, sim)
    waiting = EmedgeneCreateCaseOperator(task_id="c", case=valid_case(), wait_for_completion=True)
    for status in [
        *UNKNOWN[:-1],
        "Re-Analysis",
        "In progress",
        "Delivered",
        "Finalized",
        CUSTOM,
        "Issue reported",
    ]:
        machine = CreateOnce(
            "k", CreateRecord("k", case_name="EMG1"), failed=failure_rule(waiting._key_failures())
        )
        machine.next_step(1.0)
        machine.take(Status(status), 1.0)
        step = machine.next_step(1.0)
        if status == "Issue reported":
            assert isinstance(step, Post), status
        else:
            assert step == Done("EMG1", created=False), status


# -- the simulator ---------------------------------------------------------------------------------


def test_simulator_goes_through_delivered_to_a_declared_custom_outcome(emedgene_simulator_factory) -> None:
    assert lifecycle_of(False, CUSTOM, (CUSTOM,)) == ["Uploading", "In progress", "Delivered", CUSTOM]
    sim = emedgene_simulator_factory(stage_seconds=0, outcome=CUSTOM, custom_statuses=[CUSTOM])
    config = config_from_connection(
        host=sim.url, login=sim.username, password=sim.password, extra=sim.connection_json()["extra"]
    )
    client = EmedgeneClient(config)
    name = client.create_case(valid_case())
    assert client.get_case_status(name) == CUSTOM
    assert client.get_candidates(name)  # delivered: results are there
    assert client.export_case(name)


def test_simulator_never_delivers_an_undeclared_outcome(emedgene_simulator_factory) -> None:
    assert lifecycle_of(False, "Analysis failed") == ["Uploading", "In progress", "Analysis failed"]
    assert lifecycle_of(False, "Re-Analysis") == ["Uploading", "In progress", "Re-Analysis"]
    sim = emedgene_simulator_factory(stage_seconds=0, outcome="Analysis failed")
    config = config_from_connection(host=sim.url, login=sim.username, password=sim.password, extra=None)
    client = EmedgeneClient(config)
    name = client.create_case(valid_case())
    assert client.get_case_status(name) == "Analysis failed"
    with pytest.raises(EmedgeneInvalidRequestError, match="not delivered yet"):
        client.get_candidates(name)
    sim.set_status(name, "Re-Analysis")
    with pytest.raises(EmedgeneInvalidRequestError, match="not delivered yet"):
        client.export_case(name)


def test_simulator_admin_accepts_a_blank_status(sim_conn) -> None:
    name = _case(sim_conn)
    answer = requests.post(f"{sim_conn.url}/_simulator/cases/{name}/status", json={"status": ""}, timeout=10)
    assert answer.status_code == 200
    refused = requests.post(f"{sim_conn.url}/_simulator/cases/{name}/status", json={"status": 1}, timeout=10)
    assert refused.status_code == 400
    with pytest.raises(EmedgeneUnexpectedResponseError):
        EmedgeneHook().get_case_status(name)


def test_simulator_cli_takes_custom_statuses() -> None:
    args = build_parser().parse_args(["--custom-status", CUSTOM, "--custom-status", "Awaiting billing"])
    assert args.custom_statuses == [CUSTOM, "Awaiting billing"]
    assert build_parser().parse_args([]).custom_statuses is None
    # A lifecycle status is not a custom one: the CLI refuses it before serving.
    assert simulator_main(["--custom-status", "Delivered"]) == 2


def test_simulator_refuses_a_lifecycle_status_as_custom() -> None:
    with pytest.raises(ValueError, match="custom status 'Finalized'"):
        EmedgeneSimulator(custom_statuses=["Finalized"])
