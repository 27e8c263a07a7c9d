"""EmedgeneCaseEventTrigger: case status changes as asset events, for tenants that send no webhooks.

Used in an ``AssetWatcher`` on the tenant's Asset (Airflow 3)::

    Asset("emedgene://lab.emedgene.com", watchers=[AssetWatcher(
        name="lab_cases", trigger=EmedgeneCaseEventTrigger(emedgene_conn_id="emedgene_lab"))])

Each round lists the tenant's cases once (``GET /api/test``, paged; each case once per round,
whatever the paging does) and fires one event per case whose status differs from the last round:
transitions only, so a Finalized case does not fire for ever. The first round with no cursor
records where every case stands and fires nothing. The cursor (a hash of each case's name and its
status) is kept in the asset's state on Airflow 3.3, so a restarted triggerer fires what changed
while it was down; before 3.3 it lives in the triggerer's memory and a restart starts anew.

On Airflow 3.3 every watcher with the same connection and interval shares one listing
(``shared_stream_key``); each keeps its own cursor. The event's payload is
:func:`emedgene_provider.case_events.case_event` with ``source: "poll"``: Airflow records it under
the asset event's ``extra["payload"]``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Hashable
from typing import Any

from airflow.triggers.base import TriggerEvent

try:
    from airflow.triggers.base import BaseEventTrigger
except ImportError:  # Airflow 2: the module imports (the provider info lists it), the class refuses
    from airflow.triggers.base import BaseTrigger as BaseEventTrigger  # type: ignore[assignment]

from emedgene_provider.case_events import case_event, changed
from emedgene_provider.client.errors import EmedgeneError, EmedgeneListInconsistentError
from emedgene_provider.hints import case_key
from emedgene_provider.hooks.emedgene import EmedgeneHook

log = logging.getLogger(__name__)

#: The asset state key of the cursor (Airflow 3.3).
CURSOR_KEY = "emedgene_case_statuses"

#: One round: case name -> status as listed, and whether the listing was complete.
Round = tuple[dict[str, str], bool]


async def list_round(conn_id: str, page_size: int) -> Round:
    """The tenant's cases, each once; a listing the tenant moved under is kept, marked partial."""
    statuses: dict[str, str] = {}
    complete = True
    async with EmedgeneHook(conn_id).async_client() as client:
        try:
            async for hit in client.iter_cases(page_size):
                name, status = hit.get("name"), hit.get("status")
                if isinstance(name, str) and isinstance(status, str):
                    statuses.setdefault(name, status)
        except EmedgeneListInconsistentError as exc:
            log.warning("Emedgene case list of %s moved while read: %s", conn_id, exc)
            complete = False
    return statuses, complete


class EmedgeneCaseEventTrigger(BaseEventTrigger):
    """Fires one event per case status change on a tenant (see the module docstring).

    :param emedgene_conn_id: the Emedgene connection.
    :param poll_interval: seconds between two listings.
    :param page_size: cases per page of the listing.
    """

    def __init__(
        self, emedgene_conn_id: str = "emedgene_default", poll_interval: float = 300.0, page_size: int = 100
    ) -> None:
        super().__init__()
        if BaseEventTrigger.__name__ != "BaseEventTrigger":  # Airflow 2
            raise RuntimeError("EmedgeneCaseEventTrigger needs Airflow 3 (AssetWatcher, BaseEventTrigger)")
        if poll_interval <= 0 or page_size < 1:
            raise ValueError("poll_interval must be positive and page_size at least 1")
        self.emedgene_conn_id = emedgene_conn_id
        self.poll_interval = float(poll_interval)
        self.page_size = int(page_size)
        self._cursor: dict[str, str] | None = None
        self._loaded = False

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "emedgene_conn_id": self.emedgene_conn_id,
                "poll_interval": self.poll_interval,
                "page_size": self.page_size,
            },
        )

    # -- Airflow 3.3: one listing for every watcher of a tenant --------------------------------

    def shared_stream_key(self) -> Hashable | None:
        return ("emedgene-cases", self.emedgene_conn_id, self.poll_interval, self.page_size)

    @classmethod
    async def open_shared_stream(cls, kwargs: dict[str, Any]) -> AsyncIterator[Any]:
        rounds = cls._rounds(kwargs["emedgene_conn_id"], kwargs["poll_interval"], kwargs["page_size"])
        async for listed in rounds:
            yield listed

    async def filter_shared_stream(self, shared_stream: AsyncIterator[Any]) -> AsyncIterator[TriggerEvent]:
        async for listed in shared_stream:
            for event in await self.transitions(listed):
                yield event

    # -- every Airflow 3 -------------------------------------------------------------------------

    async def run(self) -> AsyncIterator[TriggerEvent]:
        async for listed in self._rounds(self.emedgene_conn_id, self.poll_interval, self.page_size):
            for event in await self.transitions(listed):
                yield event

    @staticmethod
    async def _rounds(conn_id: str, poll_interval: float, page_size: int) -> AsyncIterator[Round]:
        """A round every ``poll_interval``, for ever; a failed one is logged and tried next time."""
        while True:
            try:
                yield await list_round(conn_id, page_size)
            except EmedgeneError as exc:
                log.warning("Emedgene case list of %s unreadable (next round soon): %s", conn_id, exc)
            await asyncio.sleep(poll_interval)

    async def transitions(self, listed: Round) -> list[TriggerEvent]:
        """The events of one round against the cursor, which then moves to the round."""
        statuses, complete = listed
        cursor = await self._load_cursor()
        conn_id = self.emedgene_conn_id
        events = []
        now = {case_key(conn_id, name): (name, status) for name, status in statuses.items()}
        if cursor is not None:
            for key, (name, status) in now.items():
                previous = cursor.get(key)
                if changed(previous, status):  # a case new since the last round counts too
                    events.append(TriggerEvent(case_event(conn_id, name, status, previous, "poll")))
        moved = {key: status for key, (_, status) in now.items()}
        await self._save_cursor(moved if complete or cursor is None else {**cursor, **moved})
        return events

    async def _load_cursor(self) -> dict[str, str] | None:
        if self._loaded:
            return self._cursor
        self._loaded = True
        store = self._state()
        if store is not None:
            try:
                stored = await store.aget(CURSOR_KEY, None)
            except Exception as exc:  # the watcher goes on from memory
                log.warning("Emedgene case cursor of %s unreadable: %s", self.emedgene_conn_id, exc)
                stored = None
            if isinstance(stored, dict):
                self._cursor = {str(k): str(v) for k, v in stored.items()}
        return self._cursor

    async def _save_cursor(self, cursor: dict[str, str]) -> None:
        self._cursor = cursor
        store = self._state()
        if store is not None:
            try:
                await store.aset(CURSOR_KEY, cursor)
            except Exception as exc:
                log.warning("Emedgene case cursor of %s not saved: %s", self.emedgene_conn_id, exc)

    def _state(self) -> Any:
        """The watched asset's state (Airflow 3.3 injects it; one asset per watcher), or None."""
        return getattr(self, "asset_state_store", None)
