"""One case per sample on a tenant that lags, skews and lies: the create path through the public
hook, the create operator and the sensor, over real HTTP against the simulator's quirks.

Where a window must pass, time is injected (the client's ``clock`` and ``sleep``); the assertions
are about cases and requests at the tenant, never about elapsed time.
"""

from __future__ import annotations

import json
import re
import threading
from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Any

import pytest
import requests_mock
from locations import ROOT

from emedgene_provider.client import errors
from emedgene_provider.client.create import CreateRecord
from emedgene_provider.hooks.emedgene import EmedgeneHook
from emedgene_provider.operators.emedgene import EmedgeneCreateCaseOperator
from emedgene_provider.sensors.emedgene import EmedgeneCaseStatusSensor
from emedgene_provider.testing import EmedgeneSimulator, Quirks
from emedgene_provider.testing.fakes import FakeTI, FakeTime

CASE = json.loads((ROOT / "dags_examples" / "cases" / "trio-exome-vcf.json").read_text())
CREATE = "POST /api/cases/v2/cases"
DURABLE = bool(EmedgeneCreateCaseOperator(task_id="probe", case=CASE).durable)


class Store(dict):  # type: ignore[type-arg]
    """Airflow 3.3's durable task state, as the operator sees it (JSON only survives it)."""

    def set(self, key: str, value: Any) -> None:
        self[key] = json.loads(json.dumps(value))


def _context(try_number: int = 1, store: Any = None) -> dict[str, Any]:
    ti = FakeTI(try_number, dag_id="dag", run_id="run1", task_id="create_case")
    context: dict[str, Any] = {"ti": ti, "dag_run": SimpleNamespace(start_date=datetime.now(timezone.utc))}
    if store is not None:
        context["task_state_store"] = store
    return context


@pytest.fixture
def tenant(emedgene_simulator_factory, monkeypatch):
    def make(quirks: Quirks | None = None, **extra: Any) -> EmedgeneSimulator:
        sim = emedgene_simulator_factory(stage_seconds=0.05, quirks=quirks or Quirks())
        conn = sim.connection_json()
        conn["extra"] = {**conn.get("extra", {}), "timeout": 2, "retry_max_wait": 0.05, **extra}
        monkeypatch.setenv("AIRFLOW_CONN_EMEDGENE_DEFAULT", json.dumps(conn))
        return sim

    return make


def _cases(sim: EmedgeneSimulator) -> int:
    return int(sim.counters()["cases_created"])


# -- read-your-write lag ------------------------------------------------------------------------


class TestReadYourWriteLag:
    def test_the_create_operator_waits_through_404s_for_the_case_it_just_made(self, tenant) -> None:
        sim = tenant(Quirks(read_lag=0.6))
        op = EmedgeneCreateCaseOperator(
            task_id="create_case", case=CASE, deferrable=False, poll_interval=0.05, timeout=60
        )
        name = op.execute(_context(1, Store()))
        assert _cases(sim) == 1
        assert sim.counters()["read_lag_404s"] >= 1  # the tenant did lag: the wait saw 404s
        assert EmedgeneHook().get_case_status(name) == "Delivered"

    def test_a_retry_whose_case_answers_404_right_after_its_create_reattaches(self, tenant) -> None:
        """Try 1 made the case and died; the tenant still answers 404 for it. Never "gone"."""
        if not DURABLE:
            pytest.skip("the durable record of try 1's case exists on Airflow 3.3+ only")
        sim = tenant(Quirks(read_lag=30.0), reconcile_window=600)
        store = Store()
        first = EmedgeneCreateCaseOperator(
            task_id="create_case", case=CASE, wait_for_completion=False
        ).execute(_context(1, store))
        again = EmedgeneCreateCaseOperator(
            task_id="create_case", case=CASE, wait_for_completion=False
        ).execute(_context(2, store))
        assert again == first
        assert _cases(sim) == 1 and sim.counters()["read_lag_404s"] >= 1

    def test_a_recorded_case_404_long_after_its_create_is_gone_and_made_anew(self, tenant) -> None:
        if not DURABLE:
            pytest.skip("the durable record of try 1's case exists on Airflow 3.3+ only")
        sim = tenant(reconcile_window=600)
        key = "airflow:dag:run1:create_case:-1"
        store = Store(
            emedgene_create_attempt=CreateRecord(key, case_name="EMG999999999", case_at=1.0).to_json()
        )
        name = EmedgeneCreateCaseOperator(
            task_id="create_case", case=CASE, wait_for_completion=False
        ).execute(_context(2, store))
        assert name != "EMG999999999" and _cases(sim) == 1

    def test_the_sensor_waits_through_404s_within_the_window_then_fails(self, tenant) -> None:
        sim = tenant(Quirks(read_lag=0.5))
        name = EmedgeneHook().client.create_case(CASE)
        sensor = EmedgeneCaseStatusSensor(task_id="wait", case_name=name, poke_interval=0.05, timeout=60)
        assert sensor.execute({"ti": FakeTI()}) == "Delivered"
        assert sim.counters()["read_lag_404s"] >= 1
        stale = EmedgeneCaseStatusSensor(
            task_id="wait", case_name="EMG123456789", poke_interval=0.05, timeout=60
        )
        ti = FakeTI()
        ti.start_date = datetime(2020, 1, 1, tzinfo=timezone.utc)  # its window is long over
        with pytest.raises(errors.EmedgeneNotFoundError):
            stale.execute({"ti": ti})


