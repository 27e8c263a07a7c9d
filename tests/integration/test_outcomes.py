"""One typed outcome for every wait (:class:`WaitOutcome`), and one module for every exception.

The status model, the trigger's events, the sensor and the create operator speak
:class:`~emedgene_provider.client.status.WaitOutcome`; a trigger event stays JSON (the Enum's value)
and an event read back as plain JSON (bare strings) resumes.
"""

from __future__ import annotations

import inspect
import json
from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException, AirflowSkipException
from airflow.providers.common.compat.version_compat import AIRFLOW_V_3_3_PLUS
from airflow_fixtures import creates, make_context, valid_case

import emedgene_provider.exceptions as exceptions
from emedgene_provider.client import errors
from emedgene_provider.client.create import (
    CheckCase,
    CreateOnce,
    CreateRecord,
    Done,
    NotFound,
    Post,
    Status,
    failure_rule,
)
from emedgene_provider.client.status import (
    TERMINAL_OUTCOMES,
    TRIGGER_EVENT_OUTCOMES,
    WaitOutcome,
    evaluate,
)
from emedgene_provider.exceptions import EmedgeneCaseFailedError
from emedgene_provider.operators.create import default_idempotency_key
from emedgene_provider.operators.emedgene import EmedgeneCreateCaseOperator
from emedgene_provider.testing.fakes import FakeTI
from emedgene_provider.waiting import resume

# -- the Enum -----------------------------------------------------------------------------------------


def test_the_values_are_the_strings_trigger_events_carry() -> None:
    """A trigger event carries one of these bare strings under "status"."""
    assert {o.value for o in TRIGGER_EVENT_OUTCOMES} == {"success", "failed", "timeout", "error"}
    assert [o.value for o in WaitOutcome] == ["waiting", "success", "failed", "timeout", "error"]


def test_terminal_outcomes_are_all_but_waiting() -> None:
    assert set(WaitOutcome) - {WaitOutcome.WAITING} == TERMINAL_OUTCOMES
    assert TRIGGER_EVENT_OUTCOMES == TERMINAL_OUTCOMES  # a wait ends in one of these; it is the event
    assert not WaitOutcome.WAITING.is_terminal
    assert all(o.is_terminal for o in TERMINAL_OUTCOMES)


def test_an_outcome_serializes_and_logs_as_its_value() -> None:
    assert json.dumps({"status": WaitOutcome.TIMEOUT}) == '{"status": "timeout"}'
    assert str(WaitOutcome.FAILED) == "failed" and f"{WaitOutcome.SUCCESS}" == "success"


@pytest.mark.parametrize(
    ("value", "outcome"),
    [
        ("success", WaitOutcome.SUCCESS),  # as a trigger event carries it
        ("failed", WaitOutcome.FAILED),
        ("timeout", WaitOutcome.TIMEOUT),
        ("error", WaitOutcome.ERROR),
        ("SUCCESS", WaitOutcome.SUCCESS),  # the member's name
        (WaitOutcome.FAILED, WaitOutcome.FAILED),
        ("found", None),  # the reconcile trigger's, not a wait's
        ("", None),
        (None, None),
    ],
)
def test_parse_reads_an_event_status(value: Any, outcome: WaitOutcome | None) -> None:
    assert WaitOutcome.parse(value) is outcome


def test_evaluate_returns_members() -> None:
    assert evaluate("Finalized", ["Delivered"], None) is WaitOutcome.SUCCESS
    assert evaluate("Trash bin", ["Delivered"], None) is WaitOutcome.FAILED
    assert evaluate("Uploading", ["Delivered"], None) is WaitOutcome.WAITING


# -- resuming an event read back as plain JSON --------------------------------------------------------


def _stored_event(status: str, case_status: str | None, message: str = "") -> dict[str, Any]:
    """An event as the triggerer stores it and the task reads it back: plain JSON, bare strings."""
    return json.loads(
        json.dumps(
            {"status": status, "case_name": "EMG000000042", "case_status": case_status, "message": message}
        )
    )


def test_events_read_back_as_plain_json_resume() -> None:
    assert resume(_stored_event("success", "Delivered")) == "Delivered"
    with pytest.raises(EmedgeneCaseFailedError) as raised:
        resume(_stored_event("failed", "Issue reported"))
    assert (raised.value.case_name, raised.value.case_status) == ("EMG000000042", "Issue reported")
    with pytest.raises(AirflowSkipException, match="timed out waiting for Delivered"):
        resume(_stored_event("timeout", "In progress", "timed out waiting for Delivered"), soft_fail=True)
    with pytest.raises(Exception, match="EMG000000042 not found"):
        resume(_stored_event("error", None, "Emedgene case EMG000000042 not found"))


# -- one module for every exception -------------------------------------------------------------------


def test_every_client_error_is_importable_from_emedgene_provider_exceptions() -> None:
    defined = {
        name
        for name, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, errors.EmedgeneError) and cls.__module__ == errors.__name__
    }
    assert defined <= set(exceptions.__all__)
    for name in defined:
        assert getattr(exceptions, name) is getattr(errors, name)
    assert set(exceptions.__all__) == defined | {"EmedgeneCaseFailedError"}


def test_the_case_failed_error_fails_without_retry() -> None:
    error = EmedgeneCaseFailedError("x", case_name="EMG000000001", case_status="Trash bin")
    assert isinstance(error, AirflowFailException)
    assert (error.case_name, error.case_status) == ("EMG000000001", "Trash bin")


# -- the create operator: a case that is gone ---------------------------------------------------------


class _Store(dict):  # type: ignore[type-arg]
    """Airflow 3.3's durable task state, as the operator sees it."""

    def set(self, key: str, value: Any) -> None:
        self[key] = value


def test_a_recorded_case_that_is_gone_is_created_anew_not_waited_on() -> None:
    """A 404 on the case an earlier try recorded (long after its create) means it is gone: the
    create machine creates the case anew, and no status named "gone" is involved."""
    record = CreateRecord("k", case_name="EMG999999999", case_at=0.0)
    machine = CreateOnce("k", record, window=600.0)
    assert machine.next_step(10_000.0) == CheckCase("EMG999999999")
    machine.take(NotFound(), 10_000.0)
    assert isinstance(machine.next_step(10_000.0), Post)
    assert record.case_name is None


def test_a_server_status_spelled_like_an_outcome_is_only_a_status() -> None:
    """A case whose status happens to read "gone" is alive: reattached, not created anew."""
    for failures in (None, ["Analysis failed"]):
        machine = CreateOnce("k", CreateRecord("k", case_name="EMG000000001"), failed=failure_rule(failures))
        machine.next_step(1.0)
        machine.take(Status("gone"), 1.0)
        assert machine.next_step(1.0) == Done("EMG000000001", created=False)


@pytest.mark.skipif(
    not AIRFLOW_V_3_3_PLUS,
    reason="Airflow 3.3's durable task state: below 3.3 a retry records no case to find gone",
)
def test_a_retry_whose_recorded_case_is_gone_creates_it_anew(sim_conn) -> None:
    store = _Store()
    context = make_context(
        FakeTI(try_number=2),
        task_state_store=store,
        dag_run=SimpleNamespace(start_date=datetime.now(timezone.utc)),
    )
    key = default_idempotency_key(context)
    store.set("emedgene_create_attempt", CreateRecord(key, case_name="EMG999999999").to_json())
    name = EmedgeneCreateCaseOperator(task_id="create", case=valid_case(), wait_for_completion=False).execute(
        context
    )
    assert name != "EMG999999999"
    assert creates(sim_conn) == 1
