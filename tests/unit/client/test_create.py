"""The create-at-most-once state machine without a server: each step and what each answer means."""

from __future__ import annotations

import pytest

from emedgene_provider.client import errors
from emedgene_provider.client.claims import Claim
from emedgene_provider.client.create import (
    Absent,
    Answered,
    CheckCase,
    CreateOnce,
    CreateRecord,
    Done,
    Found,
    LookUp,
    NotFound,
    Pending,
    Post,
    Recorded,
    Refused,
    Sleep,
    Status,
    TakeClaim,
    Unclear,
)

UNCLEAR = Unclear(errors.EmedgeneAmbiguousCreateError("Emedgene create_case: answer lost"))


def _drive(machine: CreateOnce, answers: dict[type, list], now: float = 1000.0) -> list:
    """Run the machine, answering each step kind from ``answers`` in turn; the steps it took."""
    steps = []
    while True:
        step = machine.next_step(now)
        steps.append(step)
        if isinstance(step, (Done, Pending)):
            return steps
        if isinstance(step, Sleep):
            now += step.seconds
            machine.take(None, now)
            continue
        machine.take(answers[type(step)].pop(0), now)


def test_a_fresh_key_posts_once_and_records_before_the_post() -> None:
    machine = CreateOnce("k")
    step = machine.next_step(5.0)
    assert step == Post() and machine.changed()  # saved before it is sent: it may be in flight
    assert machine.record.in_flight_since == 5.0 and machine.record.posts == 1
    machine.take(Answered("EMG000000001"), 6.0)
    assert machine.next_step(6.0) == Done("EMG000000001", created=True)
    assert machine.record.case_name == "EMG000000001" and machine.record.case_at == 6.0


def test_an_unclear_post_is_looked_up_and_its_case_adopted() -> None:
    machine = CreateOnce("k", window=60.0, max_posts=3)
    steps = _drive(
        machine,
        {
            Post: [UNCLEAR],
            LookUp: [Absent(), Absent(), Found({"name": "EMG000000002", "status": "Uploading"})],
        },
    )
    assert [type(s) for s in steps] == [Post, LookUp, Sleep, LookUp, Sleep, LookUp, Done]
    assert steps[-1] == Done("EMG000000002", created=False)
    assert machine.record.posts == 1


def test_an_outage_during_the_window_is_never_absence() -> None:
    machine = CreateOnce("k", window=10.0, max_posts=3)
    outage = Unclear(errors.EmedgeneUnavailableError("503"))
    steps = _drive(
        machine, {Post: [UNCLEAR, Answered("EMG000000003")], LookUp: [outage] * 3 + [Absent()] * 20}
    )
    posts = [s for s in steps if isinstance(s, Post)]
    assert len(posts) == 2  # the second only after a look-up that succeeded past the window's end
    assert steps[-1] == Done("EMG000000003", created=True)


def test_an_outage_that_outlasts_the_window_fails_without_a_post() -> None:
    machine = CreateOnce("k", CreateRecord("k", unclear_at=0.0), window=10.0)
    machine.next_step(5000.0)
    with pytest.raises(errors.EmedgeneUnavailableError, match="stayed unavailable past the end"):
        machine.take(Unclear(errors.EmedgeneUnavailableError("503")), 5000.0)


def test_without_waiting_the_open_window_is_pending() -> None:
    machine = CreateOnce("k", CreateRecord("k", unclear_at=100.0), window=60.0, wait=False)
    steps = _drive(machine, {LookUp: [Absent()]}, now=110.0)
    assert steps[-1] == Pending(160.0)


def test_a_refused_post_is_final_and_nothing_stays_pending() -> None:
    machine = CreateOnce("k")
    machine.next_step(1.0)
    with pytest.raises(errors.EmedgeneInvalidRequestError):
        machine.take(Refused(errors.EmedgeneInvalidRequestError("400")), 2.0)
    assert machine.record.unclear_since(3.0) is None


def test_the_last_unclear_post_raises_and_leaves_the_record_unclear() -> None:
    machine = CreateOnce("k", max_posts=1)
    machine.next_step(1.0)
    with pytest.raises(errors.EmedgeneAmbiguousCreateError):
        machine.take(UNCLEAR, 2.0)
    assert machine.record.unclear_since(3.0) == 2.0  # the next try reconciles it


def test_a_recorded_case_404_right_after_its_create_is_not_gone() -> None:
    machine = CreateOnce("k", CreateRecord("k", case_name="EMG000000004", case_at=100.0), window=600.0)
    assert machine.next_step(150.0) == CheckCase("EMG000000004")
    machine.take(NotFound(), 150.0)
    assert machine.next_step(150.0) == Done("EMG000000004", created=False)


def test_a_failed_recorded_case_is_created_anew() -> None:
    machine = CreateOnce("k", CreateRecord("k", case_name="EMG000000005"))
    steps = _drive(machine, {CheckCase: [Status("Issue reported")], Post: [Answered("EMG000000006")]})
    assert steps[-1] == Done("EMG000000006", created=True)


class TestClaims:
    def test_a_key_another_caller_made_a_case_under_is_adopted_without_a_post(self) -> None:
        machine = CreateOnce("k", claims=True)
        steps = _drive(machine, {TakeClaim: [Claim(False, "other", "EMG000000007", 1.0)]})
        assert steps == [TakeClaim(), Done("EMG000000007", created=False)]

    def test_a_holder_with_no_case_yet_is_waited_out_then_taken_over(self) -> None:
        machine = CreateOnce("k", claims=True, window=30.0)
        steps = _drive(
            machine,
            {
                TakeClaim: [Claim(False, "other", None, 990.0), Claim(True, "me", None, 1040.0)],
                LookUp: [Absent()] * 20,
                Post: [Answered("EMG000000008")],
                Recorded: [None],
            },
        )
        takes = [s for s in steps if isinstance(s, TakeClaim)]
        assert takes[1].take_over_before is not None and takes[1].take_over_before > 990.0
        assert [type(s) for s in steps][-3:] == [Post, Recorded, Done]
        assert steps[-2] == Recorded("EMG000000008")

    def test_a_refused_create_releases_the_claim_before_it_raises(self) -> None:
        machine = CreateOnce("k", claims=True)
        machine.next_step(1.0)
        machine.take(Claim(True, "me", None, 1.0), 1.0)
        assert machine.next_step(1.0) == Post()
        machine.take(Refused(errors.EmedgeneInvalidRequestError("400")), 2.0)
        assert machine.next_step(2.0) == Recorded(None)
        with pytest.raises(errors.EmedgeneInvalidRequestError):
            machine.take(None, 2.0)


def test_a_look_up_proves_absence_only_as_of_when_it_began() -> None:
    """A scan that began inside the window and ended after it (a long, moving list) does not pass
    the window: one more look-up, begun after its end, must find the key absent first."""
    machine = CreateOnce("k", CreateRecord("k", unclear_at=0.0), window=60.0)
    assert isinstance(machine.next_step(50.0), LookUp)
    machine.take(Absent(), 100.0)  # the scan took 50 s and ended past the window's end
    assert isinstance(machine.next_step(100.0), Sleep)
    machine.take(None, 100.0)
    assert isinstance(machine.next_step(100.0), LookUp)
    machine.take(Found({"name": "EMG000000009", "status": "Uploading"}), 101.0)  # listed meanwhile
    assert machine.next_step(101.0) == Done("EMG000000009", created=False)
