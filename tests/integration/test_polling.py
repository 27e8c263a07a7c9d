"""The polling rule (emedgene_provider.client.polling) and the three waits that follow it: the
trigger, the blocking wait of the create operator, and the sensor's deferrable wait."""

from __future__ import annotations

import asyncio
import importlib
import json
import math
import random
import re
import statistics
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import TaskDeferred
from airflow_fixtures import connect, make_context, status_gets, valid_case

from emedgene_provider import waiting
from emedgene_provider.client import polling
from emedgene_provider.client.errors import EmedgeneUnavailableError
from emedgene_provider.client.polling import PollSchedule, default_max_poll_interval, steps_to_target
from emedgene_provider.client.process import PROCESS
from emedgene_provider.hooks.emedgene import EmedgeneHook
from emedgene_provider.operators.emedgene import EmedgeneCreateCaseOperator
from emedgene_provider.sensors.emedgene import EmedgeneCaseStatusSensor
from emedgene_provider.testing.fakes import FakeClock, FakeTI
from emedgene_provider.triggers import emedgene as trigger_module
from emedgene_provider.triggers.emedgene import EmedgeneCaseStatusTrigger

DELIVERED = ["Delivered"]

# -- the rule -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "targets", "steps"),
    [
        ("Pending sequencing", DELIVERED, 3),
        ("PENDING_SEQUENCING", DELIVERED, 3),  # any spelling of a lifecycle status
        ("Uploading", DELIVERED, 2),
        ("In progress", DELIVERED, 1),
        ("Queued", DELIVERED, 1),  # every sub-stage of In progress is one stage away
        ("Quality check", DELIVERED, 1),
        ("Re-Analysis", DELIVERED, 1),
        ("Delivered", ["Finalized"], 2),
        ("Pending sequencing", ["Finalized"], 5),
        ("Pending sequencing", ["In progress"], 2),
        ("Queued", ["Indexing"], 1),  # the same stage: never below one step
        ("Finalized", DELIVERED, 1),  # already past the target's stage
        ("Pending sequencing", ["Finalized", "Uploading"], 1),  # the nearest target counts
        (None, DELIVERED, 1),  # no answer yet
        ("Cancelled", DELIVERED, 1),  # a status nobody declared
        ("Issue reported", DELIVERED, 1),  # a failure status the wait goes on through
        ("Pending sequencing", ["Cancelled"], 1),  # a target without a rank is near nothing
        ("Pending sequencing", [], 1),
    ],
)
def test_steps_per_stage(status: str | None, targets: list[str], steps: int) -> None:
    assert steps_to_target(status, targets) == steps


def test_steps_to_a_declared_custom_status() -> None:
    custom = ("Sign-out review",)
    assert steps_to_target("Pending sequencing", ["Sign-out review"], custom) == 4
    assert steps_to_target("Delivered", ["Sign-out review"], custom) == 1
    assert steps_to_target("Pending sequencing", ["Sign-out review"]) == 1  # undeclared: no rank


@pytest.mark.parametrize(
    ("status", "wait"),
    [
        ("Pending sequencing", 240.0),
        ("Uploading", 120.0),
        ("In progress", 60.0),
        ("Indexing", 60.0),
        (None, 60.0),
    ],
)
def test_waits_double_per_stage_before_the_target(status: str | None, wait: float) -> None:
    schedule = PollSchedule(60, jitter=0)
    assert schedule.next_wait(status, DELIVERED) == wait


def test_the_cap_holds_far_targets() -> None:
    schedule = PollSchedule(60, jitter=0)
    assert schedule.max_poll_interval == 480.0
    assert schedule.next_wait("Pending sequencing", ["Finalized"]) == 480.0  # 16x, capped at 8x
    capped = PollSchedule(60, max_poll_interval=100, jitter=0)
    assert capped.next_wait("Pending sequencing", DELIVERED) == 100.0
    assert capped.next_wait("Uploading", DELIVERED) == 100.0
    assert capped.next_wait("In progress", DELIVERED) == 60.0
    fixed = PollSchedule(60, max_poll_interval=60, jitter=0)  # a fixed poke, if that is wanted
    assert {fixed.next_wait(s, DELIVERED) for s in ("Pending sequencing", "Uploading", "Queued")} == {60.0}


@pytest.mark.parametrize(
    ("poll_interval", "cap"),
    [(1.0, 8.0), (60.0, 480.0), (450.0, 3600.0), (600.0, 3600.0), (7200.0, 7200.0)],
)
def test_default_cap(poll_interval: float, cap: float) -> None:
    assert default_max_poll_interval(poll_interval) == cap
    assert PollSchedule(poll_interval).max_poll_interval == cap


