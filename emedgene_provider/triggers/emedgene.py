"""EmedgeneCaseStatusTrigger: waits on a case's status inside Airflow's triggerer.

A wait of days costs no worker slot. The trigger holds only primitives (conn id, case name,
statuses, interval, an absolute deadline): never a token or credential. It reads the connection
through Airflow's async path (no sync DB access in the triggerer), shares the process's token
cache (a triggerer's many waits make one login, renewed inside waits of any length), and yields
exactly one event.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.providers.common.compat.sdk import mask_secret
from airflow.triggers.base import BaseTrigger, TriggerEvent

from emedgene_provider.client import status as lifecycle
from emedgene_provider.client.aio import AsyncEmedgeneClient
from emedgene_provider.client.config import config_from_conn
from emedgene_provider.client.errors import EmedgeneError, EmedgeneUnavailableError

#: Event ``status`` values; operators and the sensor resume on these.
EVENT_SUCCESS = "success"
EVENT_FAILED = "failed"
EVENT_TIMEOUT = "timeout"
EVENT_ERROR = "error"


class EmedgeneCaseStatusTrigger(BaseTrigger):
    """Poll a case until a target status, a failure status, the deadline, or a permanent error.

    :param case_name: the case (``EMG`` + 9 digits).
    :param emedgene_conn_id: the Emedgene connection.
    :param target_statuses: statuses that end the wait successfully (or any later in the lifecycle).
    :param failure_statuses: statuses that end it as failed; None for the lifecycle's failures.
    :param poll_interval: seconds between polls.
    :param end_time: absolute deadline (epoch seconds), so a resumed trigger keeps the task's timeout.
    """

    def __init__(
        self,
        case_name: str,
        emedgene_conn_id: str,
        target_statuses: list[str],
        failure_statuses: list[str] | None,
        poll_interval: float,
        end_time: float,
    ) -> None:
        super().__init__()
        self.case_name = case_name
        self.emedgene_conn_id = emedgene_conn_id
        self.target_statuses = list(target_statuses)
        self.failure_statuses = None if failure_statuses is None else list(failure_statuses)
        self.poll_interval = float(poll_interval)
        self.end_time = float(end_time)

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
            },
        )

    def _event(self, status: str, message: str, case_status: str | None = None) -> TriggerEvent:
        return TriggerEvent(
            {"status": status, "case_name": self.case_name, "case_status": case_status, "message": message}
        )

    async def _client(self) -> AsyncEmedgeneClient:
        from airflow.providers.common.compat.connection import get_async_connection

        conn = await get_async_connection(self.emedgene_conn_id)
        config = config_from_conn(conn, on_secret=mask_secret)
        return AsyncEmedgeneClient(config)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        try:
            client = await self._client()
        except Exception as exc:
            yield self._event(EVENT_ERROR, f"Emedgene case {self.case_name}: cannot connect: {exc}")
            return
        async with client:
            case_status: str | None = None
            while True:
                try:
                    case_status = await client.get_case_status(self.case_name)
                except EmedgeneUnavailableError as exc:
                    # Retries are spent but the deadline is not: an outage of the tenant should not
                    # fail a wait of days, so log and try again after the interval.
                    self.log.warning("Emedgene case %s: %s; still waiting", self.case_name, exc)
                except EmedgeneError as exc:
                    yield self._event(EVENT_ERROR, str(exc), case_status)
                    return
                else:
                    outcome = lifecycle.evaluate(case_status, self.target_statuses, self.failure_statuses)
                    if outcome == lifecycle.SUCCESS:
                        yield self._event(
                            EVENT_SUCCESS, f"Emedgene case {self.case_name} is {case_status!r}", case_status
                        )
                        return
                    if outcome == lifecycle.FAILED:
                        yield self._event(
                            EVENT_FAILED,
                            f"Emedgene case {self.case_name} is in failure status {case_status!r}",
                            case_status,
                        )
                        return
                    self.log.info("Emedgene case %s is %r; waiting", self.case_name, case_status)
                remaining = self.end_time - time.time()
                if remaining <= 0:
                    yield self._event(
                        EVENT_TIMEOUT,
                        f"Emedgene case {self.case_name}: timed out waiting for "
                        f"{' or '.join(self.target_statuses)}; last status {case_status!r}",
                        case_status,
                    )
                    return
                await asyncio.sleep(min(self.poll_interval, remaining))
