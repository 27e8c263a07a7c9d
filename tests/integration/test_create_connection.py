"""A create never rides a pooled connection that may be stale, and idempotent calls stay pooled
(issue 14); results are never written for a case name that is refused.

Staleness is the simulator's ``stale_keepalive`` quirk on its own clock, which the test moves: a
connection goes idle for as long as the test says, with no sleeping.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from airflow_fixtures import connect, creates, valid_case

from emedgene_provider.client.errors import EmedgeneInvalidCaseNameError
from emedgene_provider.hooks.emedgene import EmedgeneHook
from emedgene_provider.testing import EmedgeneSimulator, Quirks


class _SimClock:
    """The simulator's monotonic clock, moved forward on demand."""

    def __init__(self, sim: EmedgeneSimulator) -> None:
        self.ahead = 0.0
        sim.set_clock(lambda: time.monotonic() + self.ahead)

    def idle(self, seconds: float) -> None:
        self.ahead += seconds


def _hook(monkeypatch: pytest.MonkeyPatch, sim: EmedgeneSimulator) -> tuple[EmedgeneHook, list[float]]:
    """A hook on ``sim`` whose client records its waits (retry pauses, reconcile waits) instead of
    sleeping them."""
    connect(monkeypatch, sim)
    hook = EmedgeneHook()
    waits: list[float] = []
    hook.client.sleep = waits.append
    return hook, waits


def test_a_create_after_the_pooled_connection_went_stale_is_one_post_and_no_reconcile_wait(
    emedgene_simulator_factory: Callable[..., EmedgeneSimulator], monkeypatch: pytest.MonkeyPatch
) -> None:
    sim = emedgene_simulator_factory(quirks=Quirks(stale_keepalive=0.2))
    clock = _SimClock(sim)
    hook, waits = _hook(monkeypatch, sim)
    hook.client.list_storage_providers()  # logged in; one kept-alive connection in the pool
    clock.idle(1.0)  # the tenant now drops whatever arrives on it

    name, created = hook.create_case_once(valid_case(), "lab:sample-0001")

    assert created
    assert creates(sim) == 1 and sim.counters()["cases_created"] == 1
    assert waits == []  # no retry pause, no reconcile window
    assert sim.counters()["stale_drops"] == 0

    # The control: the pooled connection is stale indeed. A read sent on it is dropped, and
    # retried on a new one.
    assert name in {case["name"] for case in hook.client.iter_cases()}
    assert sim.counters()["stale_drops"] == 1
    assert len(waits) == 1


def test_idempotent_calls_share_one_connection_and_each_create_opens_its_own(
    emedgene_simulator: EmedgeneSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim = emedgene_simulator
    hook, _ = _hook(monkeypatch, sim)

    def opened() -> int:
        return int(sim.counters()["connections_opened"])

    hook.client.list_storage_providers()
    hook.client.list_storage_providers()
    assert opened() == 1  # the login and both reads on one connection
    name = hook.client.create_case(valid_case())
    assert opened() == 2
    hook.get_case_status(name)
    hook.validate_case(valid_case())  # a POST that may be repeated stays pooled
    assert opened() == 2
    hook.client.create_case(valid_case())
    assert opened() == 3
    assert sim.counters()["cases_created"] == 2


@pytest.mark.parametrize("method", ["export_case_to", "get_candidates_to"])
@pytest.mark.parametrize("case_name", ["../storage", "EMG1?x", "EMG1/x", ""])
def test_a_bad_case_name_is_refused_before_anything_is_made_on_disk(
    sim_conn: EmedgeneSimulator, tmp_path: Path, method: str, case_name: str
) -> None:
    target = tmp_path / "results" / "day-1" / "out.json"
    with pytest.raises(EmedgeneInvalidCaseNameError) as info:
        getattr(EmedgeneHook(), method)(case_name, str(target))
    assert repr(case_name) in str(info.value)
    assert list(tmp_path.iterdir()) == []
    assert sim_conn.counters()["requests"] == {}
