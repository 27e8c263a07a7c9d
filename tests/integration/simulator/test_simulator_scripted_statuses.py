"""The simulator's read-driven statuses (``extra_data.simulator_statuses``), over real HTTP.

Tests of waits in other processes (``airflow dags test``) use it to change a case between two
given polls without racing a timer, so it must move exactly one status per read of the case.
"""

from __future__ import annotations

import pytest
from airflow_fixtures import connect, status_gets, valid_case

from emedgene_provider.client.errors import EmedgeneInvalidRequestError
from emedgene_provider.hooks.emedgene import EmedgeneHook


@pytest.fixture
def slow_sim(emedgene_simulator_factory, monkeypatch):
    """Stages of ten minutes: time never moves a case within a test."""
    sim = emedgene_simulator_factory(stage_seconds=600)
    connect(monkeypatch, sim)
    return sim


def _listed_status(hook: EmedgeneHook, name: str) -> str:
    (hit,) = [hit for hit in hook.client.iter_cases() if hit["name"] == name]
    return str(hit["status"])


def test_each_read_answers_the_next_status_then_the_last_for_ever(slow_sim) -> None:
    hook = EmedgeneHook()
    name = hook.client.create_case(valid_case(simulator_statuses=["Uploading", "In progress", "Delivered"]))
    assert _listed_status(hook, name) == "Uploading"  # before any read: the first
    assert hook.get_case_status(name) == "Uploading"
    with pytest.raises(EmedgeneInvalidRequestError, match="not delivered yet"):
        hook.get_candidates(name)  # not a read: still Uploading
    assert hook.get_case(name)["status"] == "In progress"  # the whole case counts as a read too
    assert _listed_status(hook, name) == "In progress"  # listing is not a read
    assert hook.get_case_status(name) == "Delivered"
    assert hook.get_case_status(name) == "Delivered"
    assert hook.get_candidates(name)
    assert status_gets(slow_sim) == 4


def test_a_status_set_by_hand_wins_over_the_script(slow_sim) -> None:
    hook = EmedgeneHook()
    name = hook.client.create_case(valid_case(simulator_statuses=["Uploading", "Delivered"]))
    slow_sim.set_status(name, "Issue reported")
    assert [hook.get_case_status(name) for _ in range(3)] == ["Issue reported"] * 3


def test_without_a_script_reads_do_not_move_a_case(slow_sim) -> None:
    hook = EmedgeneHook()
    name = hook.client.create_case(valid_case())
    assert [hook.get_case_status(name) for _ in range(3)] == ["Uploading"] * 3