# -- the same key twice --------------------------------------------------------------------------


class TestOneKeyOneCase:
    def test_the_same_key_twice_in_a_row_is_one_case(self, tenant) -> None:
        sim = tenant()
        first = EmedgeneHook().create_case_once(CASE, "LIMS-0001")
        second = EmedgeneHook().create_case_once(CASE, "LIMS-0001")
        assert first.created is True and second == (first.case_name, False)
        assert _cases(sim) == 1

    def test_the_same_key_from_twenty_threads_at_once_is_one_case(self, tenant) -> None:
        sim = tenant()
        barrier = threading.Barrier(20)
        results: list[Any] = []

        def create() -> None:
            hook = EmedgeneHook()
            hook.client.token()
            barrier.wait(timeout=60)
            results.append(hook.create_case_once(CASE, "LIMS-0002"))

        threads = [threading.Thread(target=create) for _ in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert len(results) == 20
        assert len({r.case_name for r in results}) == 1
        assert sum(r.created for r in results) == 1
        assert _cases(sim) == 1 and sim.counters()["requests"][CREATE] == 1

    def test_another_key_is_another_case(self, tenant) -> None:
        sim = tenant()
        a = EmedgeneHook().create_case_once(CASE, "LIMS-a")
        b = EmedgeneHook().create_case_once(CASE, "LIMS-b")
        assert a.case_name != b.case_name and _cases(sim) == 2


# -- timestamps and lists that lie, on the create path --------------------------------------------


@pytest.mark.parametrize(
    "quirks",
    [
        Quirks(created_style="naive_local", tenant_utc_offset_hours=-10.0),
        Quirks(created_style="date"),
        Quirks(created_style="garbage"),
        Quirks(clock_skew=-7200.0),
        Quirks(list_total="missing", list_order="newest_first"),
        Quirks(list_total="page"),
        Quirks(list_churn="insert", list_order="newest_first"),
    ],
    ids=["naive-local", "date-only", "garbage", "clock-2h-behind", "no-total", "total-is-page", "churn"],
)
def test_a_retry_without_durable_state_adopts_try_1s_case_whatever_the_list_says(tenant, quirks) -> None:
    """Try 1 created the case; try 2 knows nothing (Airflow 2.11, or durable=False) and must find it
    by its key in a list whose stamps and totals cannot be trusted: one case, never two."""
    sim = tenant(quirks, reconcile_window=300)
    for _ in range(3):  # other cases before ours
        EmedgeneHook().client.create_case(CASE)
    first = EmedgeneCreateCaseOperator(
        task_id="create_case", case=CASE, wait_for_completion=False, durable=False
    ).execute(_context(1))
    time = FakeTime()
    op = EmedgeneCreateCaseOperator(
        task_id="create_case", case=CASE, wait_for_completion=False, durable=False
    )
    time.install(op.hook)
    assert op.execute(_context(2)) == first
    assert _cases(sim) == 4
    assert sim.counters()["requests"][CREATE] == 4


# -- smaller ones --------------------------------------------------------------------------------


def test_a_create_answered_with_a_hostile_case_name_is_unclear_and_never_announced(tenant) -> None:
    sim = tenant(max_retries=0)
    with requests_mock.Mocker(real_http=True) as mocked:
        mocked.post(f"{sim.url}/api/cases/v2/cases", json={"name": "../../etc/passwd"}, status_code=201)
        hostile = re.escape("invalid case name '../../etc/passwd'")
        with pytest.raises(errors.EmedgeneAmbiguousCreateError, match=hostile):
            EmedgeneHook().client.create_case(CASE)
        context = _context(1, Store())
        op = EmedgeneCreateCaseOperator(task_id="create_case", case=CASE, wait_for_completion=False)
        with pytest.raises(errors.EmedgeneAmbiguousCreateError):
            op.execute(context)
    assert context["ti"].pushed_keys() == []  # nothing the server made up reached XCom
