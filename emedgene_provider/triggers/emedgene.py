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

from airflow.providers.common.compat.version_compat import AIRFLOW_V_3_0_PLUS
from airflow.triggers.base import BaseTrigger, TriggerEvent

from emedgene_provider.client import status as lifecycle
from emedgene_provider.client.create import (
    Absent,
    Answer,
    CreateOnce,
    CreateRecord,
    Done,
    Found,
    LookUp,
    Post,
    Sleep,
    Unclear,
    failure_rule,
)
from emedgene_provider.client.errors import EmedgeneError, EmedgeneNotFoundError, EmedgeneUnavailableError
from emedgene_provider.client.events import ReconcileOutcome, reconcile_event, status_event
from emedgene_provider.client.polling import PollSchedule
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
        ``max(poll_interval, min(8 * poll_interval, 3600))``.
    :param not_found_until: until then (epoch seconds), a 404 for the case is the tenant not having
        caught up with its create (a replica behind the write), and the wait goes on; after it, a
        404 ends the wait as an error. The create operator sets it to a reconcile window after its
        create answered.
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
        not_found_until: float | None = None,
    ) -> None:
        super().__init__()
        self.case_name = case_name
        self.emedgene_conn_id = emedgene_conn_id
        self.target_statuses = list(target_statuses)
        self.failure_statuses = None if failure_statuses is None else list(failure_statuses)
        self.poll_interval = float(poll_interval)
        self.end_time = float(end_time)
        self.max_poll_interval = None if max_poll_interval is None else float(max_poll_interval)
        self.not_found_until = None if not_found_until is None else float(not_found_until)
        # Refuses a bad interval here, when the task defers, not at the first sleep in the triggerer.
        self._schedule = PollSchedule(self.poll_interval, self.max_poll_interval)
        self._last_hint = float("-inf")  # the newest webhook hint that woke this wait

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
                "not_found_until": self.not_found_until,
            },
        )

    def _event(self, outcome: WaitOutcome, message: str, case_status: str | None = None) -> TriggerEvent:
        return TriggerEvent(status_event(outcome, self.case_name, message, case_status))

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
                read_at = time.time()
                try:
                    case_status = await client.get_case_status(self.case_name)
                except EmedgeneUnavailableError as exc:
                    # Retries are spent but the deadline is not: an outage of the tenant should not
                    # fail a wait of days, so log and try again after the interval.
                    self.log.warning("Emedgene case %s: %s; still waiting", self.case_name, exc)
                except EmedgeneNotFoundError as exc:
                    if not lifecycle.not_visible_yet(self.not_found_until, time.time()):
                        return self._event(WaitOutcome.ERROR, str(exc), case_status)
                    self.log.info("Emedgene case %s: not visible yet (404); still waiting", self.case_name)
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
                if client.config.webhooks and AIRFLOW_V_3_0_PLUS:  # a slow poll, and the hints
                    slow = max(wait, self._schedule.spread(client.config.webhook_poll_interval))
                    await self._until_hint(read_at, min(slow, remaining))
                else:
                    await asyncio.sleep(min(wait, remaining))

    async def _until_hint(self, read_at: float, seconds: float) -> None:
        """Sleep ``seconds``, or less if a webhook hints at this case after ``read_at`` (the
        connection has a ``webhook_secret``): the next poll then reads the tenant, which alone
        says what the status is."""
        from emedgene_provider.client.process import PROCESS
        from emedgene_provider.hints import CLOCK_ALLOWANCE, BoardWatcher

        watchers = PROCESS.hint_watchers.current()
        watcher = watchers.get(self.emedgene_conn_id)
        if watcher is None:
            watcher = watchers[self.emedgene_conn_id] = BoardWatcher(self.emedgene_conn_id)
        # A hint a little older than the read still counts (the api-server's clock may differ);
        # one that already woke this wait does not again, however far in the future it is dated.
        since = max(read_at - CLOCK_ALLOWANCE, self._last_hint)
        hinted = await watcher.wait(self.case_name, since, seconds)
        if hinted is not None:
            self._last_hint = hinted
            self.log.info("Emedgene case %s: a webhook hints at a change; reading it now", self.case_name)


