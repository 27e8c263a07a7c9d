"""EmedgeneCaseStatusTrigger: serialisation without secrets, and ``run()`` against the simulator."""

from __future__ import annotations

import asyncio
import importlib
import json
import time

import pytest
from airflow_fixtures import connect, status_gets, valid_case

from emedgene_provider.client.status import TRIGGER_EVENT_OUTCOMES, WaitOutcome
from emedgene_provider.hooks.emedgene import EmedgeneHook
from emedgene_provider.testing.fakes import FakeClock
from emedgene_provider.triggers import emedgene as trigger_module
from emedgene_provider.triggers.emedgene import EmedgeneCaseStatusTrigger

CLASSPATH = "emedgene_provider.triggers.emedgene.EmedgeneCaseStatusTrigger"


@pytest.fixture
def clock(fake_clock: FakeClock) -> FakeClock:
    """The trigger's deadline and its sleeps between polls on virtual time."""
    fake_clock.install(trigger_module)
    return fake_clock


def _trigger(
    name: str, *, timeout: float = 30, clock: FakeClock | None = None, **kwargs
) -> EmedgeneCaseStatusTrigger:
    """A trigger whose deadline is ``timeout`` seconds away, on ``clock`` if given, else real time."""
    kwargs.setdefault("emedgene_conn_id", "emedgene_default")
    kwargs.setdefault("target_statuses", ["Delivered"])
    kwargs.setdefault("failure_statuses", None)
    kwargs.setdefault("poll_interval", 0.1)
    now = clock.time() if clock is not None else time.time()
    return EmedgeneCaseStatusTrigger(case_name=name, end_time=now + timeout, **kwargs)


async def _events(trigger: EmedgeneCaseStatusTrigger, limit: float = 20) -> list[dict]:
    """Every event the trigger yields until its generator ends (bounded by ``limit`` seconds).

    Each is checked to be plain JSON: its ``status`` the value of a trigger-event
    :class:`WaitOutcome`, a bare ``str`` (not the Enum member)."""

    async def collect() -> list[dict]:
        return [event.payload async for event in trigger.run()]

    events = await asyncio.wait_for(collect(), timeout=limit)
    for event in events:
        assert type(event["status"]) is str, event
        assert WaitOutcome(event["status"]) in TRIGGER_EVENT_OUTCOMES
        assert json.loads(json.dumps(event)) == event
    return events


def _case(sim, status: str | None = None) -> str:
    name = EmedgeneHook().client.create_case(valid_case())
    if status is not None:
        sim.set_status(name, status)
    return name


def _issued_tokens(sim) -> list[str]:
    """Every token the simulator has issued, revoked and expired ones included."""
    return sim.issued_tokens()


# -- serialisation --------------------------------------------------------------------------------


def test_serialize_round_trips_through_the_classpath() -> None:
    trigger = EmedgeneCaseStatusTrigger(
        case_name="EMG000000001",
        emedgene_conn_id="lab_tenant",
        target_statuses=["Delivered", "Finalized"],
        failure_statuses=["Issue reported"],
        poll_interval=15,
        end_time=1_800_000_000.5,
        max_poll_interval=120,
    )
    classpath, kwargs = trigger.serialize()
    assert classpath == CLASSPATH
    assert kwargs == {
        "case_name": "EMG000000001",
        "emedgene_conn_id": "lab_tenant",
        "target_statuses": ["Delivered", "Finalized"],
        "failure_statuses": ["Issue reported"],
        "poll_interval": 15.0,
        "end_time": 1_800_000_000.5,
        "max_poll_interval": 120.0,
        "not_found_until": None,
    }
    module, _, name = classpath.rpartition(".")
    rebuilt = getattr(importlib.import_module(module), name)(**json.loads(json.dumps(kwargs)))
    assert rebuilt.serialize() == (classpath, kwargs)


def test_serialize_keeps_failure_statuses_none() -> None:
    _, kwargs = _trigger("EMG000000001").serialize()
    assert kwargs["failure_statuses"] is None


async def test_serialized_trigger_holds_no_secret(emedgene_simulator, monkeypatch) -> None:
    sim = emedgene_simulator
    for auth_type in ("password", "api_key"):
        connect(monkeypatch, sim, sim.connection_json(auth_type))
        name = _case(sim, "Delivered")
        trigger = _trigger(name)
        (event,) = await _events(trigger)  # a token was issued and used for this very trigger
        assert event["status"] == "success"
        classpath, kwargs = trigger.serialize()
        text = json.dumps([classpath, kwargs]) + repr(trigger)
        tokens = _issued_tokens(sim)
        assert tokens
        for secret in (sim.password, sim.api_key, *tokens):
            assert secret not in text
            assert secret not in json.dumps(event)


# -- run(): outcomes --------------------------------------------------------------------------------


async def test_success_when_delivered(sim_conn) -> None:
    name = _case(sim_conn, "Delivered")
    events = await _events(_trigger(name))
    assert events == [
        {
            "status": "success",
            "case_name": name,
            "case_status": "Delivered",
            "message": f"Emedgene case {name} is 'Delivered'",
        }
    ]
    assert status_gets(sim_conn) == 1


