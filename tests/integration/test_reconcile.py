"""No duplicate case when the tenant is slow or eventually consistent (the reconcile window).

Every test runs over real HTTP against the simulator and its list-lag, gateway-504-then-apply and
slow-create faults, through the public hook, the create operator and the reconcile trigger.
Where a whole window must pass, time is injected (the client's ``clock`` and ``sleep``); where
the simulator must act on its own timer (a delayed apply, a list lag), the window is short and
the assertions are about requests and cases, never elapsed time.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import time
from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import TaskDeferred
from locations import ROOT

from emedgene_provider.client import errors
from emedgene_provider.client.create import (
    Absent,
    CreateOnce,
    CreateRecord,
    Verdict,
    Window,
    failure_rule,
    verdict,
)
from emedgene_provider.client.events import ReconcileOutcome
from emedgene_provider.client.paging import CasePager, KeyLookup
from emedgene_provider.hooks.emedgene import EmedgeneHook
from emedgene_provider.operators.emedgene import EmedgeneCreateCaseOperator
from emedgene_provider.testing import EmedgeneSimulator
from emedgene_provider.testing.fakes import FakeTI, FakeTime
from emedgene_provider.triggers.emedgene import EmedgeneCreateReconcileTrigger

EVENT_FOUND, EVENT_ABSENT = ReconcileOutcome.FOUND, ReconcileOutcome.ABSENT

CASE = json.loads((ROOT / "dags_examples" / "cases" / "trio-exome-vcf.json").read_text())
CREATE = "POST /api/cases/v2/cases"
LIST = "GET /api/test"
WINDOW = 8.0  # seconds; real time only where the simulator acts on its own timer
#: Airflow 3.3+ keeps task state durably; on 2.11 the compat mixin has no store (durable=False).
DURABLE = bool(EmedgeneCreateCaseOperator(task_id="probe", case=CASE).durable)


class TaskStateStore(dict):  # type: ignore[type-arg]
    """Airflow 3.3's durable task state as the operator sees it."""

    def set(self, key: str, value: Any) -> None:
        self[key] = json.loads(json.dumps(value))  # only JSON survives a real store


def _durable_case(store: dict[str, Any]) -> str | None:
    """The case the durable create record names (the one place a retry finds it)."""
    return (store.get("emedgene_create_attempt") or {}).get("case_name")


def _context(try_number: int = 1, store: Any = "new") -> dict[str, Any]:
    ti = FakeTI(try_number, dag_id="dag", run_id="run1", task_id="create_case")
    context: dict[str, Any] = {"ti": ti, "dag_run": SimpleNamespace(start_date=datetime.now(timezone.utc))}
    if store is not None:
        context["task_state_store"] = TaskStateStore() if store == "new" else store
    return context


def _connect(sim: EmedgeneSimulator, monkeypatch: pytest.MonkeyPatch, **extra: Any) -> None:
    conn = sim.connection_json()
    conn["extra"] = {
        **conn.get("extra", {}),
        "timeout": 0.5,
        "retry_max_wait": 0.05,
        "reconcile_window": WINDOW,
        **extra,
    }
    monkeypatch.setenv("AIRFLOW_CONN_EMEDGENE_DEFAULT", json.dumps(conn))


@pytest.fixture
def make_sim(emedgene_simulator_factory, monkeypatch):
    def make(**options: Any) -> EmedgeneSimulator:
        extra = options.pop("extra", {})
        sim = emedgene_simulator_factory(stage_seconds=0.1, **options)
        _connect(sim, monkeypatch, **extra)
        return sim

    return make


def _creates(sim: EmedgeneSimulator) -> int:
    return int(sim.counters()["requests"].get(CREATE, 0))


# -- the hook (blocking) ---------------------------------------------------------------------------


