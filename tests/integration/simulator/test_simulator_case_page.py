"""The simulator's case page: the "Emedgene case" link an operator pushes leads to a page, over real
HTTP and with no login, that shows the case's name, status and stage; it is not an API request."""

from __future__ import annotations

import pytest
import requests
from airflow_fixtures import connect, make_context, valid_case

from emedgene_provider.hooks.emedgene import EmedgeneHook
from emedgene_provider.links.emedgene import XCOM_CASE_URL
from emedgene_provider.operators.emedgene import EmedgeneCreateCaseOperator
from emedgene_provider.testing.fakes import FakeTI


@pytest.fixture
def slow_sim(emedgene_simulator_factory, monkeypatch):
    """Stages of ten minutes: a case stays at its first stage for the whole test."""
    sim = emedgene_simulator_factory(stage_seconds=600)
    connect(monkeypatch, sim)
    return sim


def _pushed_url(name_holder: list[str]) -> str:
    ti = FakeTI()
    op = EmedgeneCreateCaseOperator(task_id="create", case=valid_case(), wait_for_completion=False)
    name_holder.append(op.execute(make_context(ti)))
    (url,) = [value for key, value in ti.pushed if key == XCOM_CASE_URL]
    return str(url)


def test_the_pushed_case_link_opens_a_page_with_name_status_and_stage(slow_sim) -> None:
    names: list[str] = []
    url = _pushed_url(names)
    before = slow_sim.counters()["requests"]
    page = requests.get(url, timeout=10)  # no Authorization header: a browser following the link
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert f"<h1>Case {names[0]}</h1>" in page.text
    assert "<dd id='status'>Uploading</dd>" in page.text  # should_upload false: Uploading first
    assert "<dd id='stage'>stage 1 of 3</dd>" in page.text
    assert "<li class='now'>Uploading</li><li>In progress</li><li>Delivered</li>" in page.text
    assert slow_sim.counters()["requests"] == before  # not counted as an API request


def test_the_page_follows_a_status_set_by_hand_and_escapes_it(slow_sim) -> None:
    names: list[str] = []
    url = _pushed_url(names)
    slow_sim.set_status(names[0], "<b>Issue</b> reported")
    page = requests.get(url, timeout=10)
    assert "<dd id='status'>&lt;b&gt;Issue&lt;/b&gt; reported</dd>" in page.text
    assert "<b>Issue</b>" not in page.text
    assert "set by hand" in page.text


def test_reading_the_page_does_not_move_a_scripted_case(slow_sim) -> None:
    hook = EmedgeneHook()
    name = hook.client.create_case(valid_case(simulator_statuses=["Uploading", "Delivered"]))
    for _ in range(3):
        requests.get(f"{slow_sim.url}/case/{name}", timeout=10).raise_for_status()
    assert hook.get_case(name)["status"] == "Uploading"  # the first API read answers the first status
    assert "1 of 2 read so far" in requests.get(f"{slow_sim.url}/case/{name}", timeout=10).text


def test_a_fault_queued_for_the_api_is_not_spent_on_the_page(slow_sim) -> None:
    names: list[str] = []
    url = _pushed_url(names)
    slow_sim.inject("503", times=1)  # any path
    assert requests.get(url, timeout=10).status_code == 200
    assert requests.get(f"{slow_sim.url}/api/test/{names[0]}", timeout=10).status_code == 503


def test_an_unknown_case_is_a_404_page_that_says_why(slow_sim) -> None:
    page = requests.get(f"{slow_sim.url}/case/EMG000000000", timeout=10)
    assert page.status_code == 404
    assert page.headers["Content-Type"].startswith("text/html")
    assert "Case EMG000000000 not found" in page.text
    assert "forgets its cases when it restarts" in page.text
