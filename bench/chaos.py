"""Fault suite: full case lifecycles through the operators against a simulator that misbehaves.

Each lifecycle runs ``EmedgeneCreateCaseOperator`` (create, then wait for Delivered) and
``EmedgeneExportCaseOperator`` (export to a file), retrying a failed task as Airflow would (same
task instance, next try number, same durable task state). Meanwhile the simulator faults a share
of requests at random (429 with and without Retry-After, 500/502 HTML, 503, resets, answers slower
than the client's timeout, lost create answers, lost answers, creates a gateway answers 504 for
and applies seconds later, creates answered after the timeout), new cases reach the case list up
to 30 s late (a search index's lag), tokens are expired and revoked in the middle of waits, and
the simulator restarts on its port. With ``--quirks default`` (the default) the faulted run's tenant
also lags, skews and lies the ways a real tenant may while one case per lifecycle is still owed: a
read replica a few seconds behind, ``created`` as local time without a zone and an hour behind,
a list that runs newest first, counts only its page and gains a case after every page served,
a byte order mark on every answer, a slow login and kept-alive connections closed when idle.
``--quirks none`` leaves them out; ``--quirk NAME=VALUE`` changes one. The baseline has none.

It prints, against a fault-free baseline measured in the same run:
- cases created per lifecycle (must be exactly 1.00, and no lifecycle may own two cases);
- lifecycles failed (must be 0);
- requests sent per lifecycle, and their ratio to the baseline's.

    python bench/chaos.py --lifecycles 200 --fault-rate 0.25 [--quirks none] [--quirk read_lag=5]
        [--disrupt-period 15] [--log provider.log]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
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

from emedgene_provider.testing.fakes import FakeTI

ROOT = Path(__file__).resolve().parent.parent

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
#: Client timeout of the runs; ``login_delay`` stays below it.
TIMEOUT = 0.5
#: Tenant quirks of the faulted run that must not cost a duplicate or a failed lifecycle. Left out
#: on purpose, since each ends in a clear error by design: ignore_from, shuffle_first_page,
#: results_short, duplicate_status; created_style garbage/missing and list_total null likewise.
QUIRK_SETS: dict[str, dict[str, Any]] = {
    "none": {},
    "default": {
        "read_lag": 3.0,  # below the reconcile window
        "created_style": "naive_local",
        "clock_skew": -3600.0,
        "list_total": "page",
        "list_order": "newest_first",
        "list_churn": "insert",
        "bom": True,
        "login_delay": 0.3,  # below TIMEOUT
        "stale_keepalive": 1.0,
    },
}
TASK_TRIES = 4  # as a DAG with retries=3
#: Seconds between token disruptions (expire, revoke, restart in turn) of the faulted run: far harsher
#: than a tenant's token lifetime, so a call that retries for longer may see its fresh token go too.
DISRUPT_PERIOD = 1.5


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


def _failure_kind(error: str) -> str:
    """``error`` without its case names and numbers (HTTP statuses kept), to group failures."""
    return re.sub(r"\b(?!(?:4|5)\d\d\b)\d+(?:\.\d+)?\b", "N", re.sub(r"EMG\d+", "EMG*", error))


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
    quirks: dict[str, Any] | None = None,
    disrupt_period: float = DISRUPT_PERIOD,
) -> dict[str, Any]:
    """Run ``lifecycles`` lifecycles against a fresh simulator with ``quirks`` (names and values of
    :class:`~emedgene_provider.testing.quirks.Quirks`; none by default); return the figures."""
    from emedgene_provider.cases.extra_data import idempotency_key_of
    from emedgene_provider.client.process import PROCESS
    from emedgene_provider.testing import EmedgeneSimulator
    from emedgene_provider.testing.quirks import Quirks

    _import_in_main_thread()
    case = json.loads(CASE_FILE.read_text())
    case["test_data"]["extra_data"] = {"lims_id": "CHAOS"}
    PROCESS.tokens.clear()
    with (
        EmedgeneSimulator(
            stage_seconds=stage_seconds,
            seed=seed,
            list_lag_max=list_lag_max if fault_rate else None,
            quirks=Quirks.from_json(quirks or {}),
        ) as sim,
        tempfile.TemporaryDirectory() as out,
    ):
        conn = sim.connection_json()
        # Short timeouts and waits: "slow" answers (1 s) outlast the 0.5 s timeout, and Retry-After
        # (1 s) is capped, so the run measures behaviour rather than sleeping.
        conn["extra"] = {
            **conn.get("extra", {}),
            "timeout": TIMEOUT,
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
            target=lambda: disruptions.update(_disrupt(sim, stop, disrupt_period, restarts=True)), daemon=True
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
        # Harness only: the simulator has no public listing of every case with its body.
        bodies = sim._call(lambda: [(c.name, c.body) for c in sim._server.simulation.state.cases.values()])
    by_key: dict[str, list[str]] = {}
    for name, body in bodies:
        key = idempotency_key_of(body)
        if key is not None:
            by_key.setdefault(key, []).append(name)
    duplicates = {key: names for key, names in by_key.items() if len(names) > 1}
    names = [o.case_name for o in outcomes if o.case_name]
    failures = [o.error for o in outcomes if o.error]
    kinds: dict[str, dict[str, Any]] = {}
    for error in failures:
        kind = kinds.setdefault(_failure_kind(error), {"count": 0, "first": error})
        kind["count"] += 1
    requests = sum(counters["requests"].values())
    return {
        "lifecycles": lifecycles,
        "fault_rate": fault_rate,
        "cases_created": counters["cases_created"],
        "cases_per_lifecycle": counters["cases_created"] / lifecycles,
        "distinct_cases": len(set(names)),
        "failed": len(failures),
        "failures": failures[:5],
        "failure_kinds": kinds,
        "duplicate_keys": duplicates,
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
        "disrupt_period": disrupt_period,
        "quirks": quirks or {},
        "quirk_effects": {
            key: counters[key]
            for key in ("read_lag_404s", "stale_drops", "churn_inserts", "churn_deletes")
            if key in counters
        },
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
    parser.add_argument(
        "--disrupt-period",
        type=float,
        default=DISRUPT_PERIOD,
        metavar="SECONDS",
        help="seconds between token expiries, revocations and restarts (in turn) of the faulted run",
    )
    parser.add_argument("--log", metavar="FILE", help="write the provider's INFO log lines to FILE")
    parser.add_argument(
        "--quirks", choices=sorted(QUIRK_SETS), default="default", help="tenant quirks of the faulted run"
    )
    parser.add_argument(
        "--quirk",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="change one quirk of the set (VALUE as JSON, else a string; repeatable)",
    )
    args = parser.parse_args(argv)
    from emedgene_provider.testing.simulator import parse_quirks

    try:
        changed = parse_quirks(args.quirk).to_json()
    except ValueError as exc:
        parser.error(str(exc))
    named = {item.partition("=")[0].strip() for item in args.quirk}
    quirks = {**QUIRK_SETS[args.quirks], **{name: changed[name] for name in named}}
    described = ", ".join(f"{name}={value!r}" for name, value in quirks.items()) or "none"
    print(
        f"chaos: {args.lifecycles} lifecycles, fault rate {args.fault_rate}, {args.workers} workers, "
        f"seed {args.seed}, list lag <= {args.list_lag_max} s, reconcile window {args.reconcile_window} s, "
        f"token disruption every {args.disrupt_period} s\n"
        f"  quirks ({args.quirks}{', changed' if named else ''}; faulted run only): {described}",
        flush=True,
    )
    # Calling operators outside a task runner is the point here; keep that warning out of the output.
    for name in ("airflow.task.operators", "airflow.models.baseoperator", "airflow.task"):
        logging.getLogger(name).setLevel(logging.ERROR)
    if args.log:
        handler = logging.FileHandler(args.log)
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(threadName)s %(name)s %(levelname)s %(message)s")
        )
        provider = logging.getLogger("emedgene_provider")
        provider.addHandler(handler)
        provider.setLevel(logging.INFO)
        provider.propagate = False  # to FILE only: the output stays the figures
    baseline = run(max(10, args.lifecycles // 10), 0.0, workers=args.workers, seed=args.seed)
    chaos = run(
        args.lifecycles,
        args.fault_rate,
        workers=args.workers,
        seed=args.seed,
        list_lag_max=args.list_lag_max,
        reconcile_window=args.reconcile_window,
        quirks=quirks,
        disrupt_period=args.disrupt_period,
    )
    ratio = chaos["requests_per_lifecycle"] / baseline["requests_per_lifecycle"]
    print(json.dumps({"baseline": baseline, "chaos": chaos}, indent=1))
    print(
        f"\n{chaos['lifecycles']} lifecycles, {chaos['fault_share']:.0%} of {chaos['requests']} "
        "requests faulted, "
        f"disruptions {chaos['disruptions']}, quirk effects {chaos['quirk_effects']}:\n"
        f"  cases created per lifecycle: {chaos['cases_per_lifecycle']:.2f} "
        f"({chaos['cases_created']} cases, {chaos['distinct_cases']} distinct names)\n"
        f"  keys with more than one case: {len(chaos['duplicate_keys'])} {chaos['duplicate_keys'] or ''}\n"
        f"  lifecycles failed: {chaos['failed']}"
        + "".join(f"\n    {k['count']} x {k['first']}" for k in chaos["failure_kinds"].values())
        + "\n"
        f"  requests per lifecycle: {chaos['requests_per_lifecycle']:.1f} "
        f"(baseline {baseline['requests_per_lifecycle']:.1f}, ratio {ratio:.2f})\n"
        f"  task tries per lifecycle: {chaos['task_tries'] / chaos['lifecycles']:.2f} "
        "(2.00 = no Airflow retry)"
    )
    ok = (
        chaos["cases_created"] == chaos["lifecycles"] == chaos["distinct_cases"]
        and not chaos["duplicate_keys"]
        and chaos["failed"] == 0
        and chaos["exported_empty"] == 0
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