class TestHookCreateOnce:
    def test_gateway_504_then_apply_is_adopted_with_one_post(self, make_sim, task_log) -> None:
        sim = make_sim()
        sim.inject("gateway_then_apply", delay=2.0)
        name, created = EmedgeneHook().create_case_once(CASE, "key-gw")
        assert created is False
        assert _creates(sim) == 1
        assert sim.counters()["cases_created"] == 1
        assert sim.counters()["requests"][LIST] >= 2  # absent at first, adopted once it appeared
        log = task_log()
        assert "504" in log and "'key-gw'" in log
        assert "not in the case list yet" in log
        assert f"adopted case {name}" in log

    def test_lost_create_behind_a_lagging_list_is_adopted(self, make_sim) -> None:
        sim = make_sim(list_lag=2.0)
        sim.inject("lost_create")
        name, created = EmedgeneHook().create_case_once(CASE, "key-lag")
        assert (created, _creates(sim), sim.counters()["cases_created"]) == (False, 1, 1)
        assert name in [c["name"] for c in EmedgeneHook().client.iter_cases()]

    def test_slow_create_is_adopted(self, make_sim) -> None:
        sim = make_sim(list_lag=1.0)
        sim.inject("slow_create", delay=2.0)  # applied at once, answered after the 0.5 s timeout
        _, created = EmedgeneHook().create_case_once(CASE, "key-slow")
        assert (created, _creates(sim), sim.counters()["cases_created"]) == (False, 1, 1)

    def test_no_case_ever_appears_one_more_post_after_the_window_and_not_before(
        self, make_sim, task_log
    ) -> None:
        sim = make_sim(extra={"reconcile_window": 600})
        others = [EmedgeneHook().client.create_case(CASE) for _ in range(3)]  # other cases, without the key
        sim.inject("502_html", method="POST", path="/api/cases/v2/cases")  # unclear; nothing applied
        time = FakeTime(on_sleep=lambda: posts_during_window.append(_creates(sim)))
        posts_during_window: list[int] = []
        hook = time.install(EmedgeneHook())
        name, created = hook.create_case_once(CASE, "key-none")
        assert created is True and name.startswith("EMG")
        assert posts_during_window and set(posts_during_window) == {1 + len(others)}
        assert sum(time.slept) >= 600
        assert _creates(sim) == 2 + len(others)
        assert sim.counters()["cases_created"] == 1 + len(others)
        lookups = sim.counters()["requests"][LIST]
        assert lookups >= 5
        # Each other case is read in full once per window, not once per look-up.
        assert sim.counters()["requests"]["GET /api/test/{name}"] == len(others)
        assert "no case with idempotency key 'key-none' appeared within the 600 s reconcile window" in (
            task_log()
        )

    def test_the_window_counts_from_the_last_unclear_attempt(self, make_sim) -> None:
        """Two unclear POSTs: the second window starts at the second POST, so three POSTs in all."""
        sim = make_sim(extra={"reconcile_window": 100})
        sim.inject("503", times=2, method="POST", path="/api/cases/v2/cases")
        time = FakeTime()
        hook = time.install(EmedgeneHook())
        _, created = hook.create_case_once(CASE, "key-twice")
        assert created is True
        assert _creates(sim) == 3
        assert sum(time.slept) >= 200

    def test_endless_list_fails_with_the_key_and_page_count(self, make_sim) -> None:
        sim = make_sim(endless_list=True)
        with pytest.raises(errors.EmedgeneUnexpectedResponseError) as info:
            next(EmedgeneHook().client.cases_with_idempotency_key("key-e", max_pages=5))
        assert str(info.value) == (
            "Emedgene look-up of idempotency key 'key-e': the case list did not end after 5 page(s) "
            "(250 cases); stopped rather than page for ever. The server may be ignoring 'from' or "
            "reporting a 'total' it never reaches."
        )
        assert sim.counters()["requests"][LIST] == 5
        assert "GET /api/test/{name}" not in sim.counters()["requests"]  # no detail read before the list ends


# -- the operator ------------------------------------------------------------------------------


def _operator(**kwargs: Any) -> EmedgeneCreateCaseOperator:
    kwargs.setdefault("deferrable", False)
    kwargs.setdefault("wait_for_completion", False)
    return EmedgeneCreateCaseOperator(task_id="create_case", case=CASE, **kwargs)