async def test_success_after_waiting_through_the_lifecycle(sim_conn, clock) -> None:
    name = _case(sim_conn, "Uploading")  # then In progress after the first wait, Delivered after the second
    clock.on_sleep(1, lambda: sim_conn.set_status(name, "In progress"))
    clock.on_sleep(2, lambda: sim_conn.set_status(name, "Delivered"))
    (event,) = await _events(_trigger(name, clock=clock))
    assert (event["status"], event["case_status"]) == ("success", "Delivered")
    assert status_gets(sim_conn) == 3
    assert clock.sleeps == [0.2, 0.1]  # Uploading is two stages before Delivered, In progress one


@pytest.mark.parametrize("status", ["Finalized"])  # declared custom statuses: test_status_fail_closed
async def test_success_when_past_the_target(sim_conn, status) -> None:
    name = _case(sim_conn, status)
    (event,) = await _events(_trigger(name))
    assert (event["status"], event["case_status"]) == ("success", status)


async def test_failed_when_issue_reported(sim_conn) -> None:
    name = _case(sim_conn, "Issue reported")
    events = await _events(_trigger(name))
    assert events == [
        {
            "status": "failed",
            "case_name": name,
            "case_status": "Issue reported",
            "message": f"Emedgene case {name} is in failure status 'Issue reported'",
        }
    ]


async def test_failed_when_the_lifecycle_ends_in_issue_reported(
    emedgene_simulator_factory, monkeypatch
) -> None:
    sim = emedgene_simulator_factory(stage_seconds=0.1, outcome="Issue reported")
    connect(monkeypatch, sim)
    name = _case(sim)
    (event,) = await _events(_trigger(name))
    assert (event["status"], event["case_status"]) == ("failed", "Issue reported")


async def test_timeout_when_end_time_passes(sim_conn, clock) -> None:
    name = _case(sim_conn, "In progress")
    events = await _events(_trigger(name, timeout=0.625, poll_interval=0.25, clock=clock))
    assert events == [
        {
            "status": "timeout",
            "case_name": name,
            "case_status": "In progress",
            "message": f"Emedgene case {name}: timed out waiting for Delivered; last status 'In progress'",
        }
    ]
    # Polls at t = 0, 0.25, 0.5 and, the last wait cut to what was left, at the deadline 0.625.
    assert clock.sleeps == [0.25, 0.25, 0.125]
    assert status_gets(sim_conn) == 4


async def test_timeout_at_once_when_end_time_is_past(sim_conn) -> None:
    name = _case(sim_conn, "Uploading")
    (event,) = await _events(_trigger(name, timeout=-1))
    assert (event["status"], event["case_status"]) == ("timeout", "Uploading")
    assert status_gets(sim_conn) == 1


async def test_error_for_an_unknown_case(sim_conn) -> None:
    events = await _events(_trigger("EMG999999999"))
    assert len(events) == 1
    event = events[0]
    assert event["status"] == "error"
    assert event["case_name"] == "EMG999999999"
    assert event["case_status"] is None
    assert "EMG999999999" in event["message"]
    assert "not found" in event["message"]
    assert status_gets(sim_conn) == 1  # a 404 is final: not retried


async def test_error_for_bad_credentials(emedgene_simulator, monkeypatch) -> None:
    sim = emedgene_simulator
    connect(monkeypatch, sim)
    name = _case(sim, "Delivered")
    wrong = sim.connection_json()
    wrong["password"] = "not-the-password-42"
    connect(monkeypatch, sim, wrong)
    events = await _events(_trigger(name))
    assert len(events) == 1
    assert events[0]["status"] == "error"
    assert "401" in events[0]["message"]
    assert "not-the-password-42" not in json.dumps(events)
    assert sim.counters()["login_failures"] == 1
    assert status_gets(sim) == 0


