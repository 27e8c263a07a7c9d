"""EmedgeneCaseEventTrigger (an AssetWatcher's trigger) against the simulator over HTTP: one
listing per round, each case once, events on transitions only, the cursor kept in the asset's
state so a restarted watcher fires what changed while it was down, and nothing fired for ever."""

from __future__ import annotations

import asyncio
from typing import Any

import airflow
import pytest
from airflow_fixtures import connect, status_gets, valid_case

from emedgene_provider.client import status as st
from emedgene_provider.hooks.emedgene import EmedgeneHook
from emedgene_provider.testing import EmedgeneSimulator

pytestmark = pytest.mark.skipif(
    not airflow.__version__.startswith("3."), reason="AssetWatcher is Airflow 3's"
)

CONN = "emedgene_default"


class FakeAssetState:
    """What Airflow 3.3 injects as ``asset_state_store`` (one watched asset): aget/aset of JSON."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.writes = 0

    async def aget(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    async def aset(self, key: str, value: Any) -> None:
        self.values[key] = value
        self.writes += 1


def _trigger(state: FakeAssetState | None = None) -> Any:
    from emedgene_provider.triggers.case_events import EmedgeneCaseEventTrigger

    trigger = EmedgeneCaseEventTrigger(emedgene_conn_id=CONN, poll_interval=0.01, page_size=2)
    trigger.asset_state_store = state
    return trigger


async def _round(trigger: Any) -> list[dict[str, Any]]:
    from emedgene_provider.triggers.case_events import list_round

    events = await trigger.transitions(await list_round(CONN, trigger.page_size))
    return [event.payload for event in events]


def _cases(sim: EmedgeneSimulator, *statuses: str) -> list[str]:
    client = EmedgeneHook(CONN).get_conn()
    names = []
    for status in statuses:
        name = client.create_case(valid_case())
        sim.set_status(name, status)
        names.append(name)
    return names


def _lists(sim: EmedgeneSimulator) -> int:
    return int(sim.counters()["requests"].get("GET /api/test", 0))


def test_transitions_only_and_never_for_ever(sim_conn: EmedgeneSimulator) -> None:
    a, b, c = _cases(sim_conn, st.IN_PROGRESS, st.IN_PROGRESS, st.FINALIZED)
    trigger, state = _trigger(), FakeAssetState()
    trigger.asset_state_store = state
    sim_conn.reset_counters()
    assert asyncio.run(_round(trigger)) == []  # the first round records where cases stand
    assert (_lists(sim_conn), status_gets(sim_conn)) == (2, 0)  # 3 cases, 2 a page: no case read
    sim_conn.set_status(a, st.DELIVERED)
    events = asyncio.run(_round(trigger))
    assert [(e["case_name"], e["previous_status"], e["status"], e["delivered"]) for e in events] == [
        (a, st.IN_PROGRESS, st.DELIVERED, True)
    ]
    assert {e["source"] for e in events} == {"poll"}
    assert asyncio.run(_round(trigger)) == []  # Delivered and Finalized stay quiet
    assert asyncio.run(_round(trigger)) == []
    (d,) = _cases(sim_conn, st.IN_PROGRESS)
    sim_conn.set_status(b, st.ISSUE_REPORTED)
    events = asyncio.run(_round(trigger))
    assert sorted((e["case_name"], e["previous_status"], e["status"]) for e in events) == sorted(
        [(b, st.IN_PROGRESS, st.ISSUE_REPORTED), (d, None, st.IN_PROGRESS)]
    )
    assert all(not e["delivered"] for e in events)
    assert c not in str(state.values)  # the cursor holds hashes, not case names


def test_the_cursor_in_asset_state_outlives_the_watcher(sim_conn: EmedgeneSimulator) -> None:
    a, _ = _cases(sim_conn, st.IN_PROGRESS, st.IN_PROGRESS)
    state = FakeAssetState()
    assert asyncio.run(_round(_trigger(state))) == []
    sim_conn.set_status(a, st.DELIVERED)  # while no watcher runs (a triggerer restart)
    events = asyncio.run(_round(_trigger(state)))  # a new trigger object, the same asset state
    assert [(e["case_name"], e["status"]) for e in events] == [(a, st.DELIVERED)]
    # without asset state (Airflow before 3.3) a new watcher starts anew and fires nothing
    sim_conn.set_status(a, st.FINALIZED)
    assert asyncio.run(_round(_trigger(None))) == []


def test_each_case_once_a_round_while_the_list_grows_under_the_reader(sim_conn: EmedgeneSimulator) -> None:
    names = _cases(sim_conn, *[st.IN_PROGRESS] * 5)
    trigger = _trigger(FakeAssetState())
    assert asyncio.run(_round(trigger)) == []
    sim_conn.set_quirks(list_order="newest_first", list_churn="insert")  # pages shift down as read
    for name in names:
        sim_conn.set_status(name, st.DELIVERED)
    events = asyncio.run(_round(trigger))
    delivered = [e["case_name"] for e in events if e["status"] == st.DELIVERED]
    assert sorted(delivered) == sorted(names)  # each once, though the list moved under the pages
    assert len(events) == len({e["case_name"] for e in events})


def test_a_failed_round_is_logged_and_the_next_one_goes_on(
    sim_conn: EmedgeneSimulator, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    (a,) = _cases(sim_conn, st.IN_PROGRESS)
    conn = sim_conn.connection_json()
    conn["extra"]["max_retries"] = 0
    connect(monkeypatch, sim_conn, conn)
    trigger = _trigger(FakeAssetState())
    sim_conn.reset_counters()
    sim_conn.inject("503", times=1, method="GET", path="/api/test")  # round one fails

    async def first_event() -> dict[str, Any]:
        runner = trigger.run()
        pending = asyncio.ensure_future(runner.__anext__())
        while _lists(sim_conn) < 3:  # the failed round, then the baseline round, then one more
            await asyncio.sleep(0.01)
        sim_conn.set_status(a, st.DELIVERED)
        try:
            return (await asyncio.wait_for(pending, 30)).payload
        finally:
            await runner.aclose()

    event = asyncio.run(first_event())
    assert (event["case_name"], event["status"]) == (a, st.DELIVERED)
    assert "unreadable" in caplog.text and "503" in caplog.text


def test_watchers_of_one_tenant_share_a_stream_key_and_serialize_to_primitives() -> None:
    from emedgene_provider.triggers.case_events import EmedgeneCaseEventTrigger

    one = EmedgeneCaseEventTrigger("emedgene_lab", poll_interval=60)
    two = EmedgeneCaseEventTrigger("emedgene_lab", poll_interval=60)
    other = EmedgeneCaseEventTrigger("emedgene_other", poll_interval=60)
    assert one.shared_stream_key() == two.shared_stream_key() != other.shared_stream_key()
    path, kwargs = one.serialize()
    assert path == "emedgene_provider.triggers.case_events.EmedgeneCaseEventTrigger"
    assert kwargs == {"emedgene_conn_id": "emedgene_lab", "poll_interval": 60.0, "page_size": 100}
    with pytest.raises(ValueError, match="poll_interval"):
        EmedgeneCaseEventTrigger("emedgene_lab", poll_interval=0)