class TestOperator:
    def test_gateway_504_then_apply_one_case(self, make_sim) -> None:
        sim = make_sim(list_lag=1.0)
        sim.inject("gateway_then_apply", delay=1.0)
        store = TaskStateStore()
        name = _operator().execute(_context(1, store))
        assert sim.counters()["cases_created"] == 1 and _creates(sim) == 1
        if DURABLE:
            assert store["emedgene_create_attempt"]["case_name"] == name
        else:
            assert store == {}  # Airflow 2.11: nothing durable to write to

    def test_retry_without_durable_state_waits_a_window_before_creating(self, make_sim, task_log) -> None:
        """Airflow 2.11 (no task state store): try 2 finds no case, so it waits a full window."""
        sim = make_sim(extra={"reconcile_window": 300})
        posts: list[int] = []
        time = FakeTime(on_sleep=lambda: posts.append(_creates(sim)))
        op = _operator()
        time.install(op.hook)
        name = op.execute(_context(2, store=None))
        assert name.startswith("EMG")
        assert posts and set(posts) == {0}  # nothing sent while the window ran
        assert sum(time.slept) >= 300
        assert _creates(sim) == 1
        log = task_log()
        assert "treating it as an unclear create made just now" in log
        assert "no case with idempotency key" in log

    def test_retry_without_durable_state_adopts_the_case_of_try_1(self, make_sim) -> None:
        sim = make_sim(extra={"reconcile_window": 300})
        first = _operator().execute(_context(1, store=None))
        time = FakeTime()
        op = _operator()
        time.install(op.hook)
        assert op.execute(_context(2, store=None)) == first
        assert time.slept == [] and _creates(sim) == 1

    def test_worker_killed_mid_post_makes_the_retry_wait(self, make_sim) -> None:
        """A record of a POST in flight, with no outcome: the retry counts the window from now."""
        sim = make_sim(extra={"reconcile_window": 120})
        store = TaskStateStore()
        stale = CreateRecord("airflow:dag:run1:create_case:-1")
        stale.sending(1.0)
        store.set("emedgene_create_attempt", stale.to_json())
        time = FakeTime(on_sleep=lambda: posts.append(_creates(sim)))
        posts: list[int] = []
        op = _operator()
        time.install(op.hook)
        op.execute(_context(2, store))
        assert set(posts) == {0} and sum(time.slept) >= 120
        assert _creates(sim) == 1

    def test_never_sent_create_does_not_make_the_retry_wait(self, make_sim, monkeypatch) -> None:
        """Try 1's POST is refused (nothing listens): with durable state the retry knows it never
        left and creates at once; on Airflow 2.11 nothing says so and the retry waits a window."""
        sim = make_sim(extra={"reconcile_window": 600, "max_retries": 1})
        port = sim.port
        EmedgeneHook().client.token()  # a token in the process cache, so try 1 goes straight to the POST
        sim.stop()
        store = TaskStateStore()
        with pytest.raises(errors.EmedgeneUnavailableError, match="create_case"):
            _operator().execute(_context(1, store))
        if DURABLE:
            assert store["emedgene_create_attempt"]["posts"] == 1
            assert store["emedgene_create_attempt"]["unclear_at"] is None
        with EmedgeneSimulator(port=port, stage_seconds=0.1) as again:
            time = FakeTime()
            op = _operator()
            time.install(op.hook)
            name = op.execute(_context(2, store))
            if DURABLE:
                assert time.slept == []  # no window: nothing was pending
                assert again.counters()["requests"].get(LIST, 0) == 0
            else:
                assert sum(time.slept) >= 600
            # Two POSTs reach it: one refused 401 (the old token), its replay with a new token.
            assert again.counters()["cases_created"] == 1 and name.startswith("EMG")

    def test_unclear_create_then_failed_task_retry_adopts_without_a_second_post(self, make_sim) -> None:
        """Try 1 gives up on an unclear create (retries spent); try 2 finds the case once listed."""
        sim = make_sim(list_lag=1.5, extra={"max_retries": 0})
        sim.inject("lost_create")
        store = TaskStateStore()
        with pytest.raises(errors.EmedgeneAmbiguousCreateError):
            _operator().execute(_context(1, store))
        assert (store.get("emedgene_create_attempt") or {}).get("unclear_at") is not None or not DURABLE
        name = _operator().execute(_context(2, store))
        assert _creates(sim) == 1 and sim.counters()["cases_created"] == 1
        assert _durable_case(store) == (name if DURABLE else None)


