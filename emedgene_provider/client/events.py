"""The events the triggers fire and the tasks resume from: one TypedDict and one parser per kind.

A trigger event crosses the metadata DB as JSON, so it is written as plain strings and read back
through the parser, which refuses anything else with the event's own message (as dbt Cloud's
``validate_execute_complete_event`` and Databricks' ``RunState.from_json`` do).
"""

from __future__ import annotations

from enum import Enum
from typing import Any, TypedDict

from emedgene_provider.client.status import TRIGGER_EVENT_OUTCOMES, WaitOutcome


class EventError(ValueError):
    """An event that is not what its trigger fires: missing, or of another kind."""


class StatusEvent(TypedDict):
    """What :class:`~emedgene_provider.triggers.emedgene.EmedgeneCaseStatusTrigger` fires once."""

    status: WaitOutcome  # SUCCESS, FAILED, TIMEOUT or ERROR; its value in the JSON
    case_name: str
    case_status: str | None
    message: str


def status_event(
    outcome: WaitOutcome, case_name: str, message: str, case_status: str | None
) -> dict[str, Any]:
    """A status wait's event, as JSON."""
    return {"status": outcome.value, "case_name": case_name, "case_status": case_status, "message": message}


def parse_status_event(event: Any) -> StatusEvent:
    """The status wait's event, typed; :class:`EventError` (with its message) for anything else."""
    if not isinstance(event, dict):
        raise EventError("Emedgene status trigger ended without an event")
    outcome = WaitOutcome.parse(event.get("status"))
    message = str(event.get("message") or "")
    if outcome not in TRIGGER_EVENT_OUTCOMES:
        raise EventError(message or f"Emedgene trigger for case {event.get('case_name')} failed: {event!r}")
    assert outcome is not None
    status = event.get("case_status")
    return StatusEvent(
        status=outcome,
        case_name=str(event.get("case_name")),
        case_status=status if isinstance(status, str) else None,
        message=message,
    )


class ReconcileOutcome(str, Enum):
    """How a reconcile wait (:class:`~emedgene_provider.triggers.emedgene.EmedgeneCreateReconcileTrigger`)
    ended: a case carries the key (adopt it), the key stayed absent (or its case failed) for the
    window (create it), or a permanent error."""

    FOUND = "found"
    ABSENT = "absent"
    ERROR = "error"

    def __str__(self) -> str:
        return self.value


class ReconcileEvent(TypedDict):
    """What the reconcile trigger fires once."""

    status: ReconcileOutcome
    idempotency_key: str
    case_name: str | None  # FOUND: the case to adopt
    case_status: str | None
    since: float | None
    message: str


def reconcile_event(
    outcome: ReconcileOutcome,
    key: str,
    message: str,
    *,
    since: float | None,
    case_name: str | None = None,
    case_status: str | None = None,
) -> dict[str, Any]:
    """A reconcile wait's event, as JSON."""
    return {
        "status": outcome.value,
        "idempotency_key": key,
        "case_name": case_name,
        "case_status": case_status,
        "since": since,
        "message": message,
    }


def parse_reconcile_event(event: Any, key: str) -> ReconcileEvent:
    """The reconcile wait's event for ``key``, typed. :class:`EventError` carries the trigger's
    message for an ERROR event, and refuses a FOUND event without a case or an event of another key."""
    if not isinstance(event, dict):
        raise EventError("Emedgene reconcile trigger ended without an event")
    message = str(event.get("message") or "")
    try:
        outcome = ReconcileOutcome(str(event.get("status")))
    except ValueError:
        raise EventError(message or f"Emedgene reconcile trigger failed: {event!r}") from None
    if outcome is ReconcileOutcome.ERROR:
        raise EventError(message or f"Emedgene reconcile trigger failed: {event!r}")
    if event.get("idempotency_key") != key:
        raise EventError(
            f"Emedgene reconcile trigger answered for idempotency key {event.get('idempotency_key')!r}, "
            f"not {key!r}"
        )
    name, status, since = event.get("case_name"), event.get("case_status"), event.get("since")
    if outcome is ReconcileOutcome.FOUND and not (isinstance(name, str) and name):
        raise EventError(f"Emedgene reconcile trigger found a case for {key!r} but named none: {event!r}")
    return ReconcileEvent(
        status=outcome,
        idempotency_key=key,
        case_name=name if isinstance(name, str) and name else None,
        case_status=status if isinstance(status, str) else None,
        since=float(since) if isinstance(since, (int, float)) and not isinstance(since, bool) else None,
        message=message,
    )