def test_jitter_stays_within_bounds_and_keeps_the_mean() -> None:
    schedule = PollSchedule(60, jitter=0.1, rng=random.Random(8))
    waits = [schedule.next_wait("In progress", DELIVERED) for _ in range(20_000)]
    assert min(waits) >= 54.0
    assert max(waits) <= 66.0
    assert min(waits) < 54.5 and max(waits) > 65.5  # the whole band is used
    assert statistics.fmean(waits) == pytest.approx(60.0, rel=0.005)
    far = [schedule.next_wait("Pending sequencing", DELIVERED) for _ in range(20_000)]
    assert min(far) >= 216.0
    assert max(far) <= 264.0
    assert statistics.fmean(far) == pytest.approx(240.0, rel=0.005)


def test_jitter_is_drawn_from_the_given_generator() -> None:
    a = PollSchedule(10, rng=random.Random(3))
    b = PollSchedule(10, rng=random.Random(3))
    expected = random.Random(3)
    sequence = [a.next_wait("Uploading", DELIVERED) for _ in range(5)]
    assert sequence == [b.next_wait("Uploading", DELIVERED) for _ in range(5)]
    assert sequence == [20.0 * expected.uniform(0.9, 1.1) for _ in range(5)]
    assert len(set(sequence)) == 5


def test_waits_started_together_drift_apart() -> None:
    """A thousand waits that polled at the same moment are spread over +-10 % of an interval at
    once, and further apart at every poll: no lockstep bursts."""
    rng = random.Random(11)
    schedules = [PollSchedule(60, rng=rng) for _ in range(1000)]
    at = [0.0] * 1000
    for _ in range(5):
        at = [t + s.next_wait("In progress", DELIVERED) for t, s in zip(at, schedules, strict=True)]
    in_busiest_second = max(sum(1 for t in at if start <= t < start + 1) for start in range(290, 310))
    assert in_busiest_second < 100  # all 1,000 in one second without jitter


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"poll_interval": 0}, "poll_interval must be a finite number of seconds above 0, not 0"),
        ({"poll_interval": -5}, "poll_interval"),
        ({"poll_interval": math.nan}, "poll_interval"),
        ({"poll_interval": math.inf}, "poll_interval"),
        ({"poll_interval": "soon"}, "poll_interval must be a number of seconds, not 'soon'"),
        ({"poll_interval": 60, "max_poll_interval": 0}, "max_poll_interval"),
        ({"poll_interval": 60, "max_poll_interval": math.nan}, "max_poll_interval"),
        (
            {"poll_interval": 60, "max_poll_interval": 30},
            "it caps the backoff, it cannot poll faster than asked",
        ),
        ({"poll_interval": 60, "jitter": -0.1}, "jitter"),
        ({"poll_interval": 60, "jitter": 1}, "jitter must be a number from 0 up to (not including) 1, not 1"),
        ({"poll_interval": 60, "jitter": "some"}, "jitter must be a number"),
        ({"poll_interval": 60, "jitter": math.nan}, "jitter"),
    ],
)
def test_bad_values_are_refused(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=re.escape(match)):
        PollSchedule(**kwargs)


# -- the trigger ----------------------------------------------------------------------------------


def _walk(clock: FakeClock, sim: Any, name: str, *statuses: str) -> None:
    """The case moves to each of ``statuses`` in turn, one per sleep of the wait."""
    for number, status in enumerate(statuses, start=1):
        clock.on_sleep(number, lambda status=status: sim.set_status(name, status))


def _pending_case(emedgene_simulator_factory: Any, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, str]:
    sim = emedgene_simulator_factory(stage_seconds=600)
    connect(monkeypatch, sim)
    name = EmedgeneHook().client.create_case(valid_case())
    sim.set_status(name, "Pending sequencing")
    return sim, name


def _trigger(name: str, clock: FakeClock, **kwargs: Any) -> EmedgeneCaseStatusTrigger:
    kwargs.setdefault("poll_interval", 0.125)
    return EmedgeneCaseStatusTrigger(
        case_name=name,
        emedgene_conn_id="emedgene_default",
        target_statuses=["Delivered"],
        failure_statuses=None,
        end_time=clock.time() + 30,
        **kwargs,
    )


async def _events(trigger: EmedgeneCaseStatusTrigger) -> list[dict[str, Any]]:
    async def collect() -> list[dict[str, Any]]:
        return [event.payload async for event in trigger.run()]

    return await asyncio.wait_for(collect(), timeout=20)