# -- deferrable: the window passes in the triggerer ----------------------------------------------


async def _events(trigger: EmedgeneCreateReconcileTrigger) -> list[dict[str, Any]]:
    async def collect() -> list[dict[str, Any]]:
        return [event.payload async for event in trigger.run()]

    return await asyncio.wait_for(collect(), timeout=60)


class TestDeferrable:
    def test_unclear_create_defers_to_the_reconcile_trigger_and_adopts(self, make_sim) -> None:
        sim = make_sim(list_lag=2.0)
        sim.inject("lost_create")
        store = TaskStateStore()
        ctx = _context(1, store)
        op = _operator(deferrable=True)
        with pytest.raises(TaskDeferred) as deferred:
            op.execute(ctx)
        trigger = deferred.value.trigger
        assert isinstance(trigger, EmedgeneCreateReconcileTrigger)
        assert deferred.value.method_name == "execute_reconciled"
        classpath, kwargs = trigger.serialize()
        assert classpath == "emedgene_provider.triggers.emedgene.EmedgeneCreateReconcileTrigger"
        text = json.dumps(kwargs)  # primitives only, and no secret
        assert sim.password not in text and all(t not in text for t in sim.issued_tokens())
        assert kwargs["idempotency_key"] == "airflow:dag:run1:create_case:-1" and kwargs["window"] == WINDOW
        module, _, cls = classpath.rpartition(".")
        rebuilt = getattr(importlib.import_module(module), cls)(**json.loads(text))
        (event,) = asyncio.run(_events(rebuilt))
        assert event["status"] == EVENT_FOUND
        assert event["message"] == (
            f"Emedgene case {event['case_name']} has idempotency key 'airflow:dag:run1:create_case:-1'"
        )
        name = _operator(deferrable=True).execute_reconciled(_context(1, store), event)
        assert name == event["case_name"]
        assert _durable_case(store) == (name if DURABLE else None)
        assert _creates(sim) == 1 and sim.counters()["cases_created"] == 1

    def test_key_that_stays_absent_is_created_again_after_the_window(self, make_sim) -> None:
        sim = make_sim(extra={"reconcile_window": 2})
        sim.inject("504_html", method="POST", path="/api/cases/v2/cases")  # unclear; nothing applied
        store = TaskStateStore()
        with pytest.raises(TaskDeferred) as deferred:
            _operator(deferrable=True).execute(_context(1, store))
        assert _creates(sim) == 1
        (event,) = asyncio.run(_events(deferred.value.trigger))
        assert event["status"] == EVENT_ABSENT
        assert event["message"] == (
            "No live Emedgene case with idempotency key 'airflow:dag:run1:create_case:-1' appeared "
            "within the 2 s reconcile window"
        )
        assert sim.counters()["requests"][LIST] >= 3  # looked up again and again, then gave up
        assert _creates(sim) == 1  # the trigger itself never POSTs
        name = _operator(deferrable=True).execute_reconciled(_context(1, store), event)
        assert _creates(sim) == 2 and sim.counters()["cases_created"] == 1
        assert _durable_case(store) == (name if DURABLE else None)

    def test_hook_without_waiting_says_the_window_is_open(self, make_sim) -> None:
        sim = make_sim(list_lag=30.0)
        sim.inject("lost_create")
        with pytest.raises(errors.EmedgeneCreatePendingError) as info:
            EmedgeneHook().create_case_once(CASE, "key-p", wait=False)
        message = str(info.value)
        assert message.startswith(
            "Emedgene create_case: the create for idempotency key 'key-p' is unclear and the key is not "
            "in the case list yet; it must stay absent until "
        )
        assert message.endswith(" s from now before the case is created again.")
        assert info.value.key == "key-p" and info.value.window_end > 0
        assert _creates(sim) == 1

    def test_trigger_names_the_key_when_the_connection_is_missing(self) -> None:
        trigger = EmedgeneCreateReconcileTrigger("key-x", "no_such_connection", window_start=0, window=1)
        (event,) = asyncio.run(_events(trigger))
        assert event["status"] == "error"
        assert event["message"].startswith("Emedgene create (idempotency key 'key-x'): cannot connect: ")

    def test_retry_without_durable_state_defers_instead_of_holding_a_worker(self, make_sim) -> None:
        make_sim()
        with pytest.raises(TaskDeferred) as deferred:
            _operator(deferrable=True).execute(_context(2, store=None))
        trigger = deferred.value.trigger
        assert isinstance(trigger, EmedgeneCreateReconcileTrigger) and trigger.assumed is True


