"""The real deferral path: emedgene_case_pipeline under a real scheduler and a separate triggerer.

`airflow dags test` runs triggers inline, in the task's own process; this test shows the wait
crossing the metadata DB: the sensor's task instance goes to ``deferred``, a trigger row of
EmedgeneCaseStatusTrigger is picked up by the triggerer process, and the task resumes on a
worker and succeeds. Components are started separately (Airflow 3: api-server, dag-processor,
scheduler with LocalExecutor, triggerer; Airflow 2.11: scheduler and triggerer, with the
SequentialExecutor that 2.x requires on SQLite), parallelism 4, and all are stopped at the end.

Nothing here waits on a timer. The simulator never moves the case on its own; the test delivers
it only once the wait is deferred, its trigger claimed by the triggerer, and the scheduler has
handled the exit of the attempt that deferred. Delivering earlier races Airflow itself: if the
trigger fires before the scheduler has processed that attempt's "success" from the executor, the
scheduler can receive it in the loop that re-queues the resumed attempt (same task instance key)
and fail the task (seen on Airflow 3 under CPU load, when the task supervisor noticed the exit
only at its next heartbeat wait, ``[workers] min_heartbeat_interval``, 5 s by default).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import airflow
import pytest
from airflow_cli import AIRFLOW, airflow_env

from emedgene_provider.testing import EmedgeneSimulator

AIRFLOW_3 = airflow.__version__.startswith("3.")
DAG_ID = "emedgene_case_pipeline"
TRIGGER_CLASSPATH = "emedgene_provider.triggers.emedgene.EmedgeneCaseStatusTrigger"
#: The scheduler's log line once it has handled the executor's report of the attempt that
#: deferred (both majors log it, with the task instance's state at that moment).
DEFERRED_EXIT_HANDLED = re.compile(
    rf"TaskInstance Finished: dag_id={DAG_ID}, task_id=wait_for_delivery, .*?\bstate=deferred\b"
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _query(db: Path, sql: str, *args: object) -> list[tuple[object, ...]]:
    for _ in range(20):
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
                return list(conn.execute(sql, args))
        except sqlite3.OperationalError as exc:  # locked, or the table is not there yet
            last = exc
            time.sleep(0.2)
    raise last


class Components:
    """Airflow processes in their own sessions, stopped children-first at the end."""

    def __init__(self, home: Path, env: dict[str, str]) -> None:
        self.home, self.env = home, env
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, *args: str) -> None:
        log = (self.home / f"{args[0]}.out").open("wb")
        proc = subprocess.Popen(
            [AIRFLOW, *args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append((args[0], proc))

    def cli(self, *args: str) -> str:
        done = subprocess.run([AIRFLOW, *args], env=self.env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"airflow {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def alive(self) -> None:
        for name, proc in self.procs:
            assert proc.poll() is None, f"airflow {name} exited early:\n{self.output(name)[-3000:]}"

    def output(self, name: str) -> str:
        return (self.home / f"{name}.out").read_text(errors="replace")

    def wait_for(self, what: str, done: Callable[[], bool], limit: float = 300) -> None:
        """Poll ``done`` until true; ``limit`` only bounds how long a broken run takes to fail."""
        deadline = time.monotonic() + limit
        while not done():
            self.alive()
            assert time.monotonic() < deadline, (
                f"{what}: not after {limit:g} s; scheduler said:\n{self.output('scheduler')[-4000:]}"
            )
            time.sleep(0.5)

    def stop(self) -> None:
        for _, proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        for _, proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


@pytest.fixture
def airflow_components(tmp_path: Path) -> Iterator[tuple[Components, EmedgeneSimulator, Path]]:
    home = tmp_path / "airflow_home"
    home.mkdir()
    data = tmp_path / "data"
    marker = data / "runs" / "latest" / "CopyComplete.txt"
    marker.parent.mkdir(parents=True)
    marker.write_text("done\n")
    with EmedgeneSimulator(stage_seconds=24 * 3600) as sim:  # the case moves only when the test says
        port = _free_port()
        env = airflow_env(
            home,
            AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="True",
            AIRFLOW__CORE__PARALLELISM="4",
            AIRFLOW__CORE__EXECUTOR="LocalExecutor" if AIRFLOW_3 else "SequentialExecutor",
            AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC="1",
            AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL="5",
            AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL="5",
            AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC="1",
            # Airflow 3's task supervisor waits up to this long before it notices its task exited.
            AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL="1",
            AIRFLOW__API__PORT=str(port),
            AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"http://127.0.0.1:{port}/execution/",
            AIRFLOW__API_AUTH__JWT_SECRET=secrets.token_hex(16),
            AIRFLOW_CONN_EMEDGENE_DEFAULT=json.dumps(sim.connection_json()),
            EMEDGENE_DATA_DIR=str(data),
            EMEDGENE_POLL_INTERVAL="1",
        )
        components = Components(home, env)
        try:
            components.cli("db", "migrate")
            if AIRFLOW_3:
                components.start("api-server", "--port", str(port))
                components.start("dag-processor")
            components.start("scheduler")
            components.start("triggerer")
            yield components, sim, data
        finally:
            components.stop()


@pytest.mark.e2e
def test_pipeline_wait_is_deferred_to_a_separate_triggerer(airflow_components) -> None:
    components, sim, data = airflow_components
    db = components.home / "airflow.db"

    components.wait_for(
        "the DAG was parsed",
        lambda: bool(_query(db, "SELECT 1 FROM serialized_dag WHERE dag_id = ?", DAG_ID)),
        limit=240,
    )
    components.cli("dags", "unpause", DAG_ID)  # only this DAG: the batch example stays paused
    components.cli("dags", "trigger", DAG_ID)

    trigger_rows: set[tuple[object, ...]] = set()

    def sensor_states() -> set[str]:
        rows = _query(
            db,
            "SELECT state FROM task_instance WHERE dag_id = ? AND task_id = ?",
            DAG_ID,
            "wait_for_delivery",
        )
        return {str(row[0]) for row in rows}

    def deferred_and_settled() -> bool:
        claimed = _query(db, "SELECT classpath, triggerer_id FROM trigger WHERE triggerer_id IS NOT NULL")
        trigger_rows.update(claimed)
        return (
            sensor_states() == {"deferred"}
            and any(row[0] == TRIGGER_CLASSPATH for row in claimed)
            and DEFERRED_EXIT_HANDLED.search(components.output("scheduler")) is not None
        )

    components.wait_for(
        "the wait deferred, claimed by the triggerer, its attempt settled", deferred_and_settled
    )
    (value,) = [
        row[0]
        for row in _query(
            db,
            "SELECT value FROM xcom WHERE dag_id = ? AND task_id = 'create_case' AND key = 'return_value'",
            DAG_ID,
        )
    ]
    name = json.loads(value) if isinstance(value, (str, bytes)) else value
    assert sim.counters()["requests"].get("GET /api/test/{name}", 0) >= 1  # the wait has polled
    sim.set_status(name, "Delivered")

    def run_state() -> str | None:
        states = _query(db, "SELECT state FROM dag_run WHERE dag_id = ?", DAG_ID)
        return str(states[0][0]) if states else None

    components.wait_for("the run ended", lambda: run_state() in ("success", "failed"))
    assert run_state() == "success", (
        f"run ended {run_state()}; scheduler said:\n{components.output('scheduler')[-4000:]}"
    )
    assert sensor_states() == {"success"}
    assert {row[0] for row in trigger_rows} == {TRIGGER_CLASSPATH}
    exports = list((data / "exports").glob("*.json"))
    assert [p.stem for p in exports] == [name]
    assert sim.counters()["cases_created"] == 1

    # The task log files of workers and triggerer, and every process's output, hold no secret.
    logs = [p for p in components.home.rglob("*") if p.is_file() and p.suffix in (".log", ".out", ".json")]
    assert any("wait_for_delivery" in str(p) for p in logs), [str(p) for p in logs]
    secrets_ = [sim.password, *sim.issued_tokens()]
    leaks = [f"{p.name}" for p in logs for s in secrets_ if s.encode() in p.read_bytes()]
    assert leaks == []
