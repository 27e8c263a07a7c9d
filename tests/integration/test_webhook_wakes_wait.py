"""A deferred wait on a connection with a ``webhook_secret`` (Airflow 3): it polls the tenant
slowly, a hint on the board wakes it within a board round, and a hint is only ever a reason to
read the tenant: a stale or lying one changes no outcome.

The trigger runs for real against the simulator; the board (a Variable in a deployment,
tests/e2e/test_hints_on_the_db.py) is a dict here, read as the triggerer would read it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import airflow
import pytest
from airflow_fixtures import connect, status_gets, valid_case

from emedgene_provider import hints
from emedgene_provider.client import status as st
from emedgene_provider.hooks.emedgene import EmedgeneHook
from emedgene_provider.testing import EmedgeneSimulator
from emedgene_provider.triggers.emedgene import EmedgeneCaseStatusTrigger

pytestmark = pytest.mark.skipif(
    not airflow.__version__.startswith("3."), reason="webhook hints wake waits on Airflow 3"
)

CONN = "emedgene_default"


@pytest.fixture
def board(monkeypatch: pytest.MonkeyPatch) -> dict[str, float]:
    """The hint board, read every 0.05 s; each read counted in ``board["__reads__"]``."""
    state: dict[str, float] = {"__reads__": 0}

    async def read(conn_id: str) -> str:
        state["__reads__"] += 1
        return hints.board_value({k: v for k, v in state.items() if k != "__reads__"})

    monkeypatch.setattr(hints, "read_board", read)
    monkeypatch.setattr(hints, "BOARD_READ_SECONDS", 0.05)
    return state


def _connect(monkeypatch: pytest.MonkeyPatch, sim: EmedgeneSimulator, **extra: Any) -> None:
    conn = sim.connection_json()
    conn["extra"].update(extra)
    connect(monkeypatch, sim, conn)


def _in_progress_case(sim: EmedgeneSimulator) -> str:
    name = EmedgeneHook(CONN).get_conn().create_case(valid_case())
    sim.set_status(name, st.IN_PROGRESS)
    sim.reset_counters()
    return name


def _hint(board: dict[str, float], name: str, at: float) -> None:
    board[hints.case_key(CONN, name)] = at


async def _until(condition: Any, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def _trigger(name: str, timeout: float) -> EmedgeneCaseStatusTrigger:
    return EmedgeneCaseStatusTrigger(
        case_name=name,
        emedgene_conn_id=CONN,
        target_statuses=[st.DELIVERED],
        failure_statuses=None,
        poll_interval=0.1,
        end_time=time.time() + timeout,
    )


async def _first_event(trigger: EmedgeneCaseStatusTrigger) -> dict[str, Any]:
    async for event in trigger.run():
        return dict(event.payload)
    raise AssertionError("no event")


async def test_a_hint_wakes_a_wait_that_polls_hourly(
    emedgene_simulator: EmedgeneSimulator, monkeypatch: pytest.MonkeyPatch, board: dict[str, float]
) -> None:
    sim = emedgene_simulator
    _connect(monkeypatch, sim, webhook_secret="whsec", webhook_poll_interval=3600)
    name = _in_progress_case(sim)
    wait = asyncio.create_task(_first_event(_trigger(name, timeout=3600)))
    await _until(lambda: status_gets(sim) == 1 and board["__reads__"] >= 2)
    sim.set_status(name, st.DELIVERED)
    _hint(board, name, time.time())
    event = await asyncio.wait_for(wait, 30)  # a hang guard: without the hint it sleeps an hour
    assert (event["status"], event["case_status"]) == ("success", st.DELIVERED)
    assert status_gets(sim) == 2  # the first read, and the one the hint asked for


async def test_stale_and_lying_hints_change_no_outcome(
    emedgene_simulator: EmedgeneSimulator, monkeypatch: pytest.MonkeyPatch, board: dict[str, float]
) -> None:
    sim = emedgene_simulator
    _connect(monkeypatch, sim, webhook_secret="whsec", webhook_poll_interval=3600)
    name = _in_progress_case(sim)
    _hint(board, name, time.time() - 600)  # stale: from before the wait's read
    wait = asyncio.create_task(_first_event(_trigger(name, timeout=3)))
    await _until(lambda: status_gets(sim) == 1 and board["__reads__"] >= 5)
    assert status_gets(sim) == 1  # the stale hint woke nobody
    _hint(board, name, time.time() + 30)  # a lying hint: the case is still in progress
    await _until(lambda: status_gets(sim) >= 2)
    event = await asyncio.wait_for(wait, 30)
    assert (event["status"], event["case_status"]) == ("timeout", st.IN_PROGRESS)
    # one read at the start, one for the lying hint (once: a future date does not wake it again
    # at every board round), one at the deadline
    assert status_gets(sim) == 3


async def test_without_a_webhook_secret_the_board_is_never_read(
    emedgene_simulator: EmedgeneSimulator, monkeypatch: pytest.MonkeyPatch, board: dict[str, float]
) -> None:
    sim = emedgene_simulator
    _connect(monkeypatch, sim)
    name = _in_progress_case(sim)
    _hint(board, name, time.time() + 30)
    event = await _first_event(_trigger(name, timeout=0.5))
    assert event["status"] == "timeout"
    assert board["__reads__"] == 0
    assert status_gets(sim) >= 2  # it polled the tenant at its own pace
