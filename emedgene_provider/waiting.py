"""Waiting on a case, for the sensor and the create operator alike: one check, one blocking wait,
and resuming from the trigger's event. Decisions come from :func:`emedgene_provider.client.status.evaluate`,
the same function the trigger uses, so the three paths cannot disagree; outcomes are
:class:`~emedgene_provider.client.status.WaitOutcome` members. A status nobody declared
is "not yet" (fail closed) and warned about once per wait, through an
:class:`~emedgene_provider.client.status.UnrecognisedStatusNotice` the caller keeps for that wait."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowException, AirflowSkipException

from emedgene_provider.client import status as lifecycle
from emedgene_provider.client.errors import EmedgeneNotFoundError, EmedgeneUnavailableError
from emedgene_provider.client.events import EventError, parse_status_event
from emedgene_provider.client.polling import PollSchedule
from emedgene_provider.client.status import WaitOutcome
from emedgene_provider.exceptions import EmedgeneCaseFailedError

if TYPE_CHECKING:
    from emedgene_provider.hooks.emedgene import EmedgeneHook

log = logging.getLogger(__name__)

DEFAULT_TARGETS = (lifecycle.DELIVERED,)


def status_list(value: str | Sequence[str] | None) -> list[str] | None:
    """A templated statuses argument as a list: one string is one status, not its letters."""
    if value is None:
        return None
    return [value] if isinstance(value, str) else [str(v) for v in value]


__all__ = [
    "DEFAULT_TARGETS",
    "check_case",
    "failed",
    "resume",
    "status_list",
    "wait_blocking",
]


def failed(
    case_name: str, case_status: str | None, *, soft_fail: bool = False, detail: str = ""
) -> Exception:
    message = f"Emedgene case {case_name} is in failure status {case_status!r}{detail}"
    if soft_fail:
        return AirflowSkipException(message)
    return EmedgeneCaseFailedError(message, case_name=case_name, case_status=case_status)


def check_case(
    hook: EmedgeneHook,
    case_name: str,
    targets: tuple[str, ...] | list[str],
    failures: tuple[str, ...] | list[str] | None,
    *,
    soft_fail: bool = False,
    notice: lifecycle.UnrecognisedStatusNotice | None = None,
    not_found_until: float | None = None,
) -> str | None:
    """The case's status if the wait is over, None if not yet; raises if the case failed.

    A tenant outage that outlasted the hook's retries is "not yet" (logged), not a failure. So is
    a status that is neither in the lifecycle nor in the connection's ``custom_statuses``: it is
    warned about once per ``notice`` (one per wait; without one, at every check). Until
    ``not_found_until`` (epoch seconds), a 404 is "not visible yet" too (the tenant lagging behind
    the case's create).
    """
    status, done = _check(
        hook,
        case_name,
        targets,
        failures,
        soft_fail=soft_fail,
        notice=notice,
        not_found_until=not_found_until,
    )
    return status if done else None


def _check(
    hook: EmedgeneHook,
    case_name: str,
    targets: tuple[str, ...] | list[str],
    failures: tuple[str, ...] | list[str] | None,
    *,
    soft_fail: bool = False,
    notice: lifecycle.UnrecognisedStatusNotice | None = None,
    not_found_until: float | None = None,
) -> tuple[str | None, bool]:
    """:func:`check_case`, also giving the status seen while waiting (None: no answer), which sets
    how long to sleep before the next check."""
    try:
        status = hook.get_case_status(case_name)
    except EmedgeneUnavailableError as exc:
        log.warning("Emedgene case %s: %s; will check again", case_name, exc)
        return None, False
    except EmedgeneNotFoundError:
        if not lifecycle.not_visible_yet(not_found_until, time.time()):
            raise
        log.info("Emedgene case %s: not visible yet (404: the tenant lags behind its create)", case_name)
        return None, False
    custom = hook.config.custom_statuses
    outcome = lifecycle.evaluate(status, targets, failures, custom)
    if outcome is WaitOutcome.FAILED:
        raise failed(case_name, status, soft_fail=soft_fail)
    log.info("Emedgene case %s is %r (waiting for %s)", case_name, status, " or ".join(targets))
    if outcome is WaitOutcome.WAITING:
        warning = (notice or lifecycle.UnrecognisedStatusNotice()).check(case_name, status, targets, custom)
        if warning:
            log.warning("%s", warning)
    return status, outcome is WaitOutcome.SUCCESS


def wait_blocking(
    hook: EmedgeneHook,
    case_name: str,
    targets: tuple[str, ...] | list[str],
    failures: tuple[str, ...] | list[str] | None,
    *,
    poll_interval: float,
    timeout: float,
    max_poll_interval: float | None = None,
    not_found_until: float | None = None,
) -> str:
    """Poll until the wait is over; raise on failure or when ``timeout`` seconds have passed.

    Sleeps between polls as the trigger does (:class:`~emedgene_provider.client.polling.PollSchedule`):
    ``poll_interval`` one stage before a target, longer (up to ``max_poll_interval``) earlier in
    the lifecycle, with jitter.
    """
    schedule = PollSchedule(poll_interval, max_poll_interval)
    deadline = time.monotonic() + timeout
    notice = lifecycle.UnrecognisedStatusNotice()
    custom = hook.config.custom_statuses
    last_seen: str | None = None  # through an outage, the stage last seen sets the wait, as in the trigger
    while True:
        status, done = _check(
            hook, case_name, targets, failures, notice=notice, not_found_until=not_found_until
        )
        if done and status is not None:
            return status
        last_seen = status if status is not None else last_seen
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AirflowException(
                f"Emedgene case {case_name}: timed out after {timeout:g} s waiting for {' or '.join(targets)}"
            )
        time.sleep(min(schedule.next_wait(last_seen, targets, custom), remaining))


def resume(event: dict[str, Any] | None, *, soft_fail: bool = False) -> str:
    """The case status of a status trigger's success event; a clear error for anything else
    (:func:`~emedgene_provider.client.events.parse_status_event` reads it)."""
    if not event:
        raise AirflowException("Emedgene trigger ended without an event")
    try:
        parsed = parse_status_event(event)
    except EventError as exc:
        raise AirflowException(str(exc)) from None
    kind, message = parsed["status"], parsed["message"]
    if kind is WaitOutcome.SUCCESS:
        return str(parsed["case_status"])
    if kind is WaitOutcome.FAILED:
        raise failed(parsed["case_name"], parsed["case_status"], soft_fail=soft_fail)
    if kind is WaitOutcome.TIMEOUT and soft_fail:
        raise AirflowSkipException(message)
    raise AirflowException(message or f"Emedgene trigger for case {parsed['case_name']} failed: {event!r}")
