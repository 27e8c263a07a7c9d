"""The hint board: where the webhook receiver (api-server) tells deferred waits (triggerers) that
a case may have changed, through the one component every process of a deployment shares, the
metadata DB (an Airflow Variable per connection).

A hint is never a status: a wait that sees one reads the case from the tenant at once, and a
forged, stale, repeated or reordered hint costs one extra read at most. Cases are stored under a
hash of (connection, case name), not by name, and the board keeps the newest
:data:`MAX_HINTS` of the last :data:`HINT_SECONDS`, so it stays a few tens of KB.

Two receivers writing at once may each overwrite the other's hint (a Variable is read, changed
and written back); the wait's slow fallback poll covers a lost one, as it covers a lost webhook.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Iterable
from typing import Any

log = logging.getLogger(__name__)

#: Prefix of the Variables; one per connection id.
VARIABLE_PREFIX = "emedgene_hints."
MAX_HINTS = 2000
HINT_SECONDS = 24 * 3600.0


def variable_key(conn_id: str) -> str:
    return VARIABLE_PREFIX + conn_id


def case_key(conn_id: str, case_name: str) -> str:
    """The board's name for a case: no case name in the metadata DB or the UI's variable list."""
    return hashlib.sha256(f"{conn_id}\n{case_name}".encode()).hexdigest()[:24]


def stored_mapping(raw: Any, field: str) -> dict[str, Any]:
    """``field`` of a JSON object stored in a Variable, when it is an object; else {} (a damaged or
    hand-edited Variable is read as empty, never as an error)."""
    try:
        data = json.loads(raw) if isinstance(raw, str) else raw
    except (ValueError, TypeError):
        return {}
    found = data.get(field) if isinstance(data, dict) else None
    return found if isinstance(found, dict) else {}


def parse_board(raw: Any) -> dict[str, float]:
    """The board's hints (case key -> epoch seconds) from a Variable's value; {} for anything else,
    so a hand-edited or damaged Variable wakes nobody and breaks nothing."""
    hints = stored_mapping(raw, "hints")
    return {
        str(k): float(v) for k, v in hints.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
    }


def with_hints(board: dict[str, float], keys: Iterable[str], now: float) -> dict[str, float]:
    """``board`` plus ``keys`` hinted at ``now``, without the expired, at most :data:`MAX_HINTS`."""
    merged = {k: t for k, t in board.items() if now - t < HINT_SECONDS}
    for key in keys:
        merged[key] = now
    if len(merged) > MAX_HINTS:
        merged = dict(sorted(merged.items(), key=lambda item: item[1])[-MAX_HINTS:])
    return merged


def board_value(board: dict[str, float]) -> str:
    return json.dumps({"v": 1, "hints": board}, separators=(",", ":"))


def record_hints(conn_id: str, case_names: Iterable[str], now: float) -> int:
    """Write hints for ``case_names`` to the metadata DB (api-server side); returns how many."""
    from airflow.models.variable import Variable

    keys = [case_key(conn_id, name) for name in case_names]
    if not keys:
        return 0
    key = variable_key(conn_id)
    board = with_hints(parse_board(Variable.get(key, default_var=None)), keys, now)
    Variable.set(key, board_value(board), description="Emedgene webhook hints (case hashes, times)")
    return len(keys)


#: Seconds between two reads of a connection's board by a triggerer (one read serves every wait).
BOARD_READ_SECONDS = 5.0
#: A hint this much older than a wait's last read still wakes it: the receiver's and the
#: triggerer's clocks may differ, and an extra read is cheaper than a missed hint.
CLOCK_ALLOWANCE = 10.0


async def read_board(conn_id: str) -> Any:
    """The board's raw value, read through the Task SDK in a worker thread (a synchronous call
    to the triggerer's supervisor from the event loop itself could deadlock)."""
    from airflow.sdk import Variable

    return await asyncio.to_thread(Variable.get, variable_key(conn_id), None)


class BoardWatcher:
    """One connection's board, read every :data:`BOARD_READ_SECONDS` while any wait listens, on
    the running loop: 5,000 waits cost one Variable read per 5 s, not 5,000.

    :meth:`wait` sleeps until ``seconds`` pass or a hint for the case newer than ``since`` shows
    up; it returns that hint's time, or None. A failed read is logged and tried again next round:
    the waits' slow poll goes on regardless.
    """

    def __init__(self, conn_id: str, read: Any = None, period: float | None = None) -> None:
        self.conn_id = conn_id
        self._read = read or read_board
        self._period = BOARD_READ_SECONDS if period is None else period
        self._listeners: dict[str, list[tuple[float, asyncio.Event]]] = {}
        self._task: asyncio.Task[None] | None = None
        self._hinted: dict[str, float] = {}  # the last hint time seen per case key
        self.reads = 0

    async def wait(self, case_name: str, since: float, seconds: float) -> float | None:
        key = case_key(self.conn_id, case_name)
        event = asyncio.Event()
        entry = (since, event)
        self._listeners.setdefault(key, []).append(entry)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._watch())
        try:
            await asyncio.wait_for(event.wait(), timeout=max(0.0, seconds))
            return self._hinted.get(key)
        except asyncio.TimeoutError:
            return None
        finally:
            entries = self._listeners.get(key, [])
            if entry in entries:
                entries.remove(entry)
            if not entries:  # nobody waits on the case here any more: forget it
                self._listeners.pop(key, None)
                self._hinted.pop(key, None)

    async def _watch(self) -> None:
        while self._listeners:
            try:
                board = parse_board(await self._read(self.conn_id))
                self.reads += 1
            except Exception as exc:  # the slow poll still ends every wait
                log.warning("Emedgene webhook hints of %s unreadable: %s", self.conn_id, exc)
                board = {}
            for key, entries in list(self._listeners.items()):
                hinted = board.get(key)
                if hinted is None:
                    continue
                self._hinted[key] = hinted
                for since, event in entries:
                    if hinted > since:
                        event.set()
            await asyncio.sleep(self._period)
