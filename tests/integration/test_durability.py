"""Never a duplicate case: lost create answers, retried tasks, and permanent errors that fail once."""

from __future__ import annotations

import importlib.util
import json
import sys
from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException
from locations import ROOT

from emedgene_provider.cases.extra_data import IDEMPOTENCY_FIELD
from emedgene_provider.client import errors
from emedgene_provider.exceptions import EmedgeneCaseFailedError
from emedgene_provider.hooks.emedgene import EmedgeneHook
from emedgene_provider.operators.create import default_idempotency_key
from emedgene_provider.operators.emedgene import EmedgeneCreateCaseOperator, EmedgeneExportCaseOperator

CASE = json.loads((ROOT / "dags_examples" / "cases" / "trio-exome-vcf.json").read_text())
CREATE = "POST /api/cases/v2/cases"


def _load_chaos() -> Any:
    spec = importlib.util.spec_from_file_location("emedgene_chaos", ROOT / "bench" / "chaos.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


chaos = _load_chaos()


@pytest.fixture
def sim(emedgene_simulator_factory, monkeypatch):
    simulator = emedgene_simulator_factory(stage_seconds=0.1)
    conn = simulator.connection_json()
    # A short reconcile window: on Airflow 2.11 a retry that finds no case waits one out.
    conn["extra"] = {**conn.get("extra", {}), "timeout": 0.5, "retry_max_wait": 0.05, "reconcile_window": 2}
    monkeypatch.setenv("AIRFLOW_CONN_EMEDGENE_DEFAULT", json.dumps(conn))
    return simulator


def _context(try_number: int = 1, store: Any = None, run_id: str = "run1") -> dict[str, Any]:
    ti = chaos.FakeTI(try_number, dag_id="dag", run_id=run_id, task_id="create_case")
    return {
        "ti": ti,
        "task_state_store": chaos.TaskStateStore() if store is None else store,
        "dag_run": SimpleNamespace(start_date=datetime.now(timezone.utc)),
    }


def _creates(sim: Any) -> int:
    return int(sim.counters()["requests"].get(CREATE, 0))


class TestLostCreate:
    def test_client_finds_the_case_a_lost_answer_created(self, sim) -> None:
        sim.inject("lost_create")
        hook = EmedgeneHook()
        hook.client.sleep = lambda _s: None
        name, created = hook.create_case_once(CASE, "key-1")
        assert created is False  # found by its key, not created a second time
        assert sim.counters()["cases_created"] == 1
        assert _creates(sim) == 1
        assert hook.get_case(name, ["extra_data"])["extra_data"][IDEMPOTENCY_FIELD] == "key-1"

    def test_create_whose_answer_was_refused_before_processing_is_sent_again(self, sim) -> None:
        """A 500 is unclear: sent again only once the key stayed absent for the reconcile window."""
        sim.inject("500_html", method="POST", path="/api/cases/v2/cases")  # ambiguous; nothing done
        hook = EmedgeneHook()
        waited: list[float] = []
        now = [hook.client.clock()]
        hook.client.clock = lambda: now[0]

        def sleep(seconds: float) -> None:
            assert _creates(sim) == 1  # no second POST while the window runs
            waited.append(seconds)
            now[0] += seconds

        hook.client.sleep = sleep
        name, created = hook.create_case_once(CASE, "key-2")
        assert created is True
        assert sim.counters()["cases_created"] == 1
        assert _creates(sim) == 2
        assert name.startswith("EMG")
        assert sum(waited) >= hook.config.reconcile_window

    def test_plain_create_raises_ambiguous_and_never_posts_twice(self, sim) -> None:
        sim.inject("lost_create")
        with pytest.raises(errors.EmedgeneAmbiguousCreateError, match="not sent again"):
            EmedgeneHook().client.create_case(CASE)
        assert _creates(sim) == 1

    def test_operator_survives_a_lost_create(self, sim) -> None:
        sim.inject("lost_create")
        op = EmedgeneCreateCaseOperator(task_id="create_case", case=CASE, wait_for_completion=False)
        name = op.execute(_context())
        assert sim.counters()["cases_created"] == 1
        assert name in [c["name"] for c in EmedgeneHook().client.iter_cases()]


class TestRetriedTask:
    def test_retry_reattaches_to_the_case_of_the_earlier_try(self, sim) -> None:
        store = chaos.TaskStateStore()
        first = EmedgeneCreateCaseOperator(
            task_id="create_case", case=CASE, wait_for_completion=False
        ).execute(_context(1, store))
        posts = _creates(sim)
        again = EmedgeneCreateCaseOperator(
            task_id="create_case", case=CASE, wait_for_completion=False
        ).execute(_context(2, store))
        assert again == first
        assert _creates(sim) == posts  # no second POST
        assert sim.counters()["cases_created"] == 1

    def test_retry_without_durable_state_finds_the_case_by_its_key(self, sim, task_log) -> None:
        """Airflow 2.11 (and a worker that died before the state was written) has no stored name."""
        first = EmedgeneCreateCaseOperator(
            task_id="create_case", case=CASE, wait_for_completion=False
        ).execute(_context(1))
        again = EmedgeneCreateCaseOperator(
            task_id="create_case", case=CASE, wait_for_completion=False
        ).execute(_context(2))
        assert again == first
        assert sim.counters()["cases_created"] == 1
        assert f"Reattaching to Emedgene case {first}" in task_log()

    def test_retry_creates_anew_when_the_earlier_case_failed_and_says_so(self, sim, task_log) -> None:
        first = EmedgeneCreateCaseOperator(
            task_id="create_case", case=CASE, wait_for_completion=False
        ).execute(_context(1))
        sim.set_status(first, "Issue reported")
        again = EmedgeneCreateCaseOperator(
            task_id="create_case", case=CASE, wait_for_completion=False
        ).execute(_context(2))
        assert again != first
        assert sim.counters()["cases_created"] == 2
        assert f"{first} from an earlier try is in failure status 'Issue reported'" in task_log()

    @pytest.mark.parametrize("durable", [True, False], ids=["durable-record", "key-look-up"])
    def test_retry_treats_the_tasks_own_failure_status_as_failed(self, sim, task_log, durable) -> None:
        """The durable record and the key look-up judge an earlier try's case by one rule: a status in
        the task's ``failure_statuses`` is as failed as Issue reported, so a new case is due."""
        store = chaos.TaskStateStore() if durable else None

        def op() -> EmedgeneCreateCaseOperator:
            # Any status reaches "Pending sequencing", the first stage: the new case's wait ends at once.
            return EmedgeneCreateCaseOperator(
                task_id="create_case",
                case=CASE,
                wait_for_completion=True,
                target_statuses=["Pending sequencing"],
                failure_statuses=["On hold"],
            )

        first = op().execute(_context(1, store))
        sim.set_status(first, "On hold")
        again = op().execute(_context(2, store))
        assert again != first
        assert sim.counters()["cases_created"] == 2
        assert f"{first} from an earlier try is in failure status 'On hold'" in task_log()

    def test_another_run_never_reattaches_to_this_runs_case(self, sim) -> None:
        first = EmedgeneCreateCaseOperator(
            task_id="create_case", case=CASE, wait_for_completion=False
        ).execute(_context(1, run_id="a"))
        other = EmedgeneCreateCaseOperator(
            task_id="create_case", case=CASE, wait_for_completion=False
        ).execute(_context(2, run_id="b"))
        assert other != first
        assert sim.counters()["cases_created"] == 2

    def test_default_key_names_dag_run_task_and_map_index(self) -> None:
        ctx = _context(run_id="scheduled__2026-11-29")
        ctx["ti"].map_index = 3
        assert default_idempotency_key(ctx) == "airflow:dag:scheduled__2026-11-29:create_case:3"

    def test_explicit_key_is_stamped_into_extra_data(self, sim) -> None:
        op = EmedgeneCreateCaseOperator(
            task_id="create_case", case=CASE, idempotency_key="LIMS-42", wait_for_completion=False
        )
        name = op.execute(_context())
        extra = EmedgeneHook().get_case(name, ["extra_data"])["extra_data"]
        assert extra[IDEMPOTENCY_FIELD] == "LIMS-42"
        assert extra["lims_id"] == "LIMS-2026-0042"  # the lab's own extra_data is kept


class TestPermanentErrorsFailOnce:
    """No retry storm: each fails on its first attempt, with a message a person can act on."""

    def _api_requests(self, sim: Any) -> int:
        return sum(v for k, v in sim.counters()["requests"].items() if " /api/" in k and "auth" not in k)

    def test_validation_400(self, sim) -> None:
        bad = json.loads(json.dumps(CASE))
        bad["test_data"]["patients"]["proband"]["phenotypes"] = [{"id": "phenotypes/EMG_PHENOTYPE_1"}]
        bad["test_data"]["type"] = "Exome"
        with pytest.raises(errors.EmedgeneInvalidRequestError) as info:
            EmedgeneHook().validate_case({**bad, "test_data": {**bad["test_data"], "samples": []}})
        assert "HTTP 400" in str(info.value) and "samples" in str(info.value)
        assert self._api_requests(sim) == 1

    def test_not_found_404(self, sim) -> None:
        with pytest.raises(errors.EmedgeneNotFoundError, match=r"get_case_status\(EMG000000001\).*HTTP 404"):
            EmedgeneHook().get_case_status("EMG000000001")
        assert self._api_requests(sim) == 1

    def test_bad_credentials(self, sim, monkeypatch) -> None:
        conn = sim.connection_json()
        conn["password"] = "wrong-password"
        monkeypatch.setenv("AIRFLOW_CONN_EMEDGENE_DEFAULT", json.dumps(conn))
        with pytest.raises(errors.EmedgeneAuthError, match="HTTP 401") as info:
            EmedgeneHook().get_case_status("EMG000000001")
        assert "wrong-password" not in str(info.value)
        assert sim.counters()["login_failures"] == 1

    def test_wrong_token_url(self, sim, monkeypatch) -> None:
        conn = sim.connection_json(auth_type="api_key")
        conn["extra"]["login_url"] = f"{sim.url}/no/such/Token"
        monkeypatch.setenv("AIRFLOW_CONN_EMEDGENE_DEFAULT", json.dumps(conn))
        with pytest.raises(errors.EmedgeneAuthError, match="login_url"):
            EmedgeneHook().get_case_status("EMG000000001")
        assert sum(sim.counters()["requests"].values()) == 1

    def test_case_in_failure_status_fails_the_wait_at_once(self, sim) -> None:
        op = EmedgeneCreateCaseOperator(
            task_id="create_case", case=CASE, wait_for_completion=True, deferrable=False, poll_interval=0.05
        )
        sim.set_fault_rate(0)
        hook = EmedgeneHook()
        name = hook.client.create_case(CASE)
        sim.set_status(name, "Issue reported")
        store = chaos.TaskStateStore({"emedgene_case_name": name})
        # The recorded case failed: the task makes a new one and waits for that one instead.
        new = op.execute(_context(2, store))
        assert new != name
        sim.set_status(new, "Issue reported")
        with pytest.raises(EmedgeneCaseFailedError, match=f"{new}.*Issue reported"):
            from emedgene_provider.waiting import check_case

            check_case(hook, new, ["Delivered"], None)

    def test_export_before_delivery(self, sim, tmp_path) -> None:
        name = EmedgeneHook().client.create_case(CASE)
        before = self._api_requests(sim)
        op = EmedgeneExportCaseOperator(task_id="export", case_name=name, output_path=f"file://{tmp_path}/")
        with pytest.raises(
            errors.EmedgeneInvalidRequestError, match=f"export_case\\({name}\\).*not delivered"
        ):
            op.execute(_context())
        assert self._api_requests(sim) == before + 1
        assert not list(tmp_path.iterdir())

    def test_invalid_payload_fails_before_any_request(self, sim) -> None:
        op = EmedgeneCreateCaseOperator(
            task_id="create_case", case={"test_data": {"type": "Genome"}}, wait_for_completion=False
        )
        with pytest.raises(AirflowFailException, match="problem"):
            op.execute(_context())
        assert sum(sim.counters()["requests"].values()) == 0


def test_fault_suite_small_run() -> None:
    """A short run of bench/chaos.py: 30 lifecycles, a quarter of requests faulted, new cases listed
    up to 2 s late (gateways apply up to 5 s late), a 10 s reconcile window."""
    report = chaos.run(30, 0.25, workers=10, seed=11, list_lag_max=2.0, reconcile_window=10.0)
    assert report["failed"] == 0, report["failures"]
    assert report["cases_created"] == 30
    assert report["distinct_cases"] == 30
    assert report["duplicate_keys"] == {}
    assert report["exported_empty"] == 0
    assert report["faults_injected"] > 0.15 * report["requests"]