# -- the shared decisions, without a server --------------------------------------------------------


class TestDecisions:
    def test_verdict(self) -> None:
        real = CreateRecord("k", unclear_at=10.0)
        guess = CreateRecord("k", unclear_at=10.0, assumed=True)
        lifecycle = failure_rule(None)
        assert verdict(None, real, lifecycle) is Verdict.KEEP_WAITING
        assert verdict({"name": "EMG1", "status": "In progress"}, real, lifecycle) is Verdict.ADOPT
        assert verdict({"name": "EMG1", "status": "Issue reported"}, real, lifecycle) is Verdict.KEEP_WAITING
        assert verdict({"name": "EMG1", "status": "Issue reported"}, guess, lifecycle) is Verdict.CREATE_ANEW

    def test_window_backs_off_and_ends_with_a_last_look(self) -> None:
        window = Window(start=0.0, length=10.0)
        waits, now = [], 0.0
        while (pause := window.next_wait(now)) is not None:
            waits.append(pause)
            now += pause
        assert waits == [1.0, 2.0, 4.0, 3.0]
        assert now == 10.0

    def test_record_round_trips_and_refuses_another_keys_record(self) -> None:
        record = CreateRecord("k")
        record.sending(5.0)
        assert record.unclear_since(99.0) == 99.0  # in flight, outcome unknown: counts from now
        record.unclear(7.0)
        assert record.unclear_since(99.0) == 7.0
        again = CreateRecord.from_json(json.loads(json.dumps(record.to_json())), "k")
        assert again == record
        assert CreateRecord.from_json(record.to_json(), "other") is None
        assert CreateRecord.from_json({"key": "k", "unclear_at": "junk"}, "k") == CreateRecord("k")

    def test_lookup_stops_paging_once_a_newest_first_list_is_older_than_since(self) -> None:
        def page(*years: int) -> dict[str, Any]:
            return {
                "hits": [{"name": f"EMG{y}", "created": f"{y}-01-01T00:00:00Z"} for y in years],
                "total": 99,
            }

        since = datetime(2025, 6, 1, tzinfo=timezone.utc).timestamp()
        lookup = KeyLookup("k", since=since)
        lookup.take_page(lookup.next_page(), page(2027, 2026))  # type: ignore[arg-type]
        lookup.take_page(lookup.next_page(), page(2024, 2023))  # type: ignore[arg-type]
        assert lookup.next_page() is None
        assert [h["name"] for h in lookup.candidates()] == ["EMG2027", "EMG2026"]
        oldest_first = KeyLookup("k", since=since)
        oldest_first.take_page(oldest_first.next_page(), page(2023, 2024))  # type: ignore[arg-type]
        assert oldest_first.next_page() is not None  # the new cases are still to come

    def test_pager_refuses_a_repeated_page(self) -> None:
        pager = CasePager(2)
        call = pager.next_call()
        assert call is not None
        pager.take(call, {"hits": [{"name": "A"}], "total": 5})
        with pytest.raises(errors.EmedgeneUnexpectedResponseError, match="ignore 'from'"):
            pager.take(call, {"hits": [{"name": "A"}], "total": 5})