@pytest.mark.parametrize(
    ("max_poll_interval", "sleeps"),
    [(None, [0.5, 0.25, 0.125]), (0.25, [0.25, 0.25, 0.125]), (0.125, [0.125] * 3)],
)
async def test_trigger_sleeps_follow_the_lifecycle(
    emedgene_simulator_factory, monkeypatch, fake_clock, max_poll_interval, sleeps
) -> None:
    sim, name = _pending_case(emedgene_simulator_factory, monkeypatch)
    fake_clock.install(trigger_module)
    _walk(fake_clock, sim, name, "Uploading", "In progress", "Delivered")
    trigger = _trigger(name, fake_clock, max_poll_interval=max_poll_interval)
    (event,) = await _events(trigger)
    assert (event["status"], event["case_status"]) == ("success", "Delivered")
    assert fake_clock.sleeps == sleeps
    assert status_gets(sim) == 4


async def test_trigger_sleeps_are_jittered_by_the_schedule(
    emedgene_simulator_factory, monkeypatch, fake_clock
) -> None:
    sim, name = _pending_case(emedgene_simulator_factory, monkeypatch)
    fake_clock.install(trigger_module)
    monkeypatch.setattr(polling, "DEFAULT_JITTER", 0.1)  # the fake clock turns it off: back on
    monkeypatch.setattr(PROCESS, "poll_rng", random.Random(5))
    _walk(fake_clock, sim, name, "Uploading", "In progress", "Delivered")
    (event,) = await _events(_trigger(name, fake_clock))
    assert event["status"] == "success"
    draws = random.Random(5)
    assert fake_clock.sleeps == [nominal * draws.uniform(0.9, 1.1) for nominal in (0.5, 0.25, 0.125)]


async def test_trigger_last_wait_is_cut_at_the_deadline(
    emedgene_simulator_factory, monkeypatch, fake_clock
) -> None:
    _, name = _pending_case(emedgene_simulator_factory, monkeypatch)
    fake_clock.install(trigger_module)
    trigger = EmedgeneCaseStatusTrigger(
        case_name=name,
        emedgene_conn_id="emedgene_default",
        target_statuses=["Delivered"],
        failure_statuses=None,
        poll_interval=0.25,
        end_time=fake_clock.time() + 2.5,
    )
    (event,) = await _events(trigger)
    assert (event["status"], event["case_status"]) == ("timeout", "Pending sequencing")
    assert fake_clock.sleeps == [1.0, 1.0, 0.5]  # 4x the interval (Pending sequencing), then what was left


def test_a_trigger_serialized_by_the_previous_version_resumes() -> None:
    """A trigger in the metadata DB from before ``max_poll_interval`` existed still deserializes,
    with the default cap."""
    classpath = "emedgene_provider.triggers.emedgene.EmedgeneCaseStatusTrigger"
    old_kwargs = {
        "case_name": "EMG000000001",
        "emedgene_conn_id": "lab_tenant",
        "target_statuses": ["Delivered"],
        "failure_statuses": None,
        "poll_interval": 60.0,
        "end_time": 1_800_000_000.0,
    }
    module, _, name = classpath.rpartition(".")
    trigger = getattr(importlib.import_module(module), name)(**json.loads(json.dumps(old_kwargs)))
    assert trigger.serialize() == (
        classpath,
        {**old_kwargs, "max_poll_interval": None, "not_found_until": None},
    )
    assert trigger._schedule.max_poll_interval == 480.0


def test_a_trigger_refuses_a_bad_interval_when_built() -> None:
    with pytest.raises(ValueError, match="max_poll_interval"):
        EmedgeneCaseStatusTrigger("EMG000000001", "c", ["Delivered"], None, 60, 0.0, max_poll_interval=10)
    with pytest.raises(ValueError, match="poll_interval"):
        EmedgeneCaseStatusTrigger("EMG000000001", "c", ["Delivered"], None, 0, 0.0)


# -- the blocking wait, the operator and the sensor ---------------------------------------------------


def test_blocking_wait_sleeps_follow_the_lifecycle(
    emedgene_simulator_factory, monkeypatch, fake_clock
) -> None:
    sim, name = _pending_case(emedgene_simulator_factory, monkeypatch)
    fake_clock.install(waiting)
    _walk(fake_clock, sim, name, "Uploading", "Queued", "Delivered")
    status = waiting.wait_blocking(EmedgeneHook(), name, DELIVERED, None, poll_interval=0.125, timeout=30)
    assert status == "Delivered"
    assert fake_clock.sleeps == [0.5, 0.25, 0.125]
    assert status_gets(sim) == 4


