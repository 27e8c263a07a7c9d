"""Fault suite: full case lifecycles through the operators against a simulator that misbehaves.

Each lifecycle runs ``EmedgeneCreateCaseOperator`` (create, then wait for Delivered) and
``EmedgeneExportCaseOperator`` (export to a file), retrying a failed task as Airflow would (same
task instance, next try number, same durable task state). Meanwhile the simulator faults a share
of requests at random (429 with and without Retry-After, 500/502 HTML, 503, resets, answers slower
than the client's timeout, lost create answers, lost answers, creates a gateway answers 504 for
and applies seconds later, creates answered after the timeout), new cases reach the case list up
to 30 s late (a search index's lag), tokens are expired and revoked in the middle of waits, and
the simulator restarts on its port.

It prints, against a fault-free baseline measured in the same run:
- cases created per lifecycle (must be exactly 1.00, and no lifecycle may own two cases);
- lifecycles failed (must be 0);
- requests sent per lifecycle, and their ratio to the baseline's.

    python bench/chaos.py --lifecycles 200 --fault-rate 0.25
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from airflow_fixtures import FakeTI  # noqa: E402 - the tests' fake task instance, not a copy

CASE_FILE = ROOT / "dags_examples" / "cases" / "trio-exome-vcf.json"
FAULT_KINDS = (
    "429",
    "429_no_retry_after",
    "500_html",
    "502_html",
    "503",
    "504_html",
    "reset",
    "slow",
    "lost_create",
    "lost_answer",
    "gateway_then_apply",
    "slow_create",
)
#: New cases reach the case list (a search index) up to this many seconds after their create.
LIST_LAG_MAX = 30.0
#: The reconcile window: longer than the list lag plus a gateway's delayed apply (up to 5 s).
RECONCILE_WINDOW = 45.0
CONN_ID = "emedgene_chaos"
TASK_TRIES = 4  # as a DAG with retries=3


class TaskStateStore(dict):  # type: ignore[type-arg]
    """Airflow 3.3's durable task state, as the operators see it: get and set."""

    def set(self, key: str, value: Any) -> None:
        self[key] = value


@dataclass
class Outcome:
    case_name: str | None = None
    tries: int = 0
    exported: int = 0
    error: str | None = None


def run_task(operator: Any, ti: FakeTI, store: TaskStateStore, started: datetime) -> Any:
    """Execute ``operator`` like Airflow with retries: a new try after any error but a failed case."""
    from airflow.providers.common.compat.sdk import AirflowFailException

    last: Exception | None = None
    for attempt in range(1, TASK_TRIES + 1):
        ti.try_number = attempt
        context = {"ti": ti, "task_state_store": store, "dag_run": SimpleNamespace(start_date=started)}
        try:
            return operator.execute(context), attempt
        except AirflowFailException:
            raise
        except Exception as exc:
            last = exc
    raise RuntimeError(f"{ti.task_id} failed {TASK_TRIES} tries: {last}") from last


def lifecycle(index: int, case: dict[str, Any], out_dir: str, poll: float) -> Outcome:
    from emedgene_provider.operators.emedgene import EmedgeneCreateCaseOperator, EmedgeneExportCaseOperator

    outcome = Outcome()
    started = datetime.now(timezone.utc)
    run_id = f"chaos__{index}"
    try:
        create = EmedgeneCreateCaseOperator(
            task_id="create_case",
            case=case,
            emedgene_conn_id=CONN_ID,
            wait_for_completion=True,
            deferrable=False,
            poll_interval=poll,
            timeout=300,
        )
        ti = FakeTI(dag_id="chaos", run_id=run_id, task_id="create_case")
        name, tries = run_task(create, ti, TaskStateStore(), started)
        outcome.case_name, outcome.tries = name, tries
        export = EmedgeneExportCaseOperator(
            task_id="export_case", case_name=name, output_path=f"file://{out_dir}/", emedgene_conn_id=CONN_ID
        )
        result, tries = run_task(
            export, FakeTI(dag_id="chaos", run_id=run_id, task_id="export_case"), TaskStateStore(), started
        )
        outcome.tries += tries
        outcome.exported = int(result["count"])
    except Exception as exc:
        outcome.error = f"{type(exc).__name__}: {exc}"[:500]
    return outcome


def _import_in_main_thread() -> None:
    """Airflow 2's ``execute`` guard imports ``airflow.decorators`` on first call; sixteen threads
    doing that import at once deadlocked on the import lock here. Import it once up front."""
    with contextlib.suppress(ImportError):
        import airflow.decorators.base  # noqa: F401 - Airflow 2 only


def _worker_init() -> None:
    """Airflow 2's guard against calling ``execute`` outside a task keeps per-thread state that only
    the main thread has; give each worker thread its own (harness only: tasks run one per process)."""
    try:
        from airflow.models.baseoperator import ExecutorSafeguard  # Airflow 2 only
    except ImportError:
        return
    sentinel = getattr(ExecutorSafeguard, "_sentinel", None)
    if sentinel is not None and not hasattr(sentinel, "callers"):
        sentinel.callers = {}


def _disrupt(sim: Any, stop: threading.Event, period: float, restarts: bool) -> dict[str, int]:
    done = {"expired": 0, "revoked": 0, "restarts": 0}
    tick = 0
    while not stop.wait(period):
        tick += 1
        if tick % 3 == 0 and restarts:
            sim.restart()
            done["restarts"] += 1
        elif tick % 2 == 0:
            sim.revoke_tokens()
            done["revoked"] += 1
        else:
            sim.expire_tokens()
            done["expired"] += 1
    return done