def test_simulator_list_controls_over_http(make_sim) -> None:
    import requests

    sim = make_sim()
    answer = requests.post(f"{sim.url}/_simulator/list", json={"lag": 30}, timeout=5)
    assert answer.json() == {"lag": 30.0, "lag_max": None, "endless": False}
    name = EmedgeneHook().client.create_case(CASE)
    assert [c["name"] for c in EmedgeneHook().client.iter_cases()] == []  # not listed yet
    assert EmedgeneHook().get_case_status(name)  # but readable by name at once
    assert requests.post(f"{sim.url}/_simulator/list", json={"lag": -1}, timeout=5).status_code == 400
    requests.post(f"{sim.url}/_simulator/list", json={"lag": 0}, timeout=5)
    # a case's lag is fixed at its creation
    assert [c["name"] for c in EmedgeneHook().client.iter_cases()] == []
    EmedgeneHook().client.create_case(CASE)
    assert len(list(EmedgeneHook().client.iter_cases())) == 1  # a new one, without lag, is listed at once


class TestRulesFoundInReview:
    def test_verdict_judges_failure_as_the_wait_does(self) -> None:
        """``failures`` replace the lifecycle's, as in status.evaluate: one rule for every path."""
        guess = CreateRecord("k", unclear_at=1.0, assumed=True)
        trash = {"name": "EMG000000001", "status": "Trash bin"}
        custom = {"name": "EMG000000002", "status": "Analysis failed"}
        own = failure_rule(["Analysis failed"])
        assert verdict(trash, guess, failure_rule(None)) is Verdict.CREATE_ANEW
        assert verdict(trash, guess, own) is Verdict.ADOPT  # not a failure for this task
        assert verdict(custom, guess, own) is Verdict.CREATE_ANEW
        assert verdict(custom, guess, failure_rule(None)) is Verdict.ADOPT

    def test_a_post_recorded_in_flight_settles_once(self) -> None:
        """A worker killed mid-POST: the window counts from the first read, not from every read."""
        record = CreateRecord("k")
        record.sending(100.0)
        machine = CreateOnce("k", record)
        machine.next_step(500.0)
        assert machine.changed() is True
        machine.take(Absent(), 600.0)  # a first look-up inside the window: nothing yet
        assert record.unclear_since(900.0) == 500.0
        again = CreateRecord.from_json(record.to_json(), "k")
        assert again is not None and again.unclear_since(2000.0) == 500.0


class TestReconcileTriggerEnds:
    def test_an_earlier_tries_failed_case_answers_a_guessed_unclear_create(self, make_sim) -> None:
        sim = make_sim()
        name = EmedgeneHook().create_case_once(CASE, "key-failed")[0]
        sim.set_status(name, "Issue reported")
        trigger = EmedgeneCreateReconcileTrigger(
            idempotency_key="key-failed",
            emedgene_conn_id="emedgene_default",
            window_start=time.time(),
            window=600.0,
            assumed=True,
        )
        (event,) = asyncio.run(_events(trigger))
        assert event["status"] == EVENT_ABSENT and event["case_name"] == name
        assert event["message"] == (
            f"Emedgene case {name} from an earlier try (idempotency key 'key-failed') is in failure "
            "status 'Issue reported'"
        )

    def test_an_outage_past_the_window_fails_instead_of_waiting_for_ever(self, make_sim) -> None:
        sim = make_sim(extra={"max_retries": 0})
        sim.set_fault_rate(1.0, kinds=["503"])
        trigger = EmedgeneCreateReconcileTrigger(
            idempotency_key="key-outage",
            emedgene_conn_id="emedgene_default",
            window_start=time.time() - 10_000,  # the window and its grace are long over
            window=60.0,
        )
        (event,) = asyncio.run(_events(trigger))
        assert event["status"] == "error"
        assert event["message"].startswith(
            "Emedgene create (idempotency key 'key-outage'): the tenant stayed unavailable past the end "
            "of the 60 s reconcile window ("
        )
        assert event["message"].endswith("); the case was not created again")
        assert _creates(sim) == 0