async def test_error_for_an_unknown_connection(monkeypatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_EMEDGENE_NOWHERE", raising=False)
    events = await _events(_trigger("EMG000000001", emedgene_conn_id="emedgene_nowhere"))
    assert len(events) == 1
    assert events[0]["status"] == "error"
    assert events[0]["message"].startswith("Emedgene case EMG000000001: cannot connect: ")
    assert "emedgene_nowhere" in events[0]["message"]


# -- run(): resilience ------------------------------------------------------------------------------


async def test_token_expired_mid_wait_is_renewed(sim_conn, clock) -> None:
    name = _case(sim_conn, "In progress")
    # After two "In progress" polls the token expires and the case is delivered.
    clock.on_sleep(2, sim_conn.expire_tokens)
    clock.on_sleep(2, lambda: sim_conn.set_status(name, "Delivered"))
    events = await _events(_trigger(name, poll_interval=0.1, clock=clock))
    assert [(e["status"], e["case_status"]) for e in events] == [("success", "Delivered")]
    assert sim_conn.counters()["logins"] == 2  # the creation's, then one renewal
    assert status_gets(sim_conn) == 4  # two polls, the 403 and its repeat with the new token


async def test_short_lived_tokens_are_renewed_within_one_wait(
    emedgene_simulator_factory, monkeypatch, clock
) -> None:
    """Tokens age on the simulator's own (real) clock: each of the two waits lets more real time
    pass than a token lives, so each following poll meets an expired token, whatever the load. A
    token lives a whole second: long enough that a loaded machine (CI beside other jobs) still uses
    a token it has just obtained before it expires, which at 0.25 s it did not always."""
    ttl = 1.0
    sim = emedgene_simulator_factory(token_ttl=ttl)
    connect(monkeypatch, sim)
    name = _case(sim, "In progress")
    clock.on_sleep(1, lambda: time.sleep(ttl * 1.2))
    clock.on_sleep(2, lambda: time.sleep(ttl * 1.2))
    clock.on_sleep(2, lambda: sim.set_status(name, "Delivered"))
    (event,) = await _events(_trigger(name, poll_interval=0.1, clock=clock))
    assert (event["status"], event["case_status"]) == ("success", "Delivered")
    # The creation's login, then a renewal at each of the two later polls (more, if this machine
    # was slow enough to let a token age out elsewhere too).
    assert sim.counters()["logins"] >= 3


async def test_transient_503s_are_retried(sim_conn, monkeypatch) -> None:
    conn = sim_conn.connection_json()
    conn["extra"]["retry_max_wait"] = 0.05
    connect(monkeypatch, sim_conn, conn)
    name = _case(sim_conn, "Delivered")
    sim_conn.inject("503", times=2, method="GET", path=f"/api/test/{name}")
    events = await _events(_trigger(name))
    assert [(e["status"], e["case_status"]) for e in events] == [("success", "Delivered")]
    assert sim_conn.counters()["faults_injected"] == 2
    assert status_gets(sim_conn) == 3


async def test_an_outage_longer_than_the_retries_keeps_waiting_and_sleeps(
    sim_conn, monkeypatch, clock
) -> None:
    """Every poll fails fast with EmedgeneUnavailableError; the trigger must still sleep between
    polls (no busy loop) and end with one timeout event at the deadline."""
    conn = sim_conn.connection_json()
    conn["extra"]["max_retries"] = 0
    connect(monkeypatch, sim_conn, conn)
    name = _case(sim_conn, "Delivered")
    sim_conn.inject("503", times=100_000, method="GET", path=f"/api/test/{name}")
    events = await _events(_trigger(name, timeout=1.0, poll_interval=0.25, clock=clock))
    assert [(e["status"], e["case_status"]) for e in events] == [("timeout", None)]
    assert clock.sleeps == [0.25] * 4  # a full interval after every failed poll: no busy loop
    assert status_gets(sim_conn) == 5  # t = 0, 0.25, 0.5, 0.75 and the deadline 1.0
    assert sim_conn.counters()["faults_injected"] == 5


async def test_an_outage_that_ends_before_the_deadline_succeeds(sim_conn, monkeypatch, clock) -> None:
    conn = sim_conn.connection_json()
    conn["extra"]["max_retries"] = 0
    connect(monkeypatch, sim_conn, conn)
    name = _case(sim_conn, "Delivered")
    sim_conn.inject("503", times=3, method="GET", path=f"/api/test/{name}")
    (event,) = await _events(_trigger(name, poll_interval=0.1, clock=clock))
    assert (event["status"], event["case_status"]) == ("success", "Delivered")
    assert status_gets(sim_conn) == 4
    assert clock.sleeps == [0.1] * 3


async def test_simulator_down_is_an_outage_not_an_error(
    emedgene_simulator_factory, monkeypatch, clock
) -> None:
    sim = emedgene_simulator_factory()
    conn = sim.connection_json()
    conn["extra"]["max_retries"] = 0
    connect(monkeypatch, sim, conn)
    name = _case(sim, "In progress")
    sim.stop()
    (event,) = await _events(_trigger(name, timeout=0.5, poll_interval=0.25, clock=clock))
    assert (event["status"], event["case_status"]) == ("timeout", None)
    assert clock.sleeps == [0.25, 0.25]  # polls at t = 0, 0.25 and the deadline 0.5


def test_a_runner_that_takes_one_event_and_drops_the_generator_leaves_nothing_behind(sim_conn) -> None:
    """``airflow dags test`` takes the first event and never closes the generator; Python closes
    it when the loop shuts down. The event must come after the wait has left its shared client,
    or that close runs inside ``async with`` and logs "aclose(): asynchronous generator is already
    running" as an error of a run that succeeded."""
    name = _case(sim_conn, "Delivered")
    problems: list[dict] = []

    async def take_first_event() -> dict:
        asyncio.get_running_loop().set_exception_handler(lambda _loop, context: problems.append(context))
        generator = _trigger(name).run()
        event = await generator.__anext__()
        return event.payload  # the generator is left for asyncio.run's shutdown to finalise

    payload = asyncio.run(take_first_event())
    assert payload["status"] == WaitOutcome.SUCCESS.value
    assert problems == []