def run(
    lifecycles: int,
    fault_rate: float,
    *,
    workers: int = 16,
    seed: int = 7,
    stage_seconds: float = 0.2,
    list_lag_max: float = LIST_LAG_MAX,
    reconcile_window: float = RECONCILE_WINDOW,
) -> dict[str, Any]:
    """Run ``lifecycles`` lifecycles against a fresh simulator; return the figures."""
    from emedgene_provider.client.auth import TOKEN_CACHE
    from emedgene_provider.testing import EmedgeneSimulator

    _import_in_main_thread()
    case = json.loads(CASE_FILE.read_text())
    case["test_data"]["extra_data"] = {"lims_id": "CHAOS"}
    TOKEN_CACHE.clear()
    with (
        EmedgeneSimulator(
            stage_seconds=stage_seconds, seed=seed, list_lag_max=list_lag_max if fault_rate else None
        ) as sim,
        tempfile.TemporaryDirectory() as out,
    ):
        conn = sim.connection_json()
        # Short timeouts and waits: "slow" answers (1 s) outlast the 0.5 s timeout, and Retry-After
        # (1 s) is capped, so the run measures behaviour rather than sleeping.
        conn["extra"] = {
            **conn.get("extra", {}),
            "timeout": 0.5,
            "max_retries": 8,
            "retry_max_wait": 0.2,
            "reconcile_window": reconcile_window,
        }
        os.environ[f"AIRFLOW_CONN_{CONN_ID.upper()}"] = json.dumps(conn)
        if fault_rate:
            sim.set_fault_rate(fault_rate, kinds=FAULT_KINDS, seed=seed)
        stop = threading.Event()
        disruptions: dict[str, int] = {}
        disruptor = threading.Thread(
            target=lambda: disruptions.update(_disrupt(sim, stop, 1.5, restarts=True)), daemon=True
        )
        if fault_rate:
            disruptor.start()
        began = time.monotonic()
        with ThreadPoolExecutor(max_workers=workers, initializer=_worker_init) as pool:
            outcomes = list(pool.map(lambda i: lifecycle(i, case, out, 0.1), range(lifecycles)))
        elapsed = time.monotonic() - began
        stop.set()
        if disruptor.is_alive():
            disruptor.join()
        sim.set_fault_rate(0)
        counters = sim.counters()
    names = [o.case_name for o in outcomes if o.case_name]
    failures = [o.error for o in outcomes if o.error]
    requests = sum(counters["requests"].values())
    return {
        "lifecycles": lifecycles,
        "fault_rate": fault_rate,
        "cases_created": counters["cases_created"],
        "cases_per_lifecycle": counters["cases_created"] / lifecycles,
        "distinct_cases": len(set(names)),
        "failed": len(failures),
        "failures": failures[:5],
        "exported_empty": sum(1 for o in outcomes if not o.error and o.exported <= 0),
        "task_tries": sum(o.tries for o in outcomes),
        "requests": requests,
        "requests_per_lifecycle": requests / lifecycles,
        "requests_per_lifecycle_by_route": {
            route: round(n / lifecycles, 2) for route, n in sorted(counters["requests"].items())
        },
        "faults_injected": counters["faults_injected"],
        "fault_share": counters["faults_injected"] / max(1, requests),
        "logins": counters["logins"],
        "disruptions": disruptions,
        "seconds": round(elapsed, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lifecycles", type=int, default=200)
    parser.add_argument("--fault-rate", type=float, default=0.25)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--list-lag-max", type=float, default=LIST_LAG_MAX, help="seconds, under faults")
    parser.add_argument("--reconcile-window", type=float, default=RECONCILE_WINDOW)
    args = parser.parse_args(argv)
    # Calling operators outside a task runner is the point here; keep that warning out of the output.
    for name in ("airflow.task.operators", "airflow.models.baseoperator", "airflow.task"):
        logging.getLogger(name).setLevel(logging.ERROR)
    baseline = run(max(10, args.lifecycles // 10), 0.0, workers=args.workers, seed=args.seed)
    chaos = run(
        args.lifecycles,
        args.fault_rate,
        workers=args.workers,
        seed=args.seed,
        list_lag_max=args.list_lag_max,
        reconcile_window=args.reconcile_window,
    )
    ratio = chaos["requests_per_lifecycle"] / baseline["requests_per_lifecycle"]
    print(json.dumps({"baseline": baseline, "chaos": chaos}, indent=1))
    print(
        f"\n{chaos['lifecycles']} lifecycles, {chaos['fault_share']:.0%} of {chaos['requests']} "
        "requests faulted, "
        f"disruptions {chaos['disruptions']}:\n"
        f"  cases created per lifecycle: {chaos['cases_per_lifecycle']:.2f} "
        f"({chaos['cases_created']} cases, {chaos['distinct_cases']} distinct names)\n"
        f"  lifecycles failed: {chaos['failed']}\n"
        f"  requests per lifecycle: {chaos['requests_per_lifecycle']:.1f} "
        f"(baseline {baseline['requests_per_lifecycle']:.1f}, ratio {ratio:.2f})\n"
        f"  task tries per lifecycle: {chaos['task_tries'] / chaos['lifecycles']:.2f} "
        "(2.00 = no Airflow retry)"
    )
    ok = (
        chaos["cases_created"] == chaos["lifecycles"] == chaos["distinct_cases"]
        and chaos["failed"] == 0
        and chaos["exported_empty"] == 0
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