def test_blocking_wait_sleeps_are_jittered(emedgene_simulator_factory, monkeypatch, fake_clock) -> None:
    sim, name = _pending_case(emedgene_simulator_factory, monkeypatch)
    fake_clock.install(waiting)
    monkeypatch.setattr(polling, "DEFAULT_JITTER", 0.1)
    monkeypatch.setattr(PROCESS, "poll_rng", random.Random(9))
    _walk(fake_clock, sim, name, "Uploading", "Delivered")
    waiting.wait_blocking(EmedgeneHook(), name, DELIVERED, None, poll_interval=0.125, timeout=30)
    draws = random.Random(9)
    assert fake_clock.sleeps == [nominal * draws.uniform(0.9, 1.1) for nominal in (0.5, 0.25)]


class _ScriptedHook:
    """Answers each status read from a script: a status, or an exception to raise."""

    class config:  # stands for the hook's ClientConfig
        custom_statuses: tuple[str, ...] = ()

    def __init__(self, *answers: str | Exception) -> None:
        self.answers = list(answers)

    def get_case_status(self, case_name: str) -> str:
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def test_blocking_wait_keeps_the_last_stage_through_an_outage(fake_clock) -> None:
    fake_clock.install(waiting)
    down = EmedgeneUnavailableError("still failing after 6 attempts")
    hook: Any = _ScriptedHook(down, "Pending sequencing", down, "In progress", down, "Delivered")
    status = waiting.wait_blocking(hook, "EMG000000001", DELIVERED, None, poll_interval=1.0, timeout=100)
    assert status == "Delivered"
    # No answer yet: the interval; then Pending sequencing's 4x, through the outage too; In progress 1x.
    assert fake_clock.sleeps == [1.0, 4.0, 4.0, 1.0, 1.0]


def test_create_operator_passes_max_poll_interval_to_the_blocking_wait(
    emedgene_simulator_factory, monkeypatch, fake_clock
) -> None:
    sim = emedgene_simulator_factory(stage_seconds=600)  # Uploading until the test says otherwise
    connect(monkeypatch, sim)
    fake_clock.install(waiting)
    ti = FakeTI()
    fake_clock.on_sleep(2, lambda: sim.set_status(next(iter(ti.values("emedgene_case_name"))), "Delivered"))
    op = EmedgeneCreateCaseOperator(
        task_id="create",
        case=valid_case(),
        wait_for_completion=True,
        deferrable=False,
        poll_interval=0.125,
        max_poll_interval=0.2,
    )
    op.execute(make_context(ti))
    assert fake_clock.sleeps == [0.2, 0.2]  # Uploading: 2x 0.125, held to 0.2


def test_create_operator_refuses_a_bad_interval_when_waiting() -> None:
    with pytest.raises(ValueError, match="must not be below poll_interval"):
        EmedgeneCreateCaseOperator(
            task_id="c", case=valid_case(), wait_for_completion=True, poll_interval=60, max_poll_interval=5
        )
    # Not waiting: the interval is not used, so not checked.
    EmedgeneCreateCaseOperator(task_id="d", case=valid_case(), wait_for_completion=False, poll_interval=0)


def test_sensor_passes_max_poll_interval_to_its_trigger(sim_conn) -> None:
    name = EmedgeneHook().client.create_case(valid_case())
    sim_conn.set_status(name, "Uploading")
    sensor = EmedgeneCaseStatusSensor(
        task_id="s", case_name=name, deferrable=True, poke_interval=30, max_poll_interval=600
    )
    with pytest.raises(TaskDeferred) as raised:
        sensor.execute(make_context())
    trigger = raised.value.trigger
    assert (trigger.poll_interval, trigger.max_poll_interval) == (30.0, 600.0)
    assert trigger._schedule.nominal_wait("Pending sequencing", DELIVERED) == 120.0


def test_sensor_checks_max_poll_interval_when_deferrable() -> None:
    with pytest.raises(ValueError, match="max_poll_interval"):
        EmedgeneCaseStatusSensor(
            task_id="t", case_name="EMG000000001", deferrable=True, poke_interval=30, max_poll_interval=10
        )
    # Poke and reschedule modes keep Airflow's poke_interval: nothing to check.
    EmedgeneCaseStatusSensor(task_id="u", case_name="EMG000000001", poke_interval=30, max_poll_interval=10)