class EmedgeneCreateReconcileTrigger(BaseTrigger):
    """Wait out the reconcile window of an unclear create in the triggerer, not in a worker slot.

    Drives the same :class:`~emedgene_provider.client.create.CreateOnce` as the blocking create,
    with ``await``, through its look-ups and sleeps, and stops where it would POST (the task does
    that): event ``found`` with the case when one answers the key, ``absent`` when the key stayed
    absent for the whole window (or its earlier case failed), ``error`` for a permanent error or
    an outage that outlasted the window (:class:`~emedgene_provider.client.events.ReconcileEvent`).
    Holds only primitives: the key, the connection id, times.

    :param idempotency_key: the key stamped into the case.
    :param emedgene_conn_id: the Emedgene connection.
    :param window_start: epoch seconds the window counts from (the unclear attempt).
    :param window: the window's length, in seconds.
    :param since: cases provably created before this (epoch seconds) are not looked at.
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

    def _event(
        self, outcome: ReconcileOutcome, message: str, case: dict[str, Any] | None = None
    ) -> TriggerEvent:
        return TriggerEvent(
            reconcile_event(
                outcome,
                self.idempotency_key,
                message,
                since=self.since,
                case_name=None if case is None else case.get("name"),
                case_status=None if case is None else case.get("status"),
            )
        )

    def _client(self) -> AbstractAsyncContextManager[AsyncEmedgeneClient]:
        """The triggerer's shared client for the connection, through the hook."""
        return EmedgeneHook(self.emedgene_conn_id).async_client()

    async def run(self) -> AsyncIterator[TriggerEvent]:
        yield await self._wait()  # once out of the shared client (see EmedgeneCaseStatusTrigger.run)

    async def _wait(self) -> TriggerEvent:
        key = self.idempotency_key
        machine = CreateOnce(
            key,
            CreateRecord(key, unclear_at=self.window_start, assumed=self.assumed),
            window=self.window,
            since=self.since,
            failed=failure_rule(self.failure_statuses),
        )
        found: dict[str, Any] | None = None
        async with AsyncExitStack() as stack:
            try:
                client = await stack.enter_async_context(self._client())
            except Exception as exc:
                return self._event(
                    ReconcileOutcome.ERROR,
                    f"Emedgene create (idempotency key {key!r}): cannot connect: {exc}",
                )
            answer: Answer = None
            try:
                step = machine.next_step(time.time())
                while True:
                    for level, note in machine.take_notes():
                        self.log.log(level, "Emedgene create: %s", note)
                    if isinstance(step, Done):
                        return self._event(
                            ReconcileOutcome.FOUND,
                            f"Emedgene case {step.case_name} has idempotency key {key!r}",
                            found or {"name": step.case_name},
                        )
                    if isinstance(step, Post):  # the window passed: the task sends the create
                        message = (
                            f"No live Emedgene case with idempotency key {key!r} appeared within the "
                            f"{self.window:g} s reconcile window"
                            if found is None
                            else f"Emedgene case {found['name']} from an earlier try (idempotency key "
                            f"{key!r}) is in failure status {found.get('status')!r}"
                        )
                        return self._event(ReconcileOutcome.ABSENT, message, found)
                    if isinstance(step, LookUp):
                        try:
                            found = await client.newest_case_with_idempotency_key(
                                key, since=step.since, not_matching=step.not_matching
                            )
                            answer = Absent() if found is None else Found(found)
                        except EmedgeneUnavailableError as exc:  # an outage, a moving list: not absence
                            answer = Unclear(exc)
                    elif isinstance(step, Sleep):
                        await client.sleep(step.seconds)
                        answer = None
                    else:
                        raise TypeError(f"the reconcile trigger cannot perform {step!r}")
                    machine.take(answer, time.time())
                    step = machine.next_step(time.time())
            except EmedgeneError as exc:
                return self._event(ReconcileOutcome.ERROR, str(exc))
