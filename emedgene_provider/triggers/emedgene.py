"""EmedgeneCaseStatusTrigger: waits on a case's status inside Airflow's triggerer.

A wait of days costs no worker slot. The trigger holds only primitives (conn id, case name,
statuses, interval, an absolute deadline): never a token or credential. It gets its client from
the hook, which reads the connection through Airflow's async path (no sync DB access in the
triggerer); every wait of a triggerer on one tenant shares that one client (one connection pool,
one token: one login, renewed once inside waits of any length). It yields exactly one event.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from emedgene_provider.client import status as lifecycle
from emedgene_provider.client.errors import EmedgeneError, EmedgeneUnavailableError
from emedgene_provider.client.polling import PollSchedule
from emedgene_provider.client.reconcile import (
    ADOPT,
    CREATE_ANEW,
    LOOKUP_FIRST_WAIT,
    LOOKUP_MAX_WAIT,
    CreateRecord,
    Window,
    describe_lookup,
    verdict,
)
from emedgene_provider.client.status import WaitOutcome
from emedgene_provider.hooks.emedgene import EmedgeneHook

if TYPE_CHECKING:  # aiohttp is imported in the triggerer, when a wait starts, not in every DAG parse
    from emedgene_provider.client.aio import AsyncEmedgeneClient


class EmedgeneCaseStatusTrigger(BaseTrigger):
    """Poll a case until a target status, a failure status, the deadline, or a permanent error.

    Yields one event, ``{"status", "case_name", "case_status", "message"}``, whose ``status`` is the
    value of a :class:`~emedgene_provider.client.status.WaitOutcome` (``"success"``, ``"failed"``,
    ``"timeout"`` or ``"error"``: :data:`~emedgene_provider.client.status.TRIGGER_EVENT_OUTCOMES`),
    a plain string so the event stays JSON; read it back with :meth:`WaitOutcome.parse`.

    :param case_name: the case (``EMG`` + 9 digits).
    :param emedgene_conn_id: the Emedgene connection.
    :param target_statuses: statuses that end the wait successfully (or any known to be later in the
        lifecycle; a status neither in the lifecycle nor in the connection's ``custom_statuses``
        keeps the wait going, with a warning once per run).
    :param failure_statuses: statuses that end it as failed; None for the lifecycle's failures.
    :param poll_interval: seconds between polls once the case is one stage before a target (Queued
        or In progress, waiting for Delivered); earlier stages are polled less often, with jitter
        (the rule: :mod:`emedgene_provider.client.polling`).
    :param end_time: absolute deadline (epoch seconds), so a resumed trigger keeps the task's timeout.
    :param max_poll_interval: the longest wait between two polls (before jitter); None for
        ``max(poll_interval, min(8 * poll_interval, 3600))``. A trigger serialized without it (an
        earlier version of the provider) resumes with that default.
    """

    def __init__(
        self,
        case_name: str,
        emedgene_conn_id: str,
        target_statuses: list[str],
        failure_statuses: list[str] | None,
        poll_interval: float,
        end_time: float,
        max_poll_interval: float | None = None,
    ) -> None:
        super().__init__()
        self.case_name = case_name
        self.emedgene_conn_id = emedgene_conn_id
        self.target_statuses = list(target_statuses)
        self.failure_statuses = None if failure_statuses is None else list(failure_statuses)
        self.poll_interval = float(poll_interval)
        self.end_time = float(end_time)
        self.max_poll_interval = None if max_poll_interval is None else float(max_poll_interval)
        # Refuses a bad interval here, when the task defers, not at the first sleep in the triggerer.
        self._schedule = PollSchedule(self.poll_interval, self.max_poll_interval)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "case_name": self.case_name,
                "emedgene_conn_id": self.emedgene_conn_id,
                "target_statuses": self.target_statuses,
                "failure_statuses": self.failure_statuses,
                "poll_interval": self.poll_interval,
                "end_time": self.end_time,
                "max_poll_interval": self.max_poll_interval,
            },
        )

    def _event(self, outcome: WaitOutcome, message: str, case_status: str | None = None) -> TriggerEvent:
        return TriggerEvent(
            {
                "status": outcome.value,
                "case_name": self.case_name,
                "case_status": case_status,
                "message": message,
            }
        )

    def _client(self) -> AbstractAsyncContextManager[AsyncEmedgeneClient]:
        """The triggerer's shared client for the connection, through the hook (one place reads
        connections): every wait on one tenant shares its connection pool and token."""
        return EmedgeneHook(self.emedgene_conn_id).async_client()

    async def run(self) -> AsyncIterator[TriggerEvent]:
        # One event, yielded once the wait has left its shared client: a runner that takes the
        # first event and drops the generator (``airflow dags test``) must not find it inside an
        # ``async with`` (Python then closes it at exit: "aclose(): asynchronous generator is
        # already running").
        yield await self._wait()

    async def _wait(self) -> TriggerEvent:
        async with AsyncExitStack() as stack:
            try:
                client = await stack.enter_async_context(self._client())
            except Exception as exc:
                return self._event(
                    WaitOutcome.ERROR, f"Emedgene case {self.case_name}: cannot connect: {exc}"
                )
            case_status: str | None = None
            custom = client.config.custom_statuses
            notice = lifecycle.UnrecognisedStatusNotice()  # warns once per run, not at every poll
            reported: str | None = None  # the status last logged at INFO
            while True:
                try:
                    case_status = await client.get_case_status(self.case_name)
                except EmedgeneUnavailableError as exc:
                    # Retries are spent but the deadline is not: an outage of the tenant should not
                    # fail a wait of days, so log and try again after the interval.
                    self.log.warning("Emedgene case %s: %s; still waiting", self.case_name, exc)
                except EmedgeneError as exc:
                    return self._event(WaitOutcome.ERROR, str(exc), case_status)
                else:
                    outcome = lifecycle.evaluate(
                        case_status, self.target_statuses, self.failure_statuses, custom
                    )
                    if outcome is WaitOutcome.SUCCESS:
                        return self._event(
                            outcome, f"Emedgene case {self.case_name} is {case_status!r}", case_status
                        )
                    if outcome is WaitOutcome.FAILED:
                        return self._event(
                            outcome,
                            f"Emedgene case {self.case_name} is in failure status {case_status!r}",
                            case_status,
                        )
                    # A status once at INFO, then at DEBUG: 5,000 waits logging every poll is a
                    # triggerer's CPU and its log store's space, for lines that say nothing new.
                    log_at = logging.INFO if case_status != reported else logging.DEBUG
                    self.log.log(log_at, "Emedgene case %s is %r; waiting", self.case_name, case_status)
                    reported = case_status
                    warning = notice.check(self.case_name, case_status, self.target_statuses, custom)
                    if warning:
                        self.log.warning("%s", warning)
                remaining = self.end_time - time.time()
                if remaining <= 0:
                    return self._event(
                        WaitOutcome.TIMEOUT,
                        f"Emedgene case {self.case_name}: timed out waiting for "
                        f"{' or '.join(self.target_statuses)}; last status {case_status!r}",
                        case_status,
                    )
                wait = self._schedule.next_wait(case_status, self.target_statuses, custom)
                await asyncio.sleep(min(wait, remaining))


#: Event ``status`` values of :class:`EmedgeneCreateReconcileTrigger` (a look-up, not a wait on a
#: case's status: its own two answers, and ``WaitOutcome.ERROR``'s value for a permanent error).
EVENT_FOUND = "found"
EVENT_ABSENT = "absent"
#: How long past its window a reconcile wait keeps trying through a tenant outage, at least.
OUTAGE_GRACE = 600.0


class EmedgeneCreateReconcileTrigger(BaseTrigger):
    """Wait out the reconcile window of an unclear create in the triggerer, not in a worker slot.

    Looks the idempotency key up with backoff (the same look-up and decisions as the sync client:
    :mod:`emedgene_provider.client.reconcile`) until a case answers it (event ``found``, with the
    case) or the key has stayed absent for the whole window (event ``absent``: the operator may
    POST again). A tenant outage is not absence: the window only passes on a look-up that
    succeeded after its end. Holds only primitives: the key, the connection id, times.

    :param idempotency_key: the key stamped into the case.
    :param emedgene_conn_id: the Emedgene connection.
    :param window_start: epoch seconds the window counts from (the unclear attempt).
    :param window: the window's length, in seconds.
    :param since: cases created before this (epoch seconds) are not looked at.
    :param assumed: the unclear attempt is a guess (no durable record): a failed case then answers it.
    :param failure_statuses: statuses (the lifecycle's when None) that make a found case a failed one.
    """

    def __init__(
        self,
        idempotency_key: str,
        emedgene_conn_id: str,
        window_start: float,
        window: float,
        since: float | None = None,
        assumed: bool = False,
        failure_statuses: list[str] | None = None,
    ) -> None:
        super().__init__()
        self.idempotency_key = idempotency_key
        self.emedgene_conn_id = emedgene_conn_id
        self.window_start = float(window_start)
        self.window = float(window)
        self.since = None if since is None else float(since)
        self.assumed = bool(assumed)
        self.failure_statuses = None if failure_statuses is None else list(failure_statuses)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "idempotency_key": self.idempotency_key,
                "emedgene_conn_id": self.emedgene_conn_id,
                "window_start": self.window_start,
                "window": self.window,
                "since": self.since,
                "assumed": self.assumed,
                "failure_statuses": self.failure_statuses,
            },
        )

    def _event(self, status: str, message: str, found: dict[str, Any] | None = None) -> TriggerEvent:
        return TriggerEvent(
            {
                "status": status,
                "idempotency_key": self.idempotency_key,
                "case_name": None if found is None else found.get("name"),
                "case_status": None if found is None else found.get("status"),
                "since": self.since,
                "message": message,
            }
        )

    def _client(self) -> AbstractAsyncContextManager[AsyncEmedgeneClient]:
        """The triggerer's shared client for the connection, through the hook."""
        return EmedgeneHook(self.emedgene_conn_id).async_client()

    async def run(self) -> AsyncIterator[TriggerEvent]:
        # One event, yielded once the wait has left its shared client: a runner that takes the
        # first event and drops the generator (``airflow dags test``) must not find it inside an
        # ``async with`` (Python then closes it at exit: "aclose(): asynchronous generator is
        # already running").
        yield await self._wait()

    async def _wait(self) -> TriggerEvent:
        key = self.idempotency_key
        record = CreateRecord(key, unclear_at=self.window_start, assumed=self.assumed)
        window = Window(self.window_start, self.window)
        checked: set[str] = set()  # cases read and found without the key: read once per window
        async with AsyncExitStack() as stack:
            try:
                client = await stack.enter_async_context(self._client())
            except Exception as exc:
                return self._event(
                    WaitOutcome.ERROR.value,
                    f"Emedgene create (idempotency key {key!r}): cannot connect: {exc}",
                )
            while True:
                try:
                    found = await client.newest_case_with_idempotency_key(
                        key, since=self.since, not_matching=checked
                    )
                except EmedgeneUnavailableError as exc:
                    if time.time() > window.end + max(window.length, OUTAGE_GRACE):
                        # Not absence (nothing proves the key is missing), and not for ever either:
                        # fail the try; a retry finds the record unclear and waits again.
                        return self._event(
                            WaitOutcome.ERROR.value,
                            f"Emedgene create (idempotency key {key!r}): the tenant stayed unavailable "
                            f"past the end of the {window.length:g} s reconcile window ({exc}); the case "
                            "was not created again",
                        )
                    self.log.warning("Emedgene look-up of idempotency key %r: %s; trying again", key, exc)
                    await client.sleep(min(LOOKUP_MAX_WAIT, max(LOOKUP_FIRST_WAIT, window.length / 20)))
                    continue
                except EmedgeneError as exc:
                    return self._event(WaitOutcome.ERROR.value, str(exc))
                decision = verdict(found, record, self.failure_statuses)
                now = time.time()
                self.log.info("Emedgene create: %s", describe_lookup(key, window, found, decision, now))
                if decision == ADOPT:
                    return self._event(
                        EVENT_FOUND,
                        f"Emedgene case {found and found['name']} has idempotency key {key!r}",
                        found,
                    )
                if decision == CREATE_ANEW:
                    return self._event(
                        EVENT_ABSENT,
                        f"Emedgene case {found and found['name']} from an earlier try (idempotency key "
                        f"{key!r}) is in failure status {found and found.get('status')!r}",
                        found,
                    )
                pause = window.next_wait(now)
                if pause is None:
                    return self._event(
                        EVENT_ABSENT,
                        f"No live Emedgene case with idempotency key {key!r} appeared within the "
                        f"{window.length:g} s reconcile window",
                        found,
                    )
                await client.sleep(pause)
