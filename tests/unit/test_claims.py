"""Key claims: one idempotency key, one case (client/claims.py, and claims.py for Airflow).

In a process: :class:`ProcessClaims`, sequential and 20 threads at once. The read-back rule of the
Airflow 3 store against a fake Variable API whose two claimants are made to race with Barriers.
A deployment's claims (real task runs on the metadata DB) are in tests/e2e/test_claims_on_the_db.py.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any

import pytest

from emedgene_provider.client.claims import CELL_PREFIX, Claim, ProcessClaims, cell_name
from emedgene_provider.client.errors import EmedgeneError
from emedgene_provider.client.process import PROCESS

KEY = "LIMS-ACC-2024-000123"  # a lab's accession: may identify a patient, so never stored


# -- in a process --------------------------------------------------------------------------------


def test_one_key_one_holder_then_its_case() -> None:
    claims = ProcessClaims()
    assert claims.claim(KEY, "a", 100.0) == Claim(True, "a", None, 100.0)
    assert claims.claim(KEY, "a", 105.0) == Claim(True, "a", None, 100.0), "the holder keeps its claim"
    assert claims.claim(KEY, "b", 106.0) == Claim(False, "a", None, 100.0), "creating: not b's to create"
    claims.record(KEY, "a", "EMG000000001")
    assert claims.claim(KEY, "b", 107.0) == Claim(False, "a", "EMG000000001", 100.0), "b adopts a's case"
    assert claims.claim(KEY, "a", 108.0) == Claim(True, "a", "EMG000000001", 100.0)
    assert claims.claim("another key", "b", 109.0).granted


def test_twenty_threads_at_once_one_is_granted() -> None:
    claims, barrier = ProcessClaims(), threading.Barrier(20)

    def claim(i: int) -> Claim:
        barrier.wait()
        return claims.claim(KEY, f"thread-{i}", 100.0 + i)

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(claim, range(20)))
    granted = [a for a in answers if a.granted]
    assert len(granted) == 1
    assert {a.holder for a in answers} == {granted[0].holder}, "every other thread names the holder"


def test_twenty_threads_holding_the_key_lock_make_one_case_and_adopt_it() -> None:
    """The sync driver's sequence: lock, claim, create if granted, record; the others adopt."""
    claims, barrier, made = ProcessClaims(), threading.Barrier(20), []

    def create_once(i: int) -> str:
        barrier.wait()
        with claims.lock(KEY):
            answer = claims.claim(KEY, f"thread-{i}", 100.0)
            if answer.granted:
                made.append(f"EMG{i:09d}")
                claims.record(KEY, f"thread-{i}", made[-1])
                return made[-1]
            assert answer.case_name is not None, f"thread {i} was let in before the case was recorded"
            return answer.case_name

    with ThreadPoolExecutor(20) as pool:
        cases = list(pool.map(create_once, range(20)))
    assert len(made) == 1 and set(cases) == set(made)


def test_the_key_lock_is_one_per_key_while_held() -> None:
    claims = ProcessClaims()
    with claims.lock(KEY) as held:
        assert held and claims.lock(KEY) is claims.lock(KEY)
        assert claims.lock("another key").acquire(blocking=False), "another key is not blocked"


def test_take_over_only_from_a_holder_that_claimed_before_and_recorded_nothing() -> None:
    claims = ProcessClaims()
    claims.claim(KEY, "dead", 100.0)
    assert not claims.claim(KEY, "b", 200.0, take_over_before=100.0).granted, "not strictly before"
    assert claims.claim(KEY, "b", 200.0, take_over_before=100.5) == Claim(True, "b", None, 200.0)
    assert claims.claim(KEY, "dead", 201.0) == Claim(False, "b", None, 200.0), "the old holder lost it"

    claims.record(KEY, "b", "EMG000000002")
    refused = claims.claim(KEY, "c", 300.0, take_over_before=1e12)
    assert refused == Claim(False, "b", "EMG000000002", 200.0), "a recorded case is never taken over"


def test_a_case_recorded_by_a_displaced_holder_stands_and_a_second_one_is_an_error() -> None:
    """A holder that stalled past its window still made its case: that case is the key's; the
    taker's own case is then two cases for one key, said loudly with both names."""
    claims = ProcessClaims()
    claims.claim(KEY, "slow", 100.0)
    assert claims.claim(KEY, "taker", 800.0, take_over_before=200.0).granted
    claims.record(KEY, "slow", "EMG000000001")
    assert claims.claim(KEY, "third", 900.0).case_name == "EMG000000001"
    with pytest.raises(EmedgeneError) as raised:
        claims.record(KEY, "taker", "EMG000000002")
    assert "EMG000000001" in str(raised.value) and "EMG000000002" in str(raised.value)
    assert raised.value.case_name == "EMG000000002"
    claims.record(KEY, "slow", "EMG000000001")  # recording the same case again is a no-op
    claims.record(KEY, "slow", "EMG000000003")  # the holder replaces its own (failed) case
    again = claims.claim(KEY, "third", 901.0)
    assert (again.granted, again.holder, again.case_name) == (False, "slow", "EMG000000003")


def test_release_lets_the_next_claimant_create_but_never_drops_a_case() -> None:
    claims = ProcessClaims()
    claims.claim(KEY, "a", 100.0)
    claims.release(KEY, "b")  # not b's claim: nothing happens
    assert not claims.claim(KEY, "b", 101.0).granted
    claims.release(KEY, "a")
    assert claims.claim(KEY, "b", 102.0) == Claim(True, "b", None, 102.0)
    claims.record(KEY, "b", "EMG000000003")
    claims.release(KEY, "b")
    assert claims.claim(KEY, "c", 103.0).case_name == "EMG000000003"


def test_the_process_store_is_bounded_least_recently_used_first() -> None:
    claims = ProcessClaims(max_keys=3)
    for i in range(3):
        claims.claim(f"key-{i}", "a", 100.0)
    claims.claim("key-0", "a", 101.0)  # used again: key-1 is now the oldest
    claims.claim("key-3", "a", 102.0)
    assert len(claims.memory) == 3
    assert claims.claim("key-1", "b", 103.0).granted, "key-1 was forgotten"
    assert not claims.claim("key-0", "b", 103.0).granted, "key-0 was kept"


def test_a_cell_holds_neither_the_key_nor_its_name() -> None:
    claims = ProcessClaims()
    claims.claim(KEY, "a", 100.0)
    claims.record(KEY, "a", "EMG000000001")
    name = cell_name(KEY)
    assert name.startswith(CELL_PREFIX) and KEY not in name
    stored = claims.memory.read(name)
    assert stored is not None and KEY not in stored
    assert json.loads(stored) == {"owner": "a", "claimed_at": 100.0, "case_name": "EMG000000001"}


def test_a_cell_that_is_not_a_claim_is_refused_by_name() -> None:
    claims = ProcessClaims()
    claims.memory.create(cell_name(KEY), "hand-edited")
    with pytest.raises(EmedgeneError, match=cell_name(KEY)):
        claims.claim(KEY, "a", 100.0)


# -- the Airflow 3 rule: write, wait, read back ---------------------------------------------------


class FakeVariables:
    """``airflow.sdk.Variable`` over a dict: upserts, as the Execution API's are. With ``writes`` set,
    a write waits there until every claimant reached its write: they all saw the key free."""

    store: dict[str, str] = {}
    writes: threading.Barrier | None = None

    @classmethod
    def get(cls, key: str, default: Any = None) -> Any:
        return cls.store.get(key, default)

    @classmethod
    def set(cls, key: str, value: str, description: str | None = None) -> None:
        if cls.writes is not None:
            cls.writes.wait()
        cls.store[key] = value

    @classmethod
    def delete(cls, key: str) -> None:
        cls.store.pop(key, None)


@pytest.fixture
def fake_variables(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[FakeVariables]]:
    monkeypatch.setattr(FakeVariables, "store", {})
    # ``from airflow.sdk import Variable`` finds the fake, on Airflow 2.11 (no Task SDK) as on 3.x
    monkeypatch.setitem(sys.modules, "airflow.sdk", SimpleNamespace(Variable=FakeVariables))
    monkeypatch.setattr("airflow.providers.common.compat.version_compat.AIRFLOW_V_3_0_PLUS", True)
    monkeypatch.setattr("emedgene_provider.claims._in_a_task_run", lambda: True)
    yield FakeVariables


def test_two_claimants_that_both_saw_the_key_free_read_back_one_winner(
    fake_variables: type[FakeVariables], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both read "absent", both write, and (the settle time's promise) both read back only after
    both wrote: the last write's owner alone is granted."""
    from emedgene_provider.claims import AirflowClaims

    monkeypatch.setattr(fake_variables, "writes", threading.Barrier(2))
    settled = threading.Barrier(2)  # the settle time: each waits until the other has written too
    claimants = [AirflowClaims(settle_seconds=1.0, sleep=lambda _s: settled.wait()) for _ in range(2)]
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda i: claimants[i].claim(KEY, f"task-{i}", 100.0 + i), range(2)))
    assert [a.granted for a in answers].count(True) == 1, answers
    winner = next(a.holder for a in answers if a.granted)
    assert all(a.holder == winner for a in answers)
    assert json.loads(fake_variables.store[cell_name(KEY)])["owner"] == winner


def test_the_airflow_3_store_waits_the_settle_time_for_each_write(
    fake_variables: type[FakeVariables],
) -> None:
    from emedgene_provider.claims import AirflowClaims

    waits: list[float] = []
    claims = AirflowClaims(settle_seconds=2.5, sleep=waits.append)
    assert claims.claim(KEY, "a", 100.0).granted
    claims.record(KEY, "a", "EMG000000001")
    assert not claims.claim(KEY, "b", 101.0).granted
    assert waits == [2.5, 2.5], "one settle per write (claim, record), none for a refusal"
    claims.claim("released", "a", 100.0)
    claims.release("released", "a")
    assert cell_name("released") not in fake_variables.store


def test_outside_a_task_run_the_airflow_store_is_the_process_store() -> None:
    """An operator's ``execute`` called by a test reaches no Variables: the process is the scope."""
    from emedgene_provider.claims import AirflowClaims

    assert AirflowClaims().claim(KEY, "a", 100.0).granted
    assert PROCESS.claims.claim(KEY, "b", 101.0) == Claim(False, "a", None, 100.0)
